package otlp_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/telemetry"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// exportOne sets telemetry up with env, exports a call span with a leg child and a rewrite
// event, and shuts down (which flushes).
func exportOne(t *testing.T, vars map[string]string) (callSpanID, legSpanID string) {
	t.Helper()
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		Telemetry: config.TelemetryConfig{OTLPProtocol: "grpc", ServiceName: "from-config", SampleRatio: 1},
		Getenv:    env(vars),
		Version:   "v0.0.1-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Tracing {
		t.Fatal("tracing is off with an endpoint set")
	}
	tr := tel.TracerProvider.Tracer("github.com/sipsvc/sipsvc/signaling")
	cctx, call := tr.Start(ctx, sipconv.SpanCall, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(sipconv.AttrCallID.String("c-1")))
	_, leg := tr.Start(cctx, sipconv.SpanLegOutbound, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(sipconv.LegSchemeAttrs("B1", "sip", "UDP", false, "dn contact sip", "R8")...),
		trace.WithAttributes(sipconv.AttrSIPStatusCode.Int(200), sipconv.AttrCallID.String("c-1")))
	leg.AddEvent(sipconv.EventHeaderRewrite, trace.WithAttributes(
		sipconv.RewriteAttrs("B1", "Contact", "<sips:1000@a:5061>", "<sip:1000@a:5060>", "R8")...))
	leg.End()
	call.End()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	return call.SpanContext().SpanID().String(), leg.SpanContext().SpanID().String()
}

func checkSpans(t *testing.T, rcv *otlp.Receiver, callID, legID string) {
	t.Helper()
	leg := rcv.RequireSpan(t, sipconv.SpanLegOutbound, 5*time.Second)
	call := rcv.RequireSpan(t, sipconv.SpanCall, 5*time.Second)
	if call.SpanID != callID || leg.SpanID != legID {
		t.Fatalf("span ids: call %s leg %s, want %s %s", call.SpanID, leg.SpanID, callID, legID)
	}
	if leg.ParentSpanID != call.SpanID || leg.TraceID != call.TraceID || call.ParentSpanID != "" {
		t.Errorf("tree: call parent %q, leg parent %q (call %s)", call.ParentSpanID, leg.ParentSpanID, call.SpanID)
	}
	if got := otlp.Children(rcv.Spans(), call); len(got) != 1 || got[0].Name != sipconv.SpanLegOutbound {
		t.Errorf("children of call: %+v", got)
	}
	if call.Kind != "INTERNAL" || leg.Kind != "CLIENT" {
		t.Errorf("kinds: call %s leg %s", call.Kind, leg.Kind)
	}
	for k, want := range map[string]any{
		"sip.leg": "B1", "sip.scheme": "sip", "sip.transport": "UDP", "network.transport": "udp",
		"sip.secure": false, "sip.scheme.rule": "R8", "sip.status_code": int64(200), "sipsvc.call.id": "c-1",
	} {
		if got, ok := leg.Attr(k); !ok || got != want {
			t.Errorf("leg %s = %#v, want %#v", k, got, want)
		}
	}
	evs := leg.EventsNamed(sipconv.EventHeaderRewrite)
	if len(evs) != 1 {
		t.Fatalf("rewrite events: %+v", leg.Events)
	}
	ev := evs[0]
	if ev.Str("sip.header") != "Contact" || ev.Str("sip.header.before") != "<sips:1000@a:5061>" ||
		ev.Str("sip.header.after") != "<sip:1000@a:5060>" || ev.Str("sip.rule") != "R8" || ev.Str("sip.leg") != "B1" {
		t.Errorf("rewrite event: %+v", ev.Attributes)
	}
	if call.Resource["service.name"] != "from-env" || call.Resource["service.version"] != "v0.0.1-test" {
		t.Errorf("resource: %+v", call.Resource)
	}
	if call.Scope != "github.com/sipsvc/sipsvc/signaling" {
		t.Errorf("scope %q", call.Scope)
	}
}

func TestReceiverGRPC(t *testing.T) {
	rcv := otlp.NewReceiver(t)
	callID, legID := exportOne(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.Endpoint(), // http:// → insecure gRPC
		"OTEL_SERVICE_NAME":           "from-env",
	})
	// Shutdown has flushed: the spans are there without waiting for a batch timeout.
	if n := len(rcv.Spans()); n != 2 {
		t.Fatalf("after Shutdown: %d spans, want 2", n)
	}
	checkSpans(t, rcv, callID, legID)
}

func TestReceiverHTTPProtobuf(t *testing.T) {
	rcv := otlp.NewReceiver(t)
	srv := httptest.NewServer(rcv.HTTPHandler())
	defer srv.Close()
	callID, legID := exportOne(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    srv.URL, // base URL: /v1/traces is appended
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "http/protobuf",
		"OTEL_SERVICE_NAME":              "from-env",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
	})
	checkSpans(t, rcv, callID, legID)
	if rcv.Exports() == 0 {
		t.Fatal("no export request")
	}
}

func TestWaitForTimesOut(t *testing.T) {
	rcv := otlp.NewReceiver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := rcv.WaitForSpan(ctx, "nothing"); err == nil {
		t.Fatal("want an error")
	}
}

// TestEnv: the variables from Env, read through Getenv, turn export on towards the receiver.
func TestEnv(t *testing.T) {
	rcv := otlp.NewReceiver(t)
	vars := map[string]string{}
	for _, kv := range rcv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Getenv: env(vars)})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if !tel.Tracing || tel.Endpoint != rcv.Endpoint() {
		t.Fatalf("tracing %v endpoint %q", tel.Tracing, tel.Endpoint)
	}
	_, s := tel.TracerProvider.Tracer("t").Start(context.Background(), "ping")
	s.End()
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rcv.RequireSpan(t, "ping", 5*time.Second)
}
