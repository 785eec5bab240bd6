package otlp_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

func TestTreeFromSDK(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("github.com/sipsvc/sipsvc/signaling")

	ctx, call := tr.Start(context.Background(), sipconv.SpanCall)
	actx, a := tr.Start(ctx, sipconv.SpanLegInbound, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(sipconv.LegSchemeAttrs("A", "sips", "TLS", true, "request-uri sips", "R8")...))
	_, b := tr.Start(ctx, sipconv.SpanLegOutbound, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(sipconv.LegSchemeAttrs("B1", "sip", "UDP", false, "dn contact sip", "R12")...))
	b.AddEvent(sipconv.EventHeaderRewrite, trace.WithAttributes(sipconv.RewriteAttrs("B1", "Contact", "<sips:x>", "<sip:x>", "R22")...))
	_, bye := tr.Start(actx, sipconv.TransactionSpanName("BYE"), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(sipconv.AttrSIPLeg.String("A")))
	bye.End()
	b.SetStatus(codes.Error, "486")
	b.End()
	a.End()
	call.End()

	got := otlp.Tree(otlp.FromSDK(rec.Ended()), "sip.leg", "sip.scheme")
	want := `sipsvc.call INTERNAL
  sip.leg.inbound SERVER sip.leg=A sip.scheme=sips
    sip.transaction BYE SERVER sip.leg=A
  sip.leg.outbound CLIENT sip.leg=B1 sip.scheme=sip ERROR
    * sip.header.rewrite sip.header=Contact sip.header.after=<sip:x> sip.header.before=<sips:x> sip.leg=B1 sip.rule=R22
`
	if got != want {
		t.Fatalf("tree:\n%s\nwant:\n%s", got, want)
	}
}
