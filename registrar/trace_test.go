package registrar_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// TestServeRegister_Span checks the "sip.transaction REGISTER" SERVER span and its status.
func TestServeRegister_Span(t *testing.T) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	st := store.NewMemory()
	if err := st.PutDN(ctx, dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "*"}); err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(registrar.Config{Store: st, TracerProvider: tp, Now: time.Now, OpenRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	reg.ServeRegister(ctx, readRaw(t, "register-ok.sip"), newFakeTx())
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name() != sipconv.SpanRegister || s.SpanKind() != trace.SpanKindServer {
		t.Fatalf("span %q kind %v", s.Name(), s.SpanKind())
	}
	attrs := map[string]string{}
	for _, a := range s.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range map[string]string{"sip.method": "REGISTER", "sip.call_id": "ok@test", "sip.status_code": "200",
		"sip.dn": "1001", "network.transport": "udp", "network.peer.address": "127.0.0.1"} {
		if attrs[k] != v {
			t.Errorf("%s = %q, want %q", k, attrs[k], v)
		}
	}
}
