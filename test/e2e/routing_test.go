package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// sleepPastDeadline answers RouteCall only well after the caller's deadline. (The server's
// deadline, from grpc-timeout, expires slightly before the client's: answering right at it
// could still beat the client's deadline.)
func sleepPastDeadline(ctx context.Context) (*routingv1.RouteCallResponse, error) {
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	time.Sleep(300 * time.Millisecond)
	return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{
		Targets: []*routingv1.Target{{Destination: &routingv1.Target_Dn{Dn: "2000"}}},
	}}}, nil
}

// placeCall has the phone call the number through sipsvc and returns the final response; a
// 2xx is acknowledged.
func placeCall(s *stack, p *phone, number string) (*uac, *sip.Response) {
	s.t.Helper()
	u := p.invite(s, number, inviteOpts{})
	res := u.Wait(8 * time.Second)
	if res.IsSuccess() {
		u.Ack()
	}
	return u, res
}

// TestRoutingService: a routing service on a real gRPC server decides inbound calls:
// targets in order (a failed target moves to the next), a rejection, an error and a
// deadline overrun (both falling back to routing.fallback_dns, with a routing_fallback
// event); it is told each originated leg's scheme decision.
func TestRoutingService(t *testing.T) {
	t.Parallel()
	router := newTestRouter(func(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		switch req.GetDialed() {
		case "7001": // busy first target, then bob
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{
				Targets: []*routingv1.Target{
					{Destination: &routingv1.Target_Dn{Dn: "5000"}},
					{Destination: &routingv1.Target_Dn{Dn: "2000"}},
				},
			}}}, nil
		case "7603":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Reject{Reject: &routingv1.Rejection{
				SipStatus: 603, Reason: "Declined By Router",
			}}}, nil
		case "7500":
			return nil, status.Error(codes.Unavailable, "routing table is being reloaded")
		case "7999":
			return sleepPastDeadline(ctx)
		}
		return nil, status.Error(codes.NotFound, "no route")
	})
	s := startStack(t, stackOptions{router: router, routingTimeout: 300 * time.Millisecond, fallbackDNs: []string{"4000"}})
	s.trustLoopback() // the dialed numbers are routes, not DNs: only a trusted caller reaches them
	bob := s.addPhone("2000", "bob", "UDP")
	dave := s.addPhone("4000", "dave", "UDP")
	erin := s.addPhone("5000", "erin", "UDP")
	erin.setAnswer(rejectWith(486, "Busy Here"))
	alice := s.callerPhone("alice", "UDP")
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	t.Run("targets", func(t *testing.T) {
		u, res := placeCall(s, alice, "7001")
		if res.StatusCode != 200 {
			t.Fatalf("caller got %d, want 200 from the second target", res.StatusCode)
		}
		erin.WaitRequest(sip.INVITE, 1, time.Second)
		inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
		if string(inv.Body()) != alice.sdp {
			t.Errorf("target did not get the caller's offer")
		}
		if string(res.Body()) != bob.sdp {
			t.Errorf("caller did not get the target's answer")
		}
		reqs := router.routeRequests()
		if len(reqs) != 1 {
			t.Fatalf("%d RouteCall requests, want 1", len(reqs))
		}
		rr := reqs[0]
		if rr.GetDialed() != "7001" || rr.GetCaller() != "alice" || rr.GetCallId() == "" || rr.GetSipCallId() != u.Invite.CallID().Value() {
			t.Errorf("RouteCall request %v", rr)
		}
		if d := rr.GetInbound(); d.GetLegId() != "A" || d.GetScheme() != "sip" || d.GetTransport() != "UDP" {
			t.Errorf("RouteCall inbound decision %v", d)
		}
		if rr.GetCallerClass() != routingv1.CallerClass_CALLER_CLASS_TRUSTED || rr.GetCallerDn() != "lab-sbc" || !strings.Contains(rr.GetCallerRule(), "trusted_sources of DN lab-sbc") {
			t.Errorf("RouteCall caller class %v dn %q rule %q, want trusted by lab-sbc", rr.GetCallerClass(), rr.GetCallerDn(), rr.GetCallerRule())
		}
		if !strings.HasPrefix(rr.GetRequestUri(), "sip:7001@") || rr.GetSource() == "" {
			t.Errorf("RouteCall request_uri %q source %q", rr.GetRequestUri(), rr.GetSource())
		}
		// NotifyLegDecision carries the originated legs' decisions (not leg A's).
		n := router.waitNotified(t, 3*time.Second, func(n *routingv1.NotifyLegDecisionRequest) bool {
			return n.GetCallId() == rr.GetCallId() && n.GetDn() == "2000"
		})
		if d := n.GetDecision(); d.GetScheme() != "sip" || d.GetTransport() != "UDP" || d.GetSecure() || d.GetLegId() == "" || d.GetLegId() == "A" || d.GetReason() == "" {
			t.Errorf("NotifyLegDecision decision %v", d)
		}
		if n.GetSipCallId() == "" || n.GetSipCallId() == rr.GetSipCallId() || n.GetTime() == nil {
			t.Errorf("NotifyLegDecision %v", n)
		}
		if got := bob.WaitRequest(sip.INVITE, 1, time.Second); n.GetSipCallId() != got.CallID().Value() {
			t.Errorf("notified sip_call_id %q, bob's INVITE has %q", n.GetSipCallId(), got.CallID().Value())
		}
		router.waitNotified(t, 3*time.Second, func(n *routingv1.NotifyLegDecisionRequest) bool {
			return n.GetCallId() == rr.GetCallId() && n.GetDn() == "5000"
		})
		for _, e := range w.all() {
			if e.GetKind() == sipsvcv1.EventKind_EVENT_KIND_ROUTING_FALLBACK && e.GetCallId() == rr.GetCallId() {
				t.Errorf("routed call fell back: %v", e)
			}
		}
		if code := u.Bye(); code != 200 {
			t.Errorf("BYE → %d", code)
		}
		bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	})

	t.Run("reject", func(t *testing.T) {
		_, res := placeCall(s, alice, "7603")
		if res.StatusCode != 603 {
			t.Fatalf("caller got %d %s, want 603", res.StatusCode, res.Reason)
		}
		if res.Reason != "Declined By Router" {
			t.Errorf("reason %q", res.Reason)
		}
	})

	fallback := func(t *testing.T, number, outcome string) {
		before := dave.Count(sip.INVITE)
		start := time.Now()
		u, res := placeCall(s, alice, number)
		if res.StatusCode != 200 {
			t.Fatalf("caller got %d, want 200 from the fallback DN", res.StatusCode)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("fallback took %v", el)
		}
		dave.WaitRequest(sip.INVITE, before+1, time.Second)
		var callID string
		for _, rr := range router.routeRequests() {
			if rr.GetDialed() == number {
				callID = rr.GetCallId()
			}
		}
		ev := w.wait(3*time.Second, "routing_fallback", kind(sipsvcv1.EventKind_EVENT_KIND_ROUTING_FALLBACK, callID))
		if !strings.Contains(ev.GetCause(), outcome) || !strings.Contains(ev.GetCause(), "fallback") {
			t.Errorf("routing_fallback cause %q, want the %s and the fallback", ev.GetCause(), outcome)
		}
		if code := u.Bye(); code != 200 {
			t.Errorf("BYE → %d", code)
		}
	}
	t.Run("error", func(t *testing.T) { fallback(t, "7500", "error") })
	t.Run("timeout", func(t *testing.T) { fallback(t, "7999", "timeout") })
}

// TestRoutingBuiltinFallback: with no fallback DNs, a routing service that overruns its
// deadline falls back to the built-in router (dialed number → DN), and to 503 with
// Retry-After when that has no DN either.
func TestRoutingBuiltinFallback(t *testing.T) {
	t.Parallel()
	router := newTestRouter(func(ctx context.Context, _ *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		return sleepPastDeadline(ctx)
	})
	s := startStack(t, stackOptions{router: router, routingTimeout: 200 * time.Millisecond})
	s.trustLoopback()
	bob := s.addPhone("2000", "bob", "UDP")
	alice := s.callerPhone("alice", "UDP")
	w := s.watch(&sipsvcv1.WatchEventsRequest{Kinds: []sipsvcv1.EventKind{sipsvcv1.EventKind_EVENT_KIND_ROUTING_FALLBACK}})

	u, res := placeCall(s, alice, "2000")
	if res.StatusCode != 200 {
		t.Fatalf("caller got %d, want 200 through the built-in router", res.StatusCode)
	}
	bob.WaitRequest(sip.INVITE, 1, time.Second)
	ev := w.wait(3*time.Second, "routing_fallback", func(e *sipsvcv1.Event) bool { return true })
	if !strings.Contains(ev.GetCause(), "timeout") || !strings.Contains(ev.GetCause(), "builtin") {
		t.Errorf("routing_fallback cause %q, want timeout and builtin", ev.GetCause())
	}
	if code := u.Bye(); code != 200 {
		t.Errorf("BYE → %d", code)
	}

	_, res = placeCall(s, alice, "7999")
	if res.StatusCode != 503 || header(res, "Retry-After") == "" {
		t.Fatalf("caller got %d (Retry-After %q), want 503 with Retry-After", res.StatusCode, header(res, "Retry-After"))
	}
	w.wait(3*time.Second, "routing_fallback with no fallback", func(e *sipsvcv1.Event) bool {
		return strings.Contains(e.GetCause(), "503")
	})
	for _, e := range w.all() {
		if e.GetKind() != sipsvcv1.EventKind_EVENT_KIND_ROUTING_FALLBACK {
			t.Errorf("kinds filter let %v through", e.GetKind())
		}
	}
}
