package tracing

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

// apiFixture is the API (gRPC and REST) in front of a B2BUA, all traced into one sink.
type apiFixture struct {
	s          *sink
	sig        *signaling.Server
	alice, bob *phone
	grpc       *grpc.ClientConn
	rest       *httptest.Server
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	f := &apiFixture{s: newSink(t), alice: newPhone(t, "alice"), bob: newPhone(t, "bob")}
	st := store.NewMemory()
	for _, d := range []dn.DN{
		{Number: "1000", Type: dn.TypeExtension, Contact: f.alice.ContactURI("1000", "sip")},
		{Number: "2000", Type: dn.TypeExtension, Contact: f.bob.ContactURI("2000", "sip")},
	} {
		if err := st.PutDN(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	f.sig, _ = startSignaling(t, signaling.Config{Directory: st, TracerProvider: f.s.tp})
	api, err := service.NewAPI(service.APIConfig{
		Calls: f.sig, Store: st, Realm: "sipsvc", Logger: quiet,
		TracerProvider: f.s.tp, Propagators: propagation.TraceContext{},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = api.ServeGRPC(lis) }()
	f.rest = httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		f.rest.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = api.Shutdown(ctx)
	})
	f.grpc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.grpc.Close() })
	return f
}

// finish waits until both phones answered, releases the call and returns the spans.
func (f *apiFixture) finish(t *testing.T, callID string) []otlp.Span {
	t.Helper()
	f.bob.WaitRequest("ACK", 1, 5*time.Second)
	f.alice.WaitRequest("ACK", 1, 5*time.Second)
	if err := f.sig.ReleaseCall(context.Background(), callID); err != nil {
		t.Fatal(err)
	}
	f.alice.WaitRequest("BYE", 1, 2*time.Second)
	f.bob.WaitRequest("BYE", 1, 2*time.Second)
	return f.s.wait(t, nil)
}

// TestAPI_GRPCMakeCall_RequestSpanIsParent: the otelgrpc SERVER span of the MakeCall RPC is
// the parent of sipsvc.call, which outlives it.
func TestAPI_GRPCMakeCall_RequestSpanIsParent(t *testing.T) {
	f := newAPIFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := sipsvcv1.NewCallServiceClient(f.grpc).MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	spans := f.finish(t, resp.GetCall().GetCallId())
	call := only(t, spans, sc.SpanCall, "")
	rpc := only(t, spans, "sipsvc.v1.CallService/MakeCall", "SERVER")
	if call.ParentSpanID != rpc.SpanID || call.TraceID != rpc.TraceID {
		t.Errorf("sipsvc.call parent %s (ancestors %v), want the MakeCall SERVER span %s", call.ParentSpanID, ancestors(spans, call), rpc.SpanID)
	}
	if !call.End.After(rpc.End) {
		t.Errorf("call span ended before the request span: the call outlives the request")
	}
	if got := call.Str("sipsvc.call.origin"); got != "api" {
		t.Errorf("sipsvc.call.origin %q, want api", got)
	}
	if got := call.Str("sipsvc.call.id"); got != resp.GetCall().GetCallId() {
		t.Errorf("sipsvc.call.id %q, the API answered %q", got, resp.GetCall().GetCallId())
	}
	legs := 0
	for _, s := range otlp.Named(spans, sc.SpanLegOutbound) {
		legs++
		if s.ParentSpanID != call.SpanID {
			t.Errorf("leg %s parent %s, want sipsvc.call", s.Str("sip.leg"), s.ParentSpanID)
		}
	}
	if legs != 2 || len(otlp.Named(spans, sc.SpanLegInbound)) != 0 {
		t.Errorf("MakeCall: %d outbound and %d inbound leg spans, want 2 and 0:\n%s", legs, len(otlp.Named(spans, sc.SpanLegInbound)), otlp.Tree(spans, "sip.leg"))
	}
}

// TestAPI_RESTMakeCall_RequestSpanIsAncestor: through REST the otelhttp span of
// POST /v1/calls is an ancestor of sipsvc.call (via the gateway's gRPC spans).
func TestAPI_RESTMakeCall_RequestSpanIsAncestor(t *testing.T) {
	f := newAPIFixture(t)
	res, err := http.Post(f.rest.URL+"/v1/calls", "application/json", strings.NewReader(`{"from":"1000","to":"2000"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("POST /v1/calls → %d", res.StatusCode)
	}
	f.bob.WaitRequest("ACK", 1, 5*time.Second)
	calls := f.sig.ListCalls(context.Background(), signaling.CallFilter{})
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	spans := f.finish(t, calls[0].ID)
	call := only(t, spans, sc.SpanCall, "")
	httpSpan := only(t, spans, "POST /v1/calls", "SERVER")
	anc := ancestors(spans, call)
	found := false
	for _, a := range anc {
		if a == "POST /v1/calls SERVER" {
			found = true
		}
	}
	if !found || call.TraceID != httpSpan.TraceID {
		t.Errorf("sipsvc.call ancestors %v, want the REST request span POST /v1/calls among them", anc)
	}
	if len(anc) == 0 || anc[0] != "sipsvc.v1.CallService/MakeCall SERVER" {
		t.Errorf("sipsvc.call parent chain %v, want the MakeCall SERVER span first", anc)
	}
}
