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
