package signaling

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/siptest"
)

// TestUDPRequestSizeLimit: with sipgo's UDP limit raised for responses (UDPMTUSize), the
// requests sipsvc sends over UDP are still held to RFC 3261 §18.1.1 (1300 bytes with an
// unknown path MTU), refused with the error sipgo gave before; TCP and TLS are not limited.
func TestUDPRequestSizeLimit(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		body      int
		refused   bool
	}{
		{"small UDP", "UDP", 100, false},
		{"large UDP", "UDP", 2000, true},
		{"large TCP", "TCP", 2000, false},
		{"large TLS", "TLS", 2000, false},
		{"large route set, no body", "UDP", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{User: "5000", Host: "127.0.0.1"})
			req.SetTransport(tc.transport)
			if tc.body > 0 {
				req.SetBody([]byte(strings.Repeat("a", tc.body)))
			} else {
				for i := range 60 { // a peer's long Record-Route becomes our route set
					req.AppendHeader(sip.NewHeader("Route", fmt.Sprintf("<sip:proxy%02d.example.net;lr>", i)))
				}
			}
			err := checkUDPRequestSize(req)
			if got := err != nil; got != tc.refused {
				t.Fatalf("refused %v (%v), want %v", got, err, tc.refused)
			}
			if tc.refused && !errors.Is(err, sip.ErrUDPMTUCongestion) {
				t.Fatalf("error %v does not wrap sip.ErrUDPMTUCongestion", err)
			}
		})
	}
}

// TestRequestSizeMatchesString: the counted size is exactly what sipgo writes, with and
// without a body.
func TestRequestSizeMatchesString(t *testing.T) {
	for _, body := range [][]byte{nil, []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5060})
		req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1"))
		req.AppendHeader(sip.NewHeader("Call-ID", "size-test"))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
		if got, want := requestSize(req), len(req.String()); got != want {
			t.Errorf("requestSize = %d, len(String()) = %d (body %d bytes)", got, want, len(body))
		}
	}
}

func BenchmarkCheckUDPRequestSize(b *testing.B) {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: 5060})
	req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1"))
	req.SetTransport("UDP")
	req.SetBody(make([]byte, 300))
	b.ReportAllocs()
	for b.Loop() {
		_ = checkUDPRequestSize(req)
	}
}

// TestLargeUDPRequestRefusedOnTheWire: an offer too large for a UDP leg (RFC 3261 §18.1.1,
// 1300 bytes) never leaves our UDP listener, where the check counts the bytes sipgo
// formatted: the caller (over TCP) gets a 503, the callee nothing, and the next call with
// a small offer goes through.
func TestLargeUDPRequestRefusedOnTheWire(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip"), AllowAnonymous: true})
	large := []byte(testSDP + strings.Repeat("a=x-pad:0123456789abcdef0123456789abcdef\r\n", 40))
	alice := siptest.NewPhone(t, "alice", "TCP", siptest.Options{SDP: large})
	call := (&phone{alice}).invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 503 {
		t.Fatalf("final %d for an offer of %d bytes to a UDP callee, want 503", res.StatusCode, len(large))
	}
	if n := bob.Count(sip.INVITE); n != 0 {
		t.Fatalf("callee got %d INVITEs over UDP larger than %d bytes", n, MaxUDPRequest)
	}

	small := newPhone(t, "carol", "UDP")
	call = small.invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("the next call: final %d", res.StatusCode)
	}
	call.Ack()
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
}
