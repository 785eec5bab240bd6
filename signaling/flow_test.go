package signaling

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
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

// flowMetrics counts gone outbound flows; it implements Metrics and FlowMetrics.
type flowMetrics struct {
	countingMetrics
	gone atomic.Int64
}

func (m *flowMetrics) OutboundFlowGone() { m.gone.Add(1) }

// tlsFlow is a device's TLS connection to sipsvc: the flow of an outbound binding.
func tlsFlow(t *testing.T, b *b2bua) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := tls.Dial("tcp", b.tlsA, clientTLS())
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	// A keep-alive ping makes sure sipsvc has accepted the connection (R33, RFC 5626 §4.4.1).
	_, err = conn.Write([]byte("\r\n\r\n"))
	must(t, err)
	pong := make([]byte, 2)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(conn, pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keep-alive pong: %q %v", pong, err)
	}
	return conn, bufio.NewReader(conn)
}

// TestRFC5626_OutboundFlowOnly (R33; RFC 5626 §5.3): a call to an outbound binding goes
// down the binding's flow; once that flow is gone the call does NOT go to the registered
// Contact (a live phone here, which must see nothing) and ends 480; a device with two
// flows (reg-id 1 gone, reg-id 2 open) is reached over the surviving one.
func TestRFC5626_OutboundFlowOnly(t *testing.T) {
	const inst = "<urn:uuid:00000000-0000-1000-8000-000a95a0e130>"
	m := &flowMetrics{}
	b := startB2BUA(t, func(c *Config) { c.Metrics = m }, dn.DN{Number: "7101", Type: dn.TypeExtension, Contact: "*"})
	contact := newPhone(t, "contact", "TLS") // answers if a call wrongly goes to the Contact
	setBindings := func(bs ...dn.Binding) {
		for i := range bs {
			bs[i].Number, bs[i].Contact, bs[i].Secure, bs[i].Transport = "7101", contact.ContactURI("7101", "sips"), true, "TLS"
			bs[i].InstanceID, bs[i].Expires = inst, time.Now().Add(time.Hour)
		}
		b.dir.mu.Lock()
		b.dir.bindings["7101"] = bs
		b.dir.mu.Unlock()
	}
	wantInviteOn := func(t *testing.T, r *bufio.Reader, conn net.Conn) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, err := readSIP(r)
		if err != nil || !strings.HasPrefix(msg, "INVITE sips:7101@") {
			t.Fatalf("no INVITE on the flow: %q %v", firstLine(msg), err)
		}
	}

	flow, fr := tlsFlow(t, b)
	t.Run("over the flow", func(t *testing.T) {
		setBindings(dn.Binding{RegID: 1, Source: flow.LocalAddr().String()})
		call := newPhone(t, "alice", "UDP").invite(b, "7101", inviteOpts{})
		wantInviteOn(t, fr, flow)
		_ = call
	})

	t.Run("flow gone: 480, Contact not dialled", func(t *testing.T) {
		src := flow.LocalAddr().String()
		flow.Close()
		deadline := time.Now().Add(5 * time.Second)
		for b.s.flowOpen("TLS", src) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		setBindings(dn.Binding{RegID: 1, Source: src})
		res := newPhone(t, "alice", "UDP").invite(b, "7101", inviteOpts{}).Wait(10 * time.Second)
		if res.StatusCode != 480 || !strings.Contains(hdr(res, "Reason"), "outbound flow gone") {
			t.Fatalf("call to a gone flow: %d %s (Reason %q), want 480", res.StatusCode, res.Reason, hdr(res, "Reason"))
		}
		time.Sleep(200 * time.Millisecond) // a wrong INVITE would have been sent before the 480
		if n := len(contact.Requests(sip.INVITE)); n != 0 {
			t.Errorf("RFC 5626 §5.3: %d INVITE(s) went to the registered Contact", n)
		}
		if m.gone.Load() == 0 {
			t.Error("OutboundFlowGone not counted")
		}
	})

	t.Run("two flows: the surviving one", func(t *testing.T) {
		flow2, fr2 := tlsFlow(t, b)
		now := time.Now()
		setBindings(
			// The gone flow registered last: an open flow still wins.
			dn.Binding{RegID: 1, Source: deadAddr(t), Updated: now},
			dn.Binding{RegID: 2, Source: flow2.LocalAddr().String(), Updated: now.Add(-time.Minute)},
		)
		call := newPhone(t, "alice", "UDP").invite(b, "7101", inviteOpts{})
		wantInviteOn(t, fr2, flow2)
		_ = call
		if n := len(contact.Requests(sip.INVITE)); n != 0 {
			t.Errorf("%d INVITE(s) went to the registered Contact", n)
		}
	})
}
