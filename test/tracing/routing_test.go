package tracing

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/sipsvc/sipsvc/dn"
	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

const routeCall = "routing.v1.RoutingService/RouteCall"

// router is a test routing service: it records the trace context each RouteCall arrives
// with, does its own work in a child span, and routes to DN 6000 (or fails).
type router struct {
	routingv1.UnimplementedRoutingServiceServer
	tracer trace.Tracer
	fail   bool

	mu          sync.Mutex
	seen        []trace.SpanContext
	traceparent []string
}

func (r *router) RouteCall(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	r.seen = append(r.seen, trace.SpanContextFromContext(ctx))
	r.traceparent = append(r.traceparent, md.Get("traceparent")...)
	r.mu.Unlock()
	_, span := r.tracer.Start(ctx, "router.decide")
	defer span.End()
	if r.fail {
		return nil, errors.New("router broken")
	}
	return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{
		Targets: []*routingv1.Target{{Destination: &routingv1.Target_Dn{Dn: "6000"}}},
	}}}, nil
}

// startRouter serves r over gRPC with otelgrpc's server handler on the same provider.
func startRouter(t *testing.T, s *sink, r *router) string {
	t.Helper()
	r.tracer = s.tp.Tracer("test-router")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(s.tp), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	routingv1.RegisterRoutingServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func routedCall(t *testing.T, fail bool) (*sink, *router, []otlp.Span) {
	t.Helper()
	s := newSink(t)
	r := &router{fail: fail}
	addr := startRouter(t, s, r)
	rc, err := service.NewRoutingClient(context.Background(), service.RoutingClientConfig{
		Address: addr, Timeout: 2 * time.Second, Logger: quiet,
		TracerProvider: s.tp, Propagators: propagation.TraceContext{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	bob := newPhone(t, "bob")
	dir := memDir{"6000": {Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")}}
	_, b2bua := startSignaling(t, signaling.Config{Directory: dir, Router: rc, RoutingTimeout: 2 * time.Second, TracerProvider: s.tp})
	alice := newPhone(t, "alice")
	d := alice.call(b2bua, "6000")
	bob.WaitRequest("ACK", 1, 2*time.Second)
	if code := d.Bye(); code != 200 {
		t.Fatalf("BYE → %d", code)
	}
	bob.WaitRequest("BYE", 1, 2*time.Second)
	spans := s.wait(t, func(sp []otlp.Span) bool { return len(otlp.Named(sp, routeCall)) >= 2 })
	return s, r, spans
}

// TestRouting_SpanIsChildOfRouteAndReachesService: the otelgrpc RouteCall CLIENT span is a
// child of sipsvc.route, the routing service's SERVER span (and its own child span) is its
// child in the same trace, and the service received the call's trace context.
func TestRouting_SpanIsChildOfRouteAndReachesService(t *testing.T) {
	_, r, spans := routedCall(t, false)
	call := only(t, spans, sc.SpanCall, "")
	route := only(t, spans, sc.SpanRoute, "INTERNAL")
	cli := only(t, spans, routeCall, "CLIENT")
	srv := only(t, spans, routeCall, "SERVER")
	own := only(t, spans, "router.decide", "")

	if route.ParentSpanID != call.SpanID {
		t.Errorf("sipsvc.route parent %s, want the call span %s", route.ParentSpanID, call.SpanID)
	}
	if cli.ParentSpanID != route.SpanID || cli.TraceID != call.TraceID {
		t.Errorf("RouteCall CLIENT span parent %s trace %s, want sipsvc.route %s in trace %s", cli.ParentSpanID, cli.TraceID, route.SpanID, call.TraceID)
	}
	if srv.ParentSpanID != cli.SpanID || srv.TraceID != call.TraceID {
		t.Errorf("routing service SERVER span parent %s trace %s, want the CLIENT span %s in trace %s", srv.ParentSpanID, srv.TraceID, cli.SpanID, call.TraceID)
	}
	if own.ParentSpanID != srv.SpanID || own.TraceID != call.TraceID {
		t.Errorf("routing service's own span parent %s, want its SERVER span %s", own.ParentSpanID, srv.SpanID)
	}
	if cli.End.After(route.End) {
		t.Errorf("RouteCall CLIENT span ends after sipsvc.route")
	}
	r.mu.Lock()
	seen, tp := append([]trace.SpanContext(nil), r.seen...), append([]string(nil), r.traceparent...)
	r.mu.Unlock()
	if len(seen) != 1 || seen[0].TraceID().String() != call.TraceID || !seen[0].IsValid() {
		t.Errorf("routing service saw span contexts %v, want one in the call's trace %s", seen, call.TraceID)
	}
	if len(tp) != 1 || len(tp[0]) != 55 || tp[0][3:35] != call.TraceID || tp[0][36:52] != cli.SpanID {
		t.Errorf("traceparent metadata at the routing service %q, want trace %s parent %s (the CLIENT span)", tp, call.TraceID, cli.SpanID)
	}
	want := map[string]any{"sipsvc.routing.source": "routing-service", "sipsvc.routing.outcome": "routed", "sipsvc.routing.targets": int64(1), "sipsvc.call.id": call.Str("sipsvc.call.id")}
	for k, v := range want {
		if got, ok := route.Attributes[k]; !ok || got != v {
			t.Errorf("sipsvc.route %s = %v (set %v), want %v", k, got, ok, v)
		}
	}
	if route.StatusCode == "ERROR" || len(route.EventsNamed(sc.EventRoutingFallback)) != 0 {
		t.Errorf("routed call: route span status %s events %v", route.StatusCode, route.Events)
	}
	t.Logf("tree:\n%s", otlp.Tree(spans, "sip.leg", "sipsvc.routing.outcome"))
}

// TestRouting_FallbackEvent: a failing routing service leaves an error CLIENT span under
// sipsvc.route and a sipsvc.routing.fallback event with outcome and error.type on the route
// span; the call still goes through (built-in router).
func TestRouting_FallbackEvent(t *testing.T) {
	_, _, spans := routedCall(t, true)
	route := only(t, spans, sc.SpanRoute, "INTERNAL")
	cli := only(t, spans, routeCall, "CLIENT")
	if cli.ParentSpanID != route.SpanID || cli.StatusCode != "ERROR" {
		t.Errorf("failed RouteCall CLIENT span parent %s status %s, want sipsvc.route and ERROR", cli.ParentSpanID, cli.StatusCode)
	}
	ev := route.EventsNamed(sc.EventRoutingFallback)
	if len(ev) != 1 {
		t.Fatalf("sipsvc.route events %v, want one %s", route.Events, sc.EventRoutingFallback)
	}
	if ev[0].Str("sipsvc.routing.outcome") != "error" || ev[0].Str("error.type") == "" {
		t.Errorf("fallback event attributes %v, want sipsvc.routing.outcome=error and error.type", ev[0].Attributes)
	}
	if got := route.Str("sipsvc.routing.outcome"); got != "fallback_builtin" && got != "error" {
		t.Errorf("sipsvc.route sipsvc.routing.outcome = %q, want the routing outcome (docs: routed, rejected, error, timeout, fallback_dns, builtin, unavailable)", got)
	}
	if got := route.Str("sipsvc.routing.source"); got != "builtin" {
		t.Errorf("sipsvc.route sipsvc.routing.source = %q, want builtin", got)
	}
}
