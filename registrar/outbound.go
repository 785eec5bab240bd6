package registrar

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

// outboundContact decides whether a checked REGISTER makes an RFC 5626 outbound binding
// (§5.2) and sets p.outbound; it clears the reg-id of every Contact that does not.
//
// A REGISTER makes one when it carries "Supported: outbound", has exactly one Contact with
// both +sip.instance and reg-id, has no Path (sipsvc is then the first hop and holds the
// flow itself), and came over TCP or TLS: the flow is that connection. Otherwise reg-id is
// ignored and the binding is a normal one (§5.2). Over UDP sipsvc does not answer STUN
// keep-alives (§4.4.2), so it cannot act as the device's edge for a UDP flow; behind a
// Path the edge proxy holds the flow and calls go through the Path as for any binding.
// More than one Contact with reg-id in an outbound REGISTER is refused with 400 (§5.2).
func outboundContact(req *sip.Request, p *registerReq) *status {
	withRegID := 0
	for _, c := range p.contacts {
		if c.regID > 0 && c.expires > 0 {
			withRegID++
		}
	}
	asked := withRegID > 0 && signaling.HasOption(req, "Supported", "outbound")
	if asked && withRegID > 1 {
		return badRequest("More than one Contact with reg-id (RFC 5626 5.2)")
	}
	t := strings.ToUpper(req.Transport())
	p.outbound = asked && len(p.path) == 0 && (t == "TCP" || t == "TLS")
	for i := range p.contacts {
		c := &p.contacts[i]
		if !p.outbound || c.instance == "" {
			c.regID = 0
		}
	}
	if p.outbound {
		// The Contact with reg-id must also name its instance, else it is a normal binding.
		p.outbound = false
		for _, c := range p.contacts {
			if c.regID > 0 && c.expires > 0 {
				p.outbound = true
			}
		}
	}
	return nil
}

// replacedFlows splits current into the bindings kept and those an outbound Contact of p
// replaces: same instance and reg-id under another key (another Contact), RFC 5626 §5.2.
// Without an outbound Contact it returns current unchanged.
func replacedFlows(p registerReq, current []dn.Binding) (kept, replaced []dn.Binding) {
	if !p.outbound {
		return current, nil
	}
	kept = current[:0:0]
	for _, b := range current {
		same := false
		for _, c := range p.contacts {
			if c.regID > 0 && b.Outbound() && b.RegID == c.regID && b.InstanceID == c.instance && b.Key != c.key {
				same = true
			}
		}
		if same {
			replaced = append(replaced, b)
		} else {
			kept = append(kept, b)
		}
	}
	return kept, replaced
}
