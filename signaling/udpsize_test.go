package signaling

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{User: "5000", Host: "127.0.0.1"})
			req.SetTransport(tc.transport)
			req.SetBody([]byte(strings.Repeat("a", tc.body)))
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
