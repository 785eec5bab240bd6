package service

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sipsvc/sipsvc/dn"
	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
	"github.com/sipsvc/sipsvc/signaling"
)

// testRouter is a routing.v1 server whose behaviour is set with func fields before start.
type testRouter struct {
	routingv1.UnimplementedRoutingServiceServer
	RouteCallFunc func(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error)
	NotifyFunc    func(ctx context.Context, req *routingv1.NotifyLegDecisionRequest) error

	mu       sync.Mutex // guards notified
	notified []*routingv1.NotifyLegDecisionRequest
}

func (r *testRouter) RouteCall(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
	return r.RouteCallFunc(ctx, req)
}

func (r *testRouter) NotifyLegDecision(ctx context.Context, req *routingv1.NotifyLegDecisionRequest) (*routingv1.NotifyLegDecisionResponse, error) {
	if r.NotifyFunc != nil {
		if err := r.NotifyFunc(ctx, req); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.notified = append(r.notified, req)
	r.mu.Unlock()
	return &routingv1.NotifyLegDecisionResponse{}, nil
}

func (r *testRouter) notifications() []*routingv1.NotifyLegDecisionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*routingv1.NotifyLegDecisionRequest(nil), r.notified...)
}

// startRouter serves r on 127.0.0.1:0 and returns a RoutingClient for it.
func startRouter(t *testing.T, r *testRouter, cfg RoutingClientConfig) *RoutingClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	routingv1.RegisterRoutingServiceServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	cfg.Address = l.Addr().String()
	c, err := NewRoutingClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		srv.Stop()
		<-done
	})
	return c
}

func sampleRouteRequest() signaling.RouteRequest {
	return signaling.RouteRequest{
		CallID: "c1", SIPCallID: "abc@10.0.0.1", Caller: "1000", CallerDisplay: "Alice", Dialed: "2000",
		RequestURI: "sips:2000@sipsvc.example", Headers: map[string]string{"User-Agent": "phone/1"},
		Inbound:     signaling.LegDecision{Leg: "A", Scheme: "sips", Transport: "TLS", Secure: true, Reason: "request-uri sips", Rule: "R3"},
		Source:      "10.0.0.1:5061",
		CallerClass: signaling.CallerTrusted, CallerDN: "trunk1", CallerRule: "source 10.0.0.1 in trusted_sources of DN trunk1",
	}
}

func TestRoutingClientRoute(t *testing.T) {
	var seen *routingv1.RouteCallRequest
	var seenMD metadata.MD
	r := &testRouter{RouteCallFunc: func(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		seenMD, _ = metadata.FromIncomingContext(ctx)
		switch req.GetDialed() {
		case "2000":
			seen = req
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{Targets: []*routingv1.Target{
				{Destination: &routingv1.Target_Dn{Dn: "2000"}, Timeout: durationpb.New(15 * time.Second), Policy: routingv1.SipsPolicy_SIPS_POLICY_STRICT},
				{Destination: &routingv1.Target_Uri{Uri: "sip:voicemail@10.0.0.9;transport=tcp"}},
			}}}}, nil
		case "486":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Reject{Reject: &routingv1.Rejection{SipStatus: 486, Reason: "Busy Here"}}}, nil
		case "err":
			return nil, status.Error(codes.Internal, "routing table corrupt")
		case "empty":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{}}}, nil
		case "none":
			return &routingv1.RouteCallResponse{}, nil
		case "200":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Reject{Reject: &routingv1.Rejection{SipStatus: 200}}}, nil
		case "baduri":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{Targets: []*routingv1.Target{
				{Destination: &routingv1.Target_Uri{Uri: "http://x"}}}}}}, nil
		case "crlfuri": // issue 10: a routing answer must not inject headers or break the Request-Line
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{Targets: []*routingv1.Target{
				{Destination: &routingv1.Target_Uri{Uri: "sip:6000@10.0.0.6\r\nP-Asserted-Identity: <sip:911@x>"}}}}}}, nil
		case "crlfreason":
			return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Reject{Reject: &routingv1.Rejection{SipStatus: 486, Reason: "Busy\r\nX-Evil: 1"}}}, nil
		}
		return nil, status.Error(codes.NotFound, "no route")
	}}
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	c := startRouter(t, r, RoutingClientConfig{Timeout: 2 * time.Second, TracerProvider: tp})
	ctx, span := tp.Tracer("test").Start(ctxT(t), "invite")
	defer span.End()

	d, err := c.Route(ctx, sampleRouteRequest())
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	want := []signaling.Target{
		{DN: "2000", Timeout: 15 * time.Second, Policy: dn.PolicyStrict},
		{URI: "sip:voicemail@10.0.0.9;transport=tcp"},
	}
	if len(d.Targets) != 2 || d.Targets[0] != want[0] || d.Targets[1] != want[1] || d.Reject != nil || d.Source != "routing-service" {
		t.Errorf("decision %+v", d)
	}
	if seen.GetCallId() != "c1" || seen.GetSipCallId() != "abc@10.0.0.1" || seen.GetCallerDisplay() != "Alice" ||
		seen.GetRequestUri() != "sips:2000@sipsvc.example" || seen.GetHeaders()["User-Agent"] != "phone/1" ||
		seen.GetInbound().GetRule() != "R3" || !seen.GetInbound().GetSecure() || seen.GetSource() != "10.0.0.1:5061" {
		t.Errorf("routing service saw %v", seen)
	}
	// Trace context reaches the routing service (otelgrpc client stats handler).
	if tps := seenMD.Get("traceparent"); len(tps) != 1 || !strings.Contains(tps[0], span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent = %v; want trace %s", tps, span.SpanContext().TraceID())
	}

	req := sampleRouteRequest()
	req.Dialed = "486"
	if d, err := c.Route(ctx, req); err != nil || d.Reject == nil || d.Reject.Status != 486 || d.Reject.Reason != "Busy Here" || len(d.Targets) != 0 {
		t.Errorf("reject: %+v, %v", d, err)
	}

	if seen.GetCallerClass() != routingv1.CallerClass_CALLER_CLASS_TRUSTED || seen.GetCallerDn() != "trunk1" || !strings.Contains(seen.GetCallerRule(), "trusted_sources of DN trunk1") {
		t.Errorf("routing service was not told who calls: class %v dn %q rule %q", seen.GetCallerClass(), seen.GetCallerDn(), seen.GetCallerRule())
	}

	for _, dialed := range []string{"err", "empty", "none", "200", "baduri", "crlfuri", "crlfreason", "404"} {
		t.Run(dialed, func(t *testing.T) {
			req := sampleRouteRequest()
			req.Dialed = dialed
			d, err := c.Route(ctx, req)
			if err == nil {
				t.Fatalf("Route succeeded: %+v", d)
			}
			if !strings.Contains(err.Error(), "routing service 127.0.0.1:") {
				t.Errorf("error %q does not name the routing service", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v is a deadline", err)
			}
		})
	}
}

// TestRoutingClientDeadline: a routing service that sleeps past the deadline makes Route
// return a deadline error within the timeout.
func TestRoutingClientDeadline(t *testing.T) {
	quit := make(chan struct{})
	r := &testRouter{RouteCallFunc: func(context.Context, *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		select { // ignores the deadline, like a stuck service
		case <-time.After(5 * time.Second):
		case <-quit:
		}
		return &routingv1.RouteCallResponse{}, nil
	}}
	const timeout = 200 * time.Millisecond
	c := startRouter(t, r, RoutingClientConfig{Timeout: timeout})
	t.Cleanup(func() { close(quit) }) // runs before the server stops
	ctx := ctxT(t)
	// Warm the connection so the measurement is the RPC alone.
	_, _ = c.Route(ctx, sampleRouteRequest())

	start := time.Now()
	_, err := c.Route(ctx, sampleRouteRequest())
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v; want a deadline error", err)
	}
	if elapsed > timeout+300*time.Millisecond {
		t.Errorf("Route took %v with a %v timeout", elapsed, timeout)
	}
	// A shorter caller deadline wins.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.Route(cctx, sampleRouteRequest()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 150*time.Millisecond+100*time.Millisecond {
		t.Errorf("caller deadline ignored: %v", d)
	}
}

func TestRoutingClientUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	c, err := NewRoutingClient(t.Context(), RoutingClientConfig{Address: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Route(ctxT(t), sampleRouteRequest())
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v; want Unavailable", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Route to a closed port took %v", d)
	}
	if _, err := NewRoutingClient(t.Context(), RoutingClientConfig{}); err == nil {
		t.Error("NewRoutingClient without address succeeded")
	}
}

func TestRoutingClientNotifies(t *testing.T) {
	r := &testRouter{RouteCallFunc: func(context.Context, *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		return nil, status.Error(codes.Unimplemented, "")
	}}
	c := startRouter(t, r, RoutingClientConfig{})
	ctx := ctxT(t)
	now := time.Now()
	dec := func(leg string) *signaling.LegDecision {
		return &signaling.LegDecision{Leg: leg, Scheme: "sip", Transport: "TCP", Reason: "dn contact sip", Rule: "R7"}
	}
	c.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, Time: now, CallID: "c1", Leg: "A", Decision: dec("A")})
	c.Observe(ctx, signaling.Event{Kind: signaling.EventLegRinging, CallID: "c1", Leg: "B1"})
	c.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, Time: now, CallID: "c1", Leg: "B1", DN: "6000", SIPCallID: "x@y", Decision: dec("B1")})
	deadline := time.Now().Add(5 * time.Second)
	for len(r.notifications()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no notification")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	ns := r.notifications()
	if len(ns) != 1 {
		t.Fatalf("notifications = %v; want only B1", ns)
	}
	n := ns[0]
	if n.GetCallId() != "c1" || n.GetDn() != "6000" || n.GetSipCallId() != "x@y" || n.GetDecision().GetLegId() != "B1" ||
		n.GetDecision().GetRule() != "R7" || !n.GetTime().AsTime().Equal(now) {
		t.Errorf("notification %v", n)
	}
}

// TestRoutingClientObserveNeverBlocks: with the routing service stuck, Observe still
// returns at once and extra notifications are dropped.
func TestRoutingClientObserveNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	r := &testRouter{
		RouteCallFunc: func(context.Context, *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
			return nil, status.Error(codes.Unimplemented, "")
		},
		NotifyFunc: func(ctx context.Context, _ *routingv1.NotifyLegDecisionRequest) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	}
	c := startRouter(t, r, RoutingClientConfig{NotifyQueue: 2, NotifyTimeout: 10 * time.Second})
	defer close(release)
	ctx := ctxT(t)
	start := time.Now()
	for range 1000 {
		c.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, CallID: "c1", Leg: "B1",
			Decision: &signaling.LegDecision{Leg: "B1"}})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 Observe calls took %v", d)
	}
}
