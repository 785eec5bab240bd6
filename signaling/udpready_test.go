package signaling

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestReadyRequestsLeaveFromTheUDPListener: once Serve is ready, a request we send over UDP
// leaves from our UDP listener (the port our Via names), not from a socket sipgo opens for
// it (whose reader goroutine may outlive the server).
func TestReadyRequestsLeaveFromTheUDPListener(t *testing.T) {
	alice := newPhone(t, "alice", "UDP")
	alice.SetAnswer(ringForever(alice))
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("1000", alice), ext("2000", bob)) // returns once Ready
	ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	inv := alice.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if src := inv.Source(); src != b.udp {
		t.Errorf("INVITE came from %s, want our UDP listener %s", src, b.udp)
	}
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	b.rec.waitKind(t, EventCallEnded)
}
