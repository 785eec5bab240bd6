package signaling

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

func TestRoutingServiceDecisions(t *testing.T) {
	bob, carol := newPhone(t, "bob", "UDP"), newPhone(t, "carol", "UDP")
	var asked atomic.Value
	router := RouterFunc(func(ctx context.Context, r RouteRequest) (RouteDecision, error) {
		asked.Store(r)
		switch r.Dialed {
		case "reject":
			return RouteDecision{Reject: &Rejection{Status: 603, Reason: "Decline"}}, nil
		case "ordered":
			// First target fails (unknown DN), the second answers.
			return RouteDecision{Targets: []Target{{DN: "nope"}, {URI: carol.ContactURI("3000", "sip")}}}, nil
		case "error":
			return RouteDecision{}, errors.New("boom")
		case "slow":
			<-ctx.Done()
			return RouteDecision{}, ctx.Err()
		}
		return RouteDecision{Targets: []Target{{DN: "2000"}}}, nil
	})
	b := startB2BUA(t, func(c *Config) {
		c.Router = router
		c.RoutingTimeout = 200 * time.Millisecond
		c.FallbackDNs = []string{"2000"}
	}, ext("2000", bob))
	alice := newPhone(t, "alice", "UDP")

	if res := alice.invite(b, "reject", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 603 {
		t.Errorf("reject → %d", res.StatusCode)
	}
	rr := asked.Load().(RouteRequest)
	if rr.Caller != "alice" || rr.Dialed != "reject" || rr.Inbound.Scheme != "sip" || rr.Inbound.Transport != "UDP" || rr.Headers["From"] == "" {
		t.Errorf("route request %+v", rr)
	}
	call := alice.invite(b, "ordered", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("ordered targets → %d", res.StatusCode)
	}
	call.Ack()
	carol.WaitRequest(sip.INVITE, 1, time.Second)
	call.Request(sip.BYE, nil)

	for _, dialed := range []string{"error", "slow"} {
		start := time.Now()
		call := alice.invite(b, dialed, inviteOpts{})
		res := call.Wait(5 * time.Second)
		if res.StatusCode != 200 {
			t.Fatalf("%s: fallback DN did not answer: %d", dialed, res.StatusCode)
		}
		if dialed == "slow" && time.Since(start) > 2*time.Second {
			t.Errorf("routing deadline not applied: %v", time.Since(start))
		}
		call.Ack()
		call.Request(sip.BYE, nil)
	}
	var fallbacks int
	for _, e := range b.rec.all() {
		if e.Kind == EventRoutingFallback {
			fallbacks++
			if !strings.Contains(e.Cause, "fallback via fallback") {
				t.Errorf("fallback cause %q", e.Cause)
			}
		}
	}
	if fallbacks != 2 {
		t.Errorf("%d fallback events, want 2", fallbacks)
	}
}

func TestRoutingDownNoFallback503(t *testing.T) {
	b := startB2BUA(t, func(c *Config) {
		c.Router = RouterFunc(func(context.Context, RouteRequest) (RouteDecision, error) { return RouteDecision{}, errors.New("down") })
	})
	res := newPhone(t, "alice", "UDP").invite(b, "4242", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 503 || hdr(res, "Retry-After") == "" {
		t.Fatalf("got %d Retry-After %q, want 503 with Retry-After", res.StatusCode, hdr(res, "Retry-After"))
	}
}

// TestForkToAllBindings: a self-registered DN with two live bindings rings both; the first
// 2xx wins and the other is CANCELled.
func TestForkToAllBindings(t *testing.T) {
	fast, slow := newPhone(t, "fast", "UDP"), newPhone(t, "slow", "TCP")
	slow.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.OnCancel(func(r *sip.Request) { slow.Record(r) })
		slow.Ring(req, tx)
		<-tx.Done()
	})

	fast.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		fast.Ring(req, tx)
		time.Sleep(100 * time.Millisecond)
		fast.OK(req, tx, []byte(testSDP))
	})

	b := startB2BUA(t, nil, dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*"})
	b.dir.mu.Lock()
	b.dir.bindings["7789"] = []dn.Binding{
		{Number: "7789", Contact: "sip:7789@" + fast.Addr, Transport: "UDP", Expires: time.Now().Add(time.Hour)},
		{Number: "7789", Contact: "sip:7789@" + slow.Addr + ";transport=tcp", Transport: "TCP", Expires: time.Now().Add(time.Hour)},
	}
	b.dir.mu.Unlock()
	call := newPhone(t, "alice", "UDP").invite(b, "7789", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	slow.WaitRequest(sip.INVITE, 1, time.Second)
	slow.WaitRequest(sip.CANCEL, 1, 3*time.Second)
	call.Ack()
	call.Request(sip.BYE, nil)
	fast.WaitRequest(sip.BYE, 1, 2*time.Second)
}

// TestPRACKOnReliableProvisional: a callee that requires 100rel gets PRACK (RFC 3262).
func TestPRACKOnReliableProvisional(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 183, "Session Progress", []byte(testSDP))
		res.To().Params.Add("tag", "bobtag")
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: bob.Port()}})
		res.AppendHeader(sip.NewHeader("Require", "100rel"))
		res.AppendHeader(sip.NewHeader("RSeq", "1"))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(res)
		select {
		case <-time.After(3 * time.Second):
			return
		case <-waitFor(bob, sip.PRACK):
		}
		bob.OK(req, tx, []byte(testSDP))
	})

	b := startB2BUA(t, nil, ext("2000", bob))
	call := newPhone(t, "alice", "UDP").invite(b, "2000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	pr := bob.WaitRequest(sip.PRACK, 1, time.Second)
	if hdr(pr, "RAck") != "1 1 INVITE" {
		t.Errorf("RAck %q", hdr(pr, "RAck"))
	}
	if p := call.WaitProvisional(183, time.Second); string(p.Body()) != testSDP {
		t.Errorf("183 SDP not relayed")
	}
	call.Ack()
	call.Request(sip.BYE, nil)
}

func waitFor(p *phone, m sip.RequestMethod) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for i := 0; i < 300; i++ {
			if p.Count(m) > 0 {
				close(ch)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return ch
}
