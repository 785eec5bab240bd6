package telemetry

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/siptest"
	"github.com/sipsvc/sipsvc/signaling"
)

// oneDN is a Directory with a single DN.
type oneDN struct{ d dn.DN }

func (o oneDN) Lookup(_ context.Context, n string) (dn.DN, error) {
	if n != o.d.Number {
		return dn.DN{}, fmt.Errorf("lookup %s: %w", n, dn.ErrNotFound)
	}
	return o.d, nil
}

func (oneDN) Bindings(context.Context, string) ([]dn.Binding, error) { return nil, nil }

// TestCallsEnded_Callee480IsUnavailable: over real UDP sockets, a callee that answers 480 is
// counted in sipsvc_calls_ended_total as unavailable (once counted as no_answer because the
// cause text "leg B1 answered 480" contains "answer"), with direction inbound.
func TestCallsEnded_Callee480IsUnavailable(t *testing.T) {
	tel, m := newTestMetrics(t)
	bob := siptest.NewPhone(t, "bob", "UDP", siptest.Options{ManualClose: true})
	defer bob.Close()
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil)
		res.To().Params.Add("tag", "bobtag")
		_ = tx.Respond(res)
	})
	ended := make(chan struct{}, 1)
	s, err := signaling.New(signaling.Config{
		Hostname:  "127.0.0.1",
		Directory: oneDN{dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")}},
		Observers: []signaling.Observer{m, signaling.ObserverFunc(func(_ context.Context, ev signaling.Event) {
			if ev.Kind == signaling.EventCallEnded {
				ended <- struct{}{}
			}
		})},
		Logger:      siptest.Logger(),
		RingTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, signaling.Listeners{UDP: []net.PacketConn{u}}) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	alice := siptest.NewPhone(t, "alice", "UDP", siptest.Options{ManualClose: true})
	defer alice.Close()
	if res := alice.Invite(u.LocalAddr().String(), "6000", siptest.InviteOptions{}).Wait(5 * time.Second); res.StatusCode != 480 {
		t.Fatalf("final %d, want 480", res.StatusCode)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("no call_ended")
	}
	got := scrape(t, tel.MetricsHandler)
	if v := got[`sipsvc_calls_ended_total{sipsvc_call_direction="inbound",sipsvc_call_outcome="unavailable"}`]; v != "1" {
		t.Errorf("unavailable calls = %q, want 1", v)
	}
	if v, ok := got[`sipsvc_calls_ended_total{sipsvc_call_direction="inbound",sipsvc_call_outcome="no_answer"}`]; ok {
		t.Errorf("a callee's 480 counted as no_answer (%s)", v)
	}
}
