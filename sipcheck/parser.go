package sipcheck

import (
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// malformedParam marks a To or From header that did not parse: the header is kept with an
// empty address and this parameter, and Request refuses the request with 400.
const malformedParam = "sipsvc-malformed"

// rfc2543TagPrefix starts the From tag NewParser gives a request without one (RFC 2543
// style, RFC 4475 inv2543), so that sipgo can key its server transaction.
const rfc2543TagPrefix = "sipsvc2543-"

// commaErrType is the type of the error sipgo's address parsers return to say "another value
// follows after a comma"; it is not a parse failure and must reach sipgo unchanged.
var commaErrType = func() reflect.Type {
	_, err := sip.DefaultHeadersParser()["via"]([]byte("via"), "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")
	if err == nil {
		return nil
	}
	return reflect.TypeOf(err)
}()

func isComma(err error) bool {
	return commaErrType != nil && reflect.TypeOf(err) == commaErrType
}

// NewParser returns a sipgo parser with sipgo's default header parsers, except that a
// malformed To, From, CSeq, Max-Forwards, Content-Length, Content-Type or Contact no longer
// makes the whole message unparsable (sipgo would drop it without an answer). Such a header
// is kept in a marked form that Request refuses with 400. It also trims the whitespace that
// RFC 3261 allows around "=" in To/From parameters (RFC 4475 wsinv) and gives a tag-less
// From a stable tag (RFC 2543 requests, RFC 4475 inv2543).
func NewParser() *sip.Parser {
	def := sip.DefaultHeadersParser()
	m := make(map[string]sip.HeaderParser, len(def))
	for k, v := range def {
		m[k] = v
	}
	for _, k := range []string{"to", "t"} {
		m[k] = lenientTo(def[k])
	}
	for _, k := range []string{"from", "f"} {
		m[k] = lenientFrom(def[k])
	}
	m["cseq"] = lenientCSeq(def["cseq"])
	for _, k := range []string{"via", "v"} {
		m[k] = lenientVia(def[k])
	}
	m["max-forwards"] = keepGeneric(def["max-forwards"])
	for _, k := range []string{"content-length", "l", "content-type", "c", "contact", "m"} {
		m[k] = keepGeneric(def[k])
	}
	return sip.NewParser(sip.WithHeadersParsers(m))
}

// MalformedName is the name under which a header that did not parse is kept (as a generic
// header, with its raw value) by the parser of NewParser.
const MalformedName = "X-Sipsvc-Malformed"

// keepGeneric keeps a header that fails to parse as a generic header named MalformedName
// whose value is "<name>: <raw value>", so that the message still parses.
func keepGeneric(p sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		h, err := p(name, value)
		if err == nil || isComma(err) {
			return h, err
		}
		return sip.NewHeader(MalformedName, string(name)), nil
	}
}

func lenientTo(p sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		h, err := p(name, value)
		if (err != nil && !isComma(err)) || !displayNameOK(value) {
			return &sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: "invalid"}, Params: sip.HeaderParams{{K: malformedParam, V: ""}}}, nil
		}
		if to, ok := h.(*sip.ToHeader); ok {
			to.Params = trimParams(to.Params)
		}
		return h, err
	}
}

func lenientFrom(p sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		h, err := p(name, value)
		if (err != nil && !isComma(err)) || !displayNameOK(value) {
			return &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "invalid"}, Params: sip.HeaderParams{{K: malformedParam, V: ""}}}, nil
		}
		if from, ok := h.(*sip.FromHeader); ok {
			from.Params = trimParams(from.Params)
			if !from.Params.Has("tag") {
				// RFC 2543 requests carry no From tag; sipgo keys such a server transaction by
				// the From tag, so give it one derived from the header value: retransmissions
				// get the same tag and match the same transaction.
				hs := fnv.New64a()
				_, _ = hs.Write([]byte(value))
				from.Params = append(from.Params, sip.HeaderKV{K: "tag", V: rfc2543TagPrefix + strconv.FormatUint(hs.Sum64(), 36)})
			}
		}
		return h, err
	}
}

// lenientVia keeps a Via that fails to parse (RFC 4475 badinv01) as a generic header named
// Via with its raw value: sipgo then cannot key a transaction and answers 400 itself,
// echoing that Via, and Request refuses any other request carrying one.
func lenientVia(p sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		h, err := p(name, value)
		if err != nil && !isComma(err) {
			return sip.NewHeader("Via", value), nil
		}
		return h, err
	}
}

// displayNameOK reports whether the display name of a To or From value, if any, is a
// quoted string or tokens separated by whitespace (RFC 3261 §25.1); sipgo accepts any text
// before "<" (RFC 4475 baddn: `Bell, Alexander <sip:...>`).
func displayNameOK(value string) bool {
	lt := strings.IndexByte(value, '<')
	if lt <= 0 {
		return true
	}
	dn := strings.TrimSpace(value[:lt])
	if dn == "" || dn[0] == '"' {
		return true // quoted strings are checked by sipgo's parser
	}
	for i := 0; i < len(dn); i++ {
		if c := dn[i]; !isTokenChar(c) && c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c may appear in a token (RFC 3261 §25.1).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// lenientCSeq keeps a CSeq that fails to parse (RFC 4475 scalar02: a sequence number above
// 2**31-1) as a CSeq with the sequence number malformedSeq and the method of the raw value,
// which Request refuses with 400; the refusal then echoes a CSeq a peer can parse.
func lenientCSeq(p sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, value string) (sip.Header, error) {
		h, err := p(name, value)
		if c, ok := h.(*sip.CSeqHeader); ok && err == nil && c.SeqNo <= maxCSeq {
			return h, nil
		}
		method := "UNKNOWN"
		if f := strings.Fields(value); len(f) == 2 {
			method = f[1]
		}
		return &sip.CSeqHeader{SeqNo: malformedSeq, MethodName: sip.RequestMethod(method)}, nil
	}
}

// malformedSeq marks a CSeq that did not parse: no valid CSeq is above 2**31-1.
const malformedSeq = maxCSeq + 1

// maxCSeq is the largest CSeq sequence number RFC 3261 §8.1.1.5 allows (2**31 - 1).
const maxCSeq = 1<<31 - 1

// trimParams trims the whitespace RFC 3261 allows around "=" in header parameters
// (`tag = 98asjd8`); sipgo keeps it in the parameter name and value. It returns params
// unchanged (no allocation) when there is nothing to trim.
func trimParams(params sip.HeaderParams) sip.HeaderParams {
	for i := range params {
		k, v := params[i].K, params[i].V
		tk, tv := strings.TrimSpace(k), strings.TrimSpace(v)
		if tk != k || tv != v {
			params[i].K, params[i].V = tk, tv
		}
	}
	return params
}

// EchoSafe rewrites what NewParser marked in a request that is being refused so that the
// refusal, which echoes the request's CSeq (RFC 3261 §8.2.6.2), carries a CSeq a peer can
// parse: a malformed sequence number becomes 0.
func EchoSafe(req *sip.Request) {
	if c := req.CSeq(); c != nil && c.SeqNo > maxCSeq {
		c.SeqNo = 0
	}
}
