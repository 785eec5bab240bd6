package signaling

import (
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// deadAddr is a local TCP address nobody listens on any more.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	a := l.Addr().String()
	l.Close()
	return a
}

// TestRegisteredDeviceReachable (issue 11, Connections; R33, RFC 3581): a device is reached
// where it can be: after a restart of sipsvc the TLS connection its REGISTER came on is gone
// (the binding's source is a dead port), so the call goes to its registered Contact; a UDP
// device behind a NAT (its Contact names a private address it cannot be reached at) is
// reached at the source its REGISTER came from.
func TestRegisteredDeviceReachable(t *testing.T) {
	tlsBob := newPhone(t, "tlsbob", "TLS")
	udpBob := newPhone(t, "udpbob", "UDP")
	tests := []struct {
		name    string
		bob     *phone
		binding dn.Binding
	}{
		{"TLS flow gone after restart: Contact", tlsBob, dn.Binding{
			Contact: tlsBob.ContactURI("7001", "sips"), Secure: true, Transport: "TLS", Source: deadAddr(t)}},
		{"TCP flow gone: Contact", newPhone(t, "tcpbob", "TCP"), dn.Binding{Transport: "TCP", Source: deadAddr(t)}},
		{"UDP behind NAT: source of the REGISTER", udpBob, dn.Binding{
			Contact: "sip:7003@192.168.77.10:5060", Transport: "UDP", Source: udpBob.Addr}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			number := "700" + string(rune('1'+i))
			bd := tc.binding
			bd.Number = number
			if bd.Contact == "" {
				bd.Contact = tc.bob.ContactURI(number, "sip")
			}
			bd.Expires = time.Now().Add(time.Hour)
			b := startB2BUA(t, nil, dn.DN{Number: number, Type: dn.TypeExtension, Contact: "*"})
			b.dir.mu.Lock()
			b.dir.bindings[number] = []dn.Binding{bd}
			b.dir.mu.Unlock()
			alice := newPhone(t, "alice", "UDP")
			call := alice.invite(b, number, inviteOpts{})
			res := call.Wait(10 * time.Second)
			if res.StatusCode != 200 {
				t.Fatalf("call to the registered device: %d %s (Reason %q)", res.StatusCode, res.Reason, hdr(res, "Reason"))
			}
			call.Ack()
			if tc.bob.WaitRequest(sip.INVITE, 1, time.Second) == nil {
				t.Error("the device got no INVITE")
			}
			call.Bye()
		})
	}
}
