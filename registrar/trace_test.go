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

// TestServeRegister_SpanRefusal: a refused REGISTER carries the refusal reason on its span
// (AttrRefusal), here three Contacts (two in one header) over a cap of two.
func TestServeRegister_SpanRefusal(t *testing.T) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	st := store.NewMemory()
	if err := st.PutDN(ctx, dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "*"}); err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(registrar.Config{Store: st, TracerProvider: tp, MaxContactsPerRegister: 2})
	if err != nil {
		t.Fatal(err)
	}
	tx := newFakeTx()
	reg.ServeRegister(ctx, readRaw(t, "register-three-contacts.sip"), tx)
	if res := tx.last(); res == nil || res.StatusCode != 403 {
		t.Fatalf("response %v, want 403", res)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	for _, a := range spans[0].Attributes() {
		if a.Key == registrar.AttrRefusal {
			if a.Value.AsString() != registrar.RefusalTooManyContacts {
				t.Fatalf("%s = %q, want %q", a.Key, a.Value.AsString(), registrar.RefusalTooManyContacts)
			}
			return
		}
	}
	t.Fatalf("no %s attribute on the span: %v", registrar.AttrRefusal, spans[0].Attributes())
}
