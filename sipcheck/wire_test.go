package sipcheck

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPacketConnRequestSize: with MaxRequest set, a request larger than it is not written
// (RFC 3261 §18.1.1) and the error wraps SizeCause; a response of any size and a request
// within the limit are written.
func TestPacketConnRequestSize(t *testing.T) {
	cause := errors.New("too large")
	recv, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc := WrapPacketConn(raw, WireConfig{MaxRequest: 1300, SizeCause: cause})
	defer pc.Close()

	pad := strings.Repeat("x", 1400)
	tests := []struct {
		name    string
		msg     string
		refused bool
	}{
		{"small request", "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\r\n", false},
		{"large request", "INVITE sip:a@127.0.0.1 SIP/2.0\r\nX: " + pad + "\r\n\r\n", true},
		{"large response", "SIP/2.0 200 OK\r\nX: " + pad + "\r\n\r\n", false},
	}
	buf := make([]byte, 4096)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := pc.WriteTo([]byte(tc.msg), recv.LocalAddr())
			if tc.refused {
				var se *RequestSizeError
				if !errors.As(err, &se) || !errors.Is(err, cause) {
					t.Fatalf("WriteTo = %d, %v; want a *RequestSizeError wrapping the cause", n, err)
				}
				if se.Method != "INVITE" || se.Size != len(tc.msg) || se.Limit != 1300 {
					t.Errorf("error fields %+v", *se)
				}
				return
			}
			if err != nil || n != len(tc.msg) {
				t.Fatalf("WriteTo = %d, %v", n, err)
			}
			_ = recv.SetReadDeadline(time.Now().Add(2 * time.Second))
			got, _, err := recv.ReadFrom(buf)
			if err != nil || string(buf[:got]) != tc.msg {
				t.Fatalf("received %d bytes (%v), want the %d written", got, err, len(tc.msg))
			}
		})
	}
}
