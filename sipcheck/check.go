package sipcheck

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Refusal says how to refuse a request. The zero Refusal (Code 0) lets the request through.
type Refusal struct {
	// Code and Reason are the status line of the refusal.
	Code   int
	Reason string
	// Text says what is wrong, for a Warning header (399) and for logs; empty for 480,
	// whose Warning is 380 "SIPS Not Allowed" (RFC 5630).
	Text string
	// Header and Value are one more header the refusal carries: Unsupported for 420,
	// Accept for 415 and 406; empty otherwise.
	Header, Value string
}

// Config is what Request needs to know about the server.
type Config struct {
	// Supported lists the option tags we support (Require of anything else gets 420).
	Supported []string
	// Accept is the one body type we take in INVITE (and offer in Accept of 415).
	Accept string
}

// Checker checks parsed requests. Build it with New; it is safe for concurrent use.
type Checker struct {
	supported []string
	accept    string
}

// New returns a Checker. An empty Accept means application/sdp.
func New(cfg Config) *Checker {
	if cfg.Accept == "" {
		cfg.Accept = "application/sdp"
	}
	return &Checker{supported: cfg.Supported, accept: cfg.Accept}
}

// Request checks a parsed request that arrived over transport ("UDP", "TCP", "TLS", ...) and
// returns how to refuse it, or the zero Refusal. The checks, in order: protocol version
// (505), the headers RFC 3261 §8.1.1 requires and their form (400), Request-URI scheme (416,
// R18) and sips over a non-TLS transport (480, R4/P11), headers in the Request-URI (400),
// Require (420), and for INVITE the body type (415) and Accept (406). It does not allocate
// for a request that passes.
func (c *Checker) Request(req *sip.Request, transport string) Refusal {
	if req.SipVersion != "SIP/2.0" {
		return Refusal{Code: 505, Reason: "Version Not Supported", Text: "only SIP/2.0 is supported"}
	}
	hs := scanHeaders(req)
	if r := hs.required(req); r.Code != 0 {
		return r
	}
	switch {
	case strings.EqualFold(req.Recipient.Scheme, "sip"):
	case strings.EqualFold(req.Recipient.Scheme, "sips"):
		if !strings.EqualFold(transport, "TLS") && !strings.EqualFold(transport, "WSS") {
			return Refusal{Code: 480, Reason: "Temporarily Unavailable"} // R4, P11
		}
	default:
		return Refusal{Code: 416, Reason: "Unsupported URI Scheme", Text: "Request-URI scheme is not sip or sips"} // R18
	}
	if req.Recipient.Headers.Length() > 0 {
		// RFC 4475 escruri: headers in a Request-URI are not allowed (RFC 3261 §19.1.5).
		return Refusal{Code: 400, Reason: "Bad Request", Text: "headers in the Request-URI"}
	}
	if req.IsAck() || req.IsCancel() {
		return Refusal{} // RFC 3261 §8.2.2.3: no Require processing for these
	}
	if hs.require {
		if bad := c.unsupported(req); bad != "" {
			return Refusal{Code: 420, Reason: "Bad Extension", Text: "unsupported extension required", Header: "Unsupported", Value: bad}
		}
	}
	if req.IsInvite() {
		if ct := req.ContentType(); ct != nil && len(req.Body()) > 0 && !c.acceptsBody(ct.Value()) {
			return Refusal{Code: 415, Reason: "Unsupported Media Type", Text: "body type not supported", Header: "Accept", Value: c.accept}
		}
		if hs.accept && !c.satisfiable(req) {
			return Refusal{Code: 406, Reason: "Not Acceptable", Text: "cannot answer with an acceptable body", Header: "Accept", Value: c.accept}
		}
	}
	return Refusal{}
}

// Required checks the headers every request needs (RFC 3261 §8.1.1): present, once each,
// well formed, and a CSeq method that matches the request's.
func Required(req *sip.Request) Refusal {
	hs := scanHeaders(req)
	return hs.required(req)
}

// headerScan is what one pass over a request's headers found.
type headerScan struct {
	// counts of the single-valued headers, in the order of singleValued.
	counts    [len(singleValued)]int
	malformed sip.Header // a header NewParser could not parse
	require   bool
	accept    bool
}

// singleValued are the headers RFC 3261 allows once per request (RFC 4475 multi01, mcl01).
var singleValued = [...]string{"To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}

// scanHeaders makes one pass over the headers, without allocating: sipgo's GetHeader
// lower-cases (and so allocates) the name of every header it compares.
func scanHeaders(req *sip.Request) headerScan {
	var s headerScan
	for _, h := range req.Headers() {
		switch h.(type) {
		case *sip.ToHeader:
			s.counts[0]++
		case *sip.FromHeader:
			s.counts[1]++
		case *sip.CallIDHeader:
			s.counts[2]++
		case *sip.CSeqHeader:
			s.counts[3]++
		case *sip.MaxForwardsHeader:
			s.counts[4]++
		case *sip.ContentLengthHeader:
			s.counts[5]++
		case *sip.ContentTypeHeader:
			s.counts[6]++
		case *sip.ViaHeader, *sip.ContactHeader, *sip.RouteHeader, *sip.RecordRouteHeader:
		default:
			switch n := h.Name(); {
			case n == MalformedName, n == "Via": // a typed Via is matched above
				if s.malformed == nil {
					s.malformed = h
				}
			case strings.EqualFold(n, "Require"):
				s.require = true
			case strings.EqualFold(n, "Accept"):
				s.accept = true
			}
		}
	}
	return s
}

func (s *headerScan) required(req *sip.Request) Refusal {
	bad := func(text string) Refusal { return Refusal{Code: 400, Reason: "Bad Request", Text: text} }
	if s.malformed != nil {
		if s.malformed.Name() == "Via" {
			return bad("malformed Via")
		}
		return bad("malformed " + s.malformed.Value())
	}
	switch {
	case req.From() == nil:
		return bad("missing From")
	case req.From().Params.Has(malformedParam):
		return bad("malformed From")
	case req.To() == nil:
		return bad("missing To")
	case req.To().Params.Has(malformedParam):
		return bad("malformed To")
	case req.CallID() == nil || *req.CallID() == "":
		return bad("missing Call-ID")
	case req.CSeq() == nil:
		return bad("missing CSeq")
	case req.CSeq().SeqNo > maxCSeq:
		return bad("malformed CSeq")
	case req.Via() == nil:
		return bad("missing Via")
	case !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)):
		// sipgo upper-cases the request-line method but not the CSeq one; methods are
		// case-sensitive, but the case-folded comparison is what sipgo's routing also uses.
		return bad("CSeq method does not match request method")
	}
	for i, n := range s.counts {
		if n > 1 {
			return bad("more than one " + singleValued[i])
		}
	}
	return Refusal{}
}

// unsupported returns the first option tag of the Require headers we do not support.
func (c *Checker) unsupported(req *sip.Request) string {
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Require") {
			continue
		}
		for v := range strings.SplitSeq(h.Value(), ",") {
			tag := strings.TrimSpace(v)
			if tag == "" || c.supports(tag) {
				continue
			}
			return tag
		}
	}
	return ""
}

func (c *Checker) supports(tag string) bool {
	for _, s := range c.supported {
		if strings.EqualFold(s, tag) {
			return true
		}
	}
	return false
}

// acceptsBody reports whether a Content-Type value is our body type (parameters ignored).
func (c *Checker) acceptsBody(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), c.accept)
}

// satisfiable reports whether one of the Accept headers' media ranges covers our body type.
// An empty Accept header means the peer takes no body at all, which an INVITE answer with
// SDP cannot satisfy (RFC 3261 §20.1).
func (c *Checker) satisfiable(req *sip.Request) bool {
	typ, _, _ := strings.Cut(c.accept, "/")
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Accept") {
			continue
		}
		for v := range strings.SplitSeq(h.Value(), ",") {
			mr, _, _ := strings.Cut(v, ";")
			mr = strings.TrimSpace(mr)
			if strings.EqualFold(mr, c.accept) || mr == "*/*" || strings.EqualFold(mr, typ+"/*") {
				return true
			}
		}
	}
	return false
}
