package signaling

import (
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// bindingDest is where a leg to a registered binding (without Path) is sent:
//
//   - TCP/TLS: down the connection the REGISTER came on while it is open (R33, P7: the
//     device's flow, RFC 5626). Once it is gone — sipsvc restarted, the device's connection
//     dropped — the old source port leads nowhere, so the leg goes to the registered
//     Contact, as for a device that never kept a flow.
//   - UDP: to the REGISTER's source when the Contact names another IP address (a NAT in
//     between rewrote the source: RFC 3581, the device stays reachable through the binding
//     its REGISTER opened), else to the Contact.
func (s *Server) bindingDest(b dn.Binding, target sip.Uri, transport string) string {
	contact := hostPort(target, transport)
	if b.Source == "" || !strings.EqualFold(b.Transport, transport) {
		return contact
	}
	if strings.EqualFold(transport, "UDP") {
		sh, _, err := net.SplitHostPort(b.Source)
		if err != nil {
			return contact
		}
		ch, _, _ := net.SplitHostPort(contact)
		if src, cip := net.ParseIP(sh), net.ParseIP(ch); src != nil && !src.Equal(cip) {
			return b.Source
		}
		return contact
	}
	if s.flowOpen(transport, b.Source) {
		return b.Source
	}
	return contact
}

// flowOpen reports whether sipgo holds a live connection to addr on transport.
func (s *Server) flowOpen(transport, addr string) bool {
	c, _ := s.ua.TransportLayer().GetConnection(strings.ToLower(transport), addr)
	if c == nil {
		return false
	}
	c.Ref(-1) // GetConnection took a reference we do not keep
	return true
}

// FlowMetrics is implemented by a Metrics that counts calls to RFC 5626 outbound bindings
// that could not be sent because the binding's flow is gone (OutboundFlowGone).
type FlowMetrics interface {
	OutboundFlowGone()
}

// outboundDest is where a leg to an RFC 5626 outbound binding goes: down its flow (the
// connection its REGISTER came on), and nowhere else. §5.3 forbids falling back to the
// Contact address: a device behind a NAT or without a certificate cannot be reached there,
// and another host may now own that address. A gone flow (closed by the device, or by a
// restart of sipsvc) makes the binding unusable until the device registers again; the leg
// fails with 480. RFC 5626 gives 430 (Flow Failed) to an edge proxy that tells the
// registrar's side a flow died; sipsvc is the home proxy and the registrar itself, so the
// caller simply gets the 480 of a target that cannot be reached now.
func (s *Server) outboundDest(b dn.Binding, transport string) (string, *failure) {
	if !strings.EqualFold(b.Transport, transport) {
		return "", &failure{status: 480, reason: "Temporarily Unavailable", outcome: OutcomeFailed,
			cause: "outbound flow is " + strings.ToUpper(b.Transport) + ", the leg needs " + transport}
	}
	if !s.flowOpen(transport, b.Source) {
		if m, ok := s.cfg.Metrics.(FlowMetrics); ok {
			m.OutboundFlowGone()
		}
		return "", &failure{status: 480, reason: "Temporarily Unavailable", outcome: OutcomeFailed,
			cause: "outbound flow gone (RFC 5626)"}
	}
	return b.Source, nil
}

// pickFlows keeps one binding per device among the RFC 5626 outbound bindings of specs
// (§5.3: a request goes to one flow of an instance, the others are its backups): the most
// recently registered one whose flow is open, else the most recent one, which then fails
// in outboundDest. Other bindings are kept as they are, in order.
func (s *Server) pickFlows(specs []spec) []spec {
	best := map[string]int{} // instance → index into specs of its chosen flow
	open := map[int]bool{}
	for i, sp := range specs {
		b := sp.binding
		if !sp.registered || !b.Outbound() {
			continue
		}
		open[i] = s.flowOpen(b.Transport, b.Source)
		j, ok := best[b.InstanceID]
		if !ok || preferFlow(specs[i].binding, open[i], specs[j].binding, open[j]) {
			best[b.InstanceID] = i
		}
	}
	if len(best) == 0 {
		return specs
	}
	out := specs[:0:0]
	for i, sp := range specs {
		if sp.registered && sp.binding.Outbound() && best[sp.binding.InstanceID] != i {
			continue
		}
		out = append(out, sp)
	}
	return out
}

// preferFlow reports whether flow a (open: aOpen) is preferred to flow b: an open flow first,
// then the most recently registered, then the lower reg-id.
func preferFlow(a dn.Binding, aOpen bool, b dn.Binding, bOpen bool) bool {
	if aOpen != bOpen {
		return aOpen
	}
	if !a.Updated.Equal(b.Updated) {
		return a.Updated.After(b.Updated)
	}
	return a.RegID < b.RegID
}
