package registrar

import (
	"context"
	"net"
	"strconv"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// instrumentationName names the registrar's tracer.
const instrumentationName = "github.com/sipsvc/sipsvc/registrar"

// tracedTx records the final response of a REGISTER on its span.
type tracedTx struct {
	sip.ServerTransaction
	span trace.Span
}

// Respond sets sip.status_code (and the error status for 5xx) and sends res.
func (t *tracedTx) Respond(res *sip.Response) error {
	if res.StatusCode >= 200 {
		t.span.SetAttributes(sipconv.AttrSIPStatusCode.Int(res.StatusCode), sipconv.AttrSIPReasonPhrase.String(res.Reason))
		if sipconv.StatusIsError(res.StatusCode, false, false) {
			t.span.SetStatus(codes.Error, strconv.Itoa(res.StatusCode)+" "+res.Reason)
		}
	}
	err := t.ServerTransaction.Respond(res)
	if err != nil {
		t.span.RecordError(err)
		t.span.SetStatus(codes.Error, "send response")
	}
	return err
}

// startRegisterSpan starts the "sip.transaction REGISTER" SERVER span (docs/observability.md).
func (r *Registrar) startRegisterSpan(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (context.Context, trace.Span, sip.ServerTransaction) {
	if !r.traced {
		// Tracing off: no span, not even a no-op one in a new context (this is per REGISTER).
		return ctx, noop.Span{}, tx
	}
	ctx, span := r.tracer.Start(ctx, sipconv.SpanRegister, trace.WithSpanKind(trace.SpanKindServer))
	if !span.IsRecording() {
		// Not sampled: building the attributes cost ~9% of a REGISTER's CPU.
		return ctx, span, tx
	}
	tp := sip.NetworkToLower(req.Transport())
	span.SetAttributes(
		sipconv.AttrSIPMethod.String("REGISTER"),
		sipconv.AttrSIPCallID.String(callID(req)),
		sipconv.AttrSIPTransport.String(req.Transport()),
		sipconv.AttrNetworkTransport.String(sipconv.NetworkTransport(tp)),
	)
	if host, port, err := net.SplitHostPort(req.Source()); err == nil {
		p, _ := strconv.Atoi(port)
		span.SetAttributes(sipconv.AttrNetworkPeerAddress.String(host), sipconv.AttrNetworkPeerPort.Int(p))
	}
	return ctx, span, &tracedTx{ServerTransaction: tx, span: span}
}
