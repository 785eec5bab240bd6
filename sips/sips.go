package sips

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// Transports as written in Via and used by sipgo.
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
)

// Decision is the scheme and transport of one leg, with the reason and rule behind it.
type Decision struct {
	// Scheme is "sips" or "sip" as written in the leg's URIs.
	Scheme string
	// Transport is UDP, TCP or TLS.
	Transport string
	// Asked is the scheme the peer asked for on this leg (RFC 5630 §4): on an inbound leg the
	// scheme of its Request-URI, on an originated leg the scheme of the Request-URI sipsvc
	// writes. A sips Contact or Record-Route of a sip: request shapes our Contact (R22), but
	// is not a request for sips.
	Asked string
	// Secure is the dialog secure flag (R25): the Request-URI was sips (Asked) and the request
	// went over TLS. sip: over TLS (best-effort TLS, R7) is not secure.
	Secure bool
	// Reason is a short human-readable reason, e.g. "request-uri sips".
	Reason string
	// Rule is the rule id (docs/sips.md), e.g. "R22".
	Rule string
}

// Errors returned by the inbound checks. Each says which response to send.
var (
	// ErrUnsupportedScheme: the Request-URI is neither sip: nor sips: (R18, 416).
	ErrUnsupportedScheme = errors.New("sips: unsupported URI scheme (R18)")
	// ErrSIPSOverInsecure: a sips: Request-URI arrived over UDP or TCP (R4, T6, P11): 480 + Warning 380.
	ErrSIPSOverInsecure = errors.New("sips: sips Request-URI over a non-TLS transport (R4, T6)")
	// ErrInconsistentContact: a sips: Request-URI with a sip: Contact (R21): 400.
	ErrInconsistentContact = errors.New("sips: sips Request-URI with a sip Contact (R21)")
	// ErrSIPSOverUDP: a sips: target asks for transport=udp (R4): refuse to send.
	ErrSIPSOverUDP = errors.New("sips: sips target with transport=udp (R4)")
)

// IsSIPS reports whether u is a SIPS URI. Scheme detection is on the scheme only (R1, R2).
func IsSIPS(u *sip.Uri) bool { return strings.EqualFold(u.Scheme, "sips") }

// Inbound is what the inbound leg's decision is made from.
type Inbound struct {
	RequestURI sip.Uri
	// TopRecordRoute is the first Record-Route URI, nil when there is none.
	TopRecordRoute *sip.Uri
	// Contact is the Contact URI, nil when there is none.
	Contact *sip.Uri
	// Transport is the transport the request arrived on.
	Transport string
}

// DecideInbound makes the inbound leg's decision (sipsvc is UAS) and checks the request's
// URIs for consistency. A returned error names the rule and the response to give.
//
// The scheme of the leg (our Contact, R22) follows the Request-URI, else the top
// Record-Route, else the Contact. What the caller asked for (Asked) and the secure flag (R25)
// follow the Request-URI and the transport alone. A leg whose scheme is sips is always
// reached over TLS (Transport TLS, R11, R37): a sips Contact received over TCP or UDP does
// not make in-dialog requests to it go over TCP or UDP.
func DecideInbound(in Inbound) (Decision, error) {
	scheme := strings.ToLower(in.RequestURI.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return Decision{}, ErrUnsupportedScheme
	}
	tp := strings.ToUpper(in.Transport)
	if scheme == "sips" {
		if tp != TLS {
			return Decision{}, ErrSIPSOverInsecure
		}
		if in.Contact != nil && !IsSIPS(in.Contact) {
			return Decision{}, ErrInconsistentContact
		}
		return Decision{Scheme: "sips", Asked: "sips", Transport: TLS, Secure: true, Reason: "request-uri sips", Rule: "R22"}, nil
	}
	// R22: a sips top Record-Route (or a sips Contact when there is no Record-Route) also
	// makes the response Contact sips. The caller still asked for sip: not secure (R25).
	reason := ""
	if in.TopRecordRoute != nil {
		if IsSIPS(in.TopRecordRoute) {
			reason = "record-route sips"
		}
	} else if in.Contact != nil && IsSIPS(in.Contact) {
		reason = "contact sips"
	}
	if reason != "" {
		if tp != TLS {
			// R11, R37: a sips URI is reached over TLS, or not at all.
			reason += " received over " + strings.ToLower(tp) + ", reached over tls"
		}
		return Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Reason: reason, Rule: "R22"}, nil
	}
	if tp == TLS {
		// R7: sip: over TLS is best-effort TLS, not SIPS; never upgrade the reply Contact.
		return Decision{Scheme: "sip", Asked: "sip", Transport: TLS, Reason: "request-uri sip over tls (best-effort)", Rule: "R7"}, nil
	}
	return Decision{Scheme: "sip", Asked: "sip", Transport: tp, Reason: "request-uri sip", Rule: "R7"}, nil
}

// Outbound is what an originated leg's decision is made from.
type Outbound struct {
	// Target is the URI to call: a DN's fixed contact, a registered binding, or a router URI.
	Target sip.Uri
	// Registered is true when Target is a binding of a self-registered DN.
	Registered bool
	// RegisteredSecure is true when that binding was made with sips (T4).
	RegisteredSecure bool
	// RegisteredTransport is the transport the binding registered on.
	RegisteredTransport string
	// Style is the DN's interop style (P4).
	Style dn.Style
}

// DecideOutbound makes an originated leg's decision (sipsvc is UAC). Asked is the scheme of
// the Request-URI sipsvc writes; the leg is secure (R25) when that is sips, which always goes
// over TLS (R11).
func DecideOutbound(out Outbound) (Decision, error) {
	d, err := decideOutbound(out)
	if err != nil {
		return Decision{}, err
	}
	d.Asked = d.Scheme
	return d, nil
}

func decideOutbound(out Outbound) (Decision, error) {
	t := out.Target
	tparam, hasT := dn.TransportParam(t)
	tparam = strings.ToLower(tparam)
	if out.Registered {
		if out.RegisteredSecure || IsSIPS(&t) {
			// T4: a device that registered with sips is always reached with sips over TLS.
			return styled(Decision{Scheme: "sips", Transport: TLS, Secure: true, Reason: "registered with sips", Rule: "R8"}, out.Style), nil
		}
		tp := strings.ToUpper(out.RegisteredTransport)
		if tp == "" {
			tp = transportFor(tparam, hasT)
		}
		return Decision{Scheme: "sip", Transport: tp, Secure: false, Reason: "registered with sip", Rule: "R32"}, nil
	}
	if IsSIPS(&t) {
		switch tparam {
		case "udp":
			return Decision{}, ErrSIPSOverUDP
		case "tcp":
			return styled(Decision{Scheme: "sips", Transport: TLS, Secure: true, Reason: "dn contact sips;transport=tcp", Rule: "R5"}, out.Style), nil
		case "tls":
			return styled(Decision{Scheme: "sips", Transport: TLS, Secure: true, Reason: "dn contact sips;transport=tls", Rule: "R6"}, out.Style), nil
		}
		return styled(Decision{Scheme: "sips", Transport: TLS, Secure: true, Reason: "dn contact sips", Rule: "R3"}, out.Style), nil
	}
	tp := transportFor(tparam, hasT)
	if tp == TLS {
		// P1: sip:…;transport=tls is best-effort TLS (R7).
		return Decision{Scheme: "sip", Transport: TLS, Reason: "dn contact sip;transport=tls", Rule: "R7"}, nil
	}
	return Decision{Scheme: "sip", Transport: tp, Reason: "dn contact sip", Rule: "R40"}, nil
}

// styled applies a DN's interop style to a sips decision (P4): the leg still goes over TLS.
func styled(d Decision, s dn.Style) Decision {
	switch s {
	case dn.StyleSIPTransportTLS:
		d.Scheme, d.Secure, d.Reason, d.Rule = "sip", false, d.Reason+", style sip;transport=tls", "P4"
	case dn.StyleSIP:
		d.Scheme, d.Secure, d.Reason, d.Rule = "sip", false, d.Reason+", style sip (best-effort tls)", "P4"
	}
	return d
}

// transportFor applies RFC 3263 §4.1 (R40) to a sip: URI: an explicit transport wins;
// otherwise UDP. (A sips: URI always means TLS and does not come here.)
func transportFor(tparam string, has bool) string {
	if has {
		switch tparam {
		case "tcp":
			return TCP
		case "tls":
			return TLS
		}
	}
	return UDP
}

// DefaultPort is the port used when a URI has none (R3): 5061 for TLS, else 5060.
func DefaultPort(transport string) int {
	if strings.EqualFold(transport, TLS) {
		return 5061
	}
	return 5060
}

// TargetURI writes the Request-URI of an originated leg from the target and the decision:
// the scheme of the decision, and no transport=tls on a sips URI (R6); sip: over TLS gets
// transport=tls when the style asks for it (P4, P5).
func TargetURI(target sip.Uri, d Decision, style dn.Style) sip.Uri {
	u := *target.Clone()
	u.Scheme = d.Scheme
	if u.UriParams == nil {
		u.UriParams = sip.NewParams()
	}
	switch {
	case d.Scheme == "sips":
		// R6: never emit transport=tls on sips. Only transport=tcp (R5) is kept, in place, once.
		v, _ := dn.TransportParam(u)
		keepTCP := strings.EqualFold(v, "tcp")
		kept := u.UriParams[:0]
		for _, kv := range u.UriParams {
			if strings.EqualFold(kv.K, "transport") {
				if !keepTCP {
					continue
				}
				keepTCP = false
			}
			kept = append(kept, kv)
		}
		u.UriParams = kept
	case d.Transport == TLS && style == dn.StyleSIPTransportTLS:
		dn.RemoveTransportParam(&u)
		u.UriParams.Add("transport", "tls")
	case d.Transport == TLS:
		// best-effort TLS (R7): leave as configured
	default:
		// keep transport=tcp/udp as configured
	}
	return u
}

// PartyURI writes From/To URIs of a leg: user@host in the leg's scheme, no parameters (R8).
func PartyURI(user, host string, port int, scheme string) sip.Uri {
	return sip.Uri{Scheme: scheme, User: user, Host: host, Port: port}
}

// ContactURI writes our Contact for a leg (R8, R9, R10, R22, R24): the leg's scheme, an
// explicit port (P5), transport=tcp/tls only where it is needed to reach us (P5), never
// transport=tls on sips (R6).
func ContactURI(user, host string, port int, d Decision, style dn.Style) sip.Uri {
	u := sip.Uri{Scheme: d.Scheme, User: user, Host: host, Port: port, UriParams: sip.NewParams()}
	switch {
	case d.Scheme == "sips":
		// sips alone selects TLS (R3); no transport parameter (R6).
	case d.Transport == TLS:
		u.UriParams.Add("transport", "tls") // P5: sip: over TLS must say so to be reached again
	case d.Transport == TCP:
		u.UriParams.Add("transport", "tcp")
	}
	return u
}

// Refusal is a response that a policy gives instead of bridging two legs.
type Refusal struct {
	Status  int
	Reason  string
	Warning string // Warning header value without the agent, e.g. `380 "SIPS Not Allowed"`
	Rule    string
}

// IsSIPSLeg reports whether a leg counts as sips for the strict policy: it is secure (R25),
// i.e. its Request-URI was sips and it went over TLS. An inbound leg whose caller used a sip:
// Request-URI is not, whatever its Contact or Record-Route (RFC 5630 §4: what the caller asked
// for is the Request-URI).
func IsSIPSLeg(d Decision) bool { return d.Secure }

// CheckPolicy applies the strict policy (RFC 5630 end to end) to a pair of legs: the leg
// whose peer asked (the caller, or the leg a party is transferred from) and the leg to be
// bridged to it. Under per-leg policy (the modelled product) every pair is bridged and nil is
// returned.
func CheckPolicy(p dn.Policy, asking, bridged Decision) *Refusal {
	if p != dn.PolicyStrict {
		return nil
	}
	in, out := IsSIPSLeg(asking), IsSIPSLeg(bridged)
	switch {
	case in && !out:
		return &Refusal{Status: 480, Reason: "Temporarily Unavailable", Warning: `380 "SIPS Not Allowed"`, Rule: "R19"}
	case !in && out:
		return &Refusal{Status: 480, Reason: "Temporarily Unavailable", Warning: `381 "SIPS Required"`, Rule: "R20"}
	}
	return nil
}

// StricterPolicy returns the stricter of two policies: strict when either is strict (a pair
// of legs is bridged only when both their DNs allow it), else per-leg when either says so.
func StricterPolicy(a, b dn.Policy) dn.Policy {
	switch {
	case a == dn.PolicyStrict || b == dn.PolicyStrict:
		return dn.PolicyStrict
	case a == dn.PolicyPerLeg || b == dn.PolicyPerLeg:
		return dn.PolicyPerLeg
	}
	return dn.PolicyDefault
}
