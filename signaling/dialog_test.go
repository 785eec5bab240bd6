package signaling

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fakeClock is a Clock the test moves by hand. advance hands back the callbacks that came
// due instead of running them, as time.AfterFunc hands a callback to its own goroutine: the
// test decides when they run (e.g. after a refresh that re-armed the timer).
type fakeClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Duration
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Duration
	f    func()
	done bool // fired or stopped; guarded by c.mu
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) ClockTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now + d, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// advance moves the clock by d and returns the callbacks of the timers now due, which
// count as fired (Stop no longer stops them).
func (c *fakeClock) advance(d time.Duration) []func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += d
	var due []func()
	for _, t := range c.timers {
		if !t.done && t.at <= c.now {
			t.done = true
			due = append(due, t.f)
		}
	}
	return due
}

// waitEnded waits for the call_ended event of call id.
func waitEnded(t *testing.T, b *b2bua, id string) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range b.rec.all() {
			if e.Kind == EventCallEnded && e.CallID == id {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("call %s did not end", id)
	return Event{}
}

func onlyCall(t *testing.T, b *b2bua, f CallFilter) CallInfo {
	t.Helper()
	calls := b.s.ListCalls(context.Background(), f)
	if len(calls) != 1 {
		t.Fatalf("ListCalls(%+v): %d calls, want 1", f, len(calls))
	}
	return calls[0]
}

// TestSessionTimer_StaleFireAfterRefreshKeepsCall: the expiry of the first deadline is
// already under way when the caller's refresh arrives and re-arms the timer; that stale
// expiry must not end the refreshed call (generation guard). The refreshed deadline itself
// still ends the call when no refresh comes (RFC 4028 §10).
func TestSessionTimer_StaleFireAfterRefreshKeepsCall(t *testing.T) {
	fc := &fakeClock{}
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.Clock = fc }, ext("6000", bob))
	alice := newPhone(t, "alice", "UDP")
	se := sip.NewHeader("Session-Expires", "90;refresher=uac")
	call := alice.invite(b, "6000", inviteOpts{headers: []sip.Header{sip.NewHeader("Supported", "timer"), se}})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 || hdr(res, "Session-Expires") != "90;refresher=uac" {
		t.Fatalf("got %d Session-Expires %q", res.StatusCode, hdr(res, "Session-Expires"))
	}
	call.Ack()
	ci := onlyCall(t, b, CallFilter{DN: "6000"})

	due := fc.advance(61 * time.Second) // past 90 - 30 s without a refresh
	if len(due) != 1 {
		t.Fatalf("%d timers due, want leg A's expiry", len(due))
	}
	if res := call.Request(sip.UPDATE, nil, se); res.StatusCode != 200 {
		t.Fatalf("refresh → %d", res.StatusCode)
	}
	for _, f := range due {
		f() // the expiry for the old deadline runs after the refresh
	}
	time.Sleep(300 * time.Millisecond)
	if n := alice.Count(sip.BYE) + bob.Count(sip.BYE); n != 0 {
		t.Fatalf("a stale timer ended the refreshed call (%d BYEs)", n)
	}
	if got, err := b.s.GetCall(context.Background(), ci.ID); err != nil || got.State != StateTalking {
		t.Fatalf("call after refresh: %+v %v", got, err)
	}

	due = fc.advance(61 * time.Second)
	if len(due) != 1 {
		t.Fatalf("%d timers due after the refreshed deadline, want 1", len(due))
	}
	for _, f := range due {
		f()
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	if ended := waitEnded(t, b, ci.ID); !strings.Contains(ended.Cause, "session timer expired on leg A") {
		t.Errorf("cause %q", ended.Cause)
	}
}

// TestAttendedTransfer_MovedLegTimerEndsNewCall: carol's leg of the consultation call has a
// session timer (carol refreshes). After the attended transfer moves that leg into alice's
// call, its expiry ends alice's call, not the consultation call that is already gone.
func TestAttendedTransfer_MovedLegTimerEndsNewCall(t *testing.T) {
	fc := &fakeClock{}
	alice := newPhone(t, "alice", "UDP")
	bob := newPhone(t, "bob", "UDP")
	carol := newPhone(t, "carol", "UDP")
	carol.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag != "" {
			carol.OK(req, tx, carol.SDP) // the transfer's re-INVITE
			return
		}
		carol.OK(req, tx, carol.SDP, sip.NewHeader("Session-Expires", "90;refresher=uas"))
	})
	b := startB2BUA(t, func(c *Config) { c.Clock = fc }, ext("2000", bob), ext("3000", carol))

	call1 := alice.invite(b, "2000", inviteOpts{})
	if res := call1.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("alice → bob: %d", res.StatusCode)
	}
	call1.Ack()
	c1 := onlyCall(t, b, CallFilter{DN: "2000"})
	call2 := bob.invite(b, "3000", inviteOpts{})
	if res := call2.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("bob → carol: %d", res.StatusCode)
	}
	call2.Ack()
	c2 := onlyCall(t, b, CallFilter{DN: "3000"})

	// carol keeps talking on her leg while it moves (under -race: nothing reads the leg's
	// call unlocked).
	carolInv := carol.WaitRequest(sip.INVITE, 1, time.Second)
	stop := make(chan struct{})
	infoErr := make(chan error, 1)
	go func() {
		defer close(infoErr)
		for seq := uint32(10); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			req := calleeRequest(carol, carolInv, sip.INFO, seq, "", []byte("x"))
			via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: carol.Port(), Params: sip.NewParams()}
			via.Params.Add("branch", sip.GenerateBranch())
			req.PrependHeader(via)
			req.SetTransport("UDP")
			req.SetDestination(carolInv.Source())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := carol.Client.Do(ctx, req, prebuilt)
			cancel()
			if err != nil || (res.StatusCode != 200 && res.StatusCode != 491) {
				infoErr <- fmt.Errorf("INFO %d during the transfer: %v %v", seq, res, err)
				return
			}
		}
	}()
	err := b.s.TransferCall(context.Background(), TransferRequest{CallID: c1.ID, LegID: "A", ConsultCallID: c2.ID})
	close(stop)
	if e := <-infoErr; e != nil {
		t.Error(e)
	}
	if err != nil {
		t.Fatalf("attended transfer: %v", err)
	}
	waitEnded(t, b, c2.ID)
	got, err := b.s.GetCall(context.Background(), c1.ID)
	if err != nil || len(got.Legs) != 2 || got.Legs[1].DN != "3000" {
		t.Fatalf("after transfer: %+v %v", got, err)
	}

	due := fc.advance(61 * time.Second) // carol does not refresh
	if len(due) != 1 {
		t.Fatalf("%d timers due, want carol's leg expiry", len(due))
	}
	for _, f := range due {
		f()
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	carol.WaitRequest(sip.BYE, 1, 3*time.Second)
	if ended := waitEnded(t, b, c1.ID); !strings.Contains(ended.Cause, "session timer expired") {
		t.Errorf("call %s ended with %q", c1.ID, ended.Cause)
	}
}
