package signaling

import (
	"runtime"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine is still running after them (a call,
// a session timer, a relay or a listener left behind).
func TestMain(m *testing.M) {
	sip.SetDefaultLogger(testLogger())
	sip.UDPMTUSize = UDPMTUSize // as app does at process start (app/udpsize.go)
	goleak.VerifyTestMain(m)
}

// TestNoStateLeftAfterCalls runs answered, busy and cancelled calls and checks that no call,
// leg or goroutine is left behind (a long-running B2BUA must not grow with the calls it has
// carried).
func TestNoStateLeftAfterCalls(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	busy := newPhone(t, "busy", "UDP")
	busy.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
	})

	b := startB2BUA(t, nil, ext("2000", bob), ext("3000", busy))
	alice := newPhone(t, "alice", "UDP")
	run := func() {
		call := alice.invite(b, "2000", inviteOpts{})
		if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
			t.Fatalf("final %d", res.StatusCode)
		}
		call.Ack()
		time.Sleep(5 * time.Millisecond)
		call.Request(sip.BYE, nil)
		if res := alice.invite(b, "3000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 486 {
			t.Fatalf("busy call → %d", res.StatusCode)
		}
	}
	run() // warm up pools and listeners
	time.Sleep(200 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 30; i++ {
		run()
	}
	// sipgo keeps a goroutine per non-2xx ACK until Timer I (T4, 5 s) ends its transaction.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.s.mu.Lock()
		calls, legs := len(b.s.calls), len(b.s.legs)
		b.s.mu.Unlock()
		if calls == 0 && legs == 0 && runtime.NumGoroutine() <= base+10 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Logf("%s", buf[:n])
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	t.Fatalf("after 60 calls: %d calls, %d legs, %d goroutines (baseline %d)", len(b.s.calls), len(b.s.legs), runtime.NumGoroutine(), base)
}
