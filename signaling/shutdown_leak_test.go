package signaling

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"
)

// TestShutdownRefusesInDialogAndLeavesNoSocket: once shutdown has begun, an in-dialog
// request is answered 503 and starts no relay (a handler started then would race Serve's
// wait and could send after the user agent closed, where sipgo opens a UDP socket and a
// reader goroutine that nothing closes). After Shutdown returns and the phones are closed,
// no goroutine of the test is left: none of sipgo's readers in particular.
func TestShutdownRefusesInDialogAndLeavesNoSocket(t *testing.T) {
	before := goleak.IgnoreCurrent()
	bob := newPhone(t, "bob", "UDP")
	release := make(chan struct{})
	bob.Handle(sip.BYE, func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Record(req)
		select { // hold the shutdown's BYE: Serve is then stopping, its UDP listener still open
		case <-release:
		case <-time.After(5 * time.Second):
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	b := startB2BUA(t, nil, ext("2000", bob))
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "2000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- b.s.Shutdown(ctx) }()
	bob.WaitRequest(sip.BYE, 1, 3*time.Second) // shutdown has begun: it ends the call

	res := sendFrom(t, bob, calleeRequest(bob, inv, sip.INFO, 2, "", nil), b.addr("UDP"))
	if res.StatusCode != 503 {
		t.Errorf("INFO during shutdown → %d %s, want 503", res.StatusCode, res.Reason)
	}
	if n := alice.Count(sip.INFO); n != 0 {
		t.Errorf("the INFO sent during shutdown was relayed to the caller (%d)", n)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// A call goroutine that outlived the shutdown deadline and sends now gets an error: sipgo
	// would open a new socket, after Serve closed its transports, that nothing closes.
	var ruri sip.Uri
	must(t, sip.ParseUri("sip:bob@"+bob.Addr, &ruri))
	late := sip.NewRequest(sip.OPTIONS, ruri)
	late.AppendHeader(b.s.via("UDP"))
	late.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "sipsvc", Host: "127.0.0.1"}, Params: sip.NewParams()})
	late.AppendHeader(&sip.ToHeader{Address: ruri, Params: sip.NewParams()})
	cid := sip.CallIDHeader("late-" + sip.GenerateTagN(8))
	late.AppendHeader(&cid)
	late.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	late.SetBody(nil)
	b.s.prepare(late, "UDP", bob.Addr)
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	if _, err := b.s.send(sctx, late, nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("send after Serve returned: %v, want ErrServerClosed", err)
	}
	if err := b.s.write(late); !errors.Is(err, ErrServerClosed) {
		t.Errorf("write after Serve returned: %v, want ErrServerClosed", err)
	}
	bob.Close()
	alice.Close()
	goleak.VerifyNone(t, before)
}
