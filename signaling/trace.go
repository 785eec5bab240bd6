package signaling

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span and attribute names: see docs/observability.md.
const (
	spanCall        = "sipsvc.call"
	spanLegInbound  = "sip.leg.inbound"
	spanLegOutbound = "sip.leg.outbound"
	eventRewrite    = "sip.header.rewrite"
)

var tc = propagation.TraceContext{}

// sipCarrier reads and writes W3C trace context as SIP headers.
type sipCarrier struct {
	m interface {
		GetHeader(string) sip.Header
		AppendHeader(sip.Header)
		RemoveHeader(string) bool
	}
}

func (c sipCarrier) Get(k string) string { return headerValue(c.m, k) }
func (c sipCarrier) Set(k, v string) {
	c.m.RemoveHeader(k)
	c.m.AppendHeader(sip.NewHeader(k, v))
}
func (c sipCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// startCallSpan starts the call's root span, continuing an incoming traceparent.
func (s *Server) startCallSpan(parent context.Context, req *sip.Request, c *call) (context.Context, trace.Span) {
	ctx := parent
	if req != nil && req.GetHeader("traceparent") != nil {
		ctx = tc.Extract(ctx, sipCarrier{req})
	}
	ctx, span := s.tracer.Start(ctx, spanCall, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String("sipsvc.call.id", c.id),
			attribute.String("sip.caller", c.caller),
			attribute.String("sip.dialed", c.dialed),
		))
	return ctx, span
}

// startLegSpan starts a leg's span: server kind for an inbound leg, client kind for an
// originated one, with the leg's scheme decision and peer attributes.
func (s *Server) startLegSpan(c *call, l *leg, req *sip.Request) (context.Context, trace.Span) {
	name, kind := spanLegOutbound, trace.SpanKindClient
	if l.dir == inbound {
		name, kind = spanLegInbound, trace.SpanKindServer
	}
	attrs := []attribute.KeyValue{
		attribute.String("sipsvc.call.id", c.id),
		attribute.String("sip.leg", l.id),
		attribute.String("sip.method", string(req.Method)),
		attribute.String("sip.call_id", l.callID),
		attribute.String("sip.scheme", l.dec.Scheme),
		attribute.String("sip.scheme.reason", l.dec.Reason),
		attribute.String("sip.scheme.rule", l.dec.Rule),
		attribute.Bool("sip.secure", l.dec.Secure),
		attribute.String("sip.transport", l.dec.Transport),
		attribute.String("network.transport", networkTransport(l.transport)),
		attribute.String("sip.request_uri", req.Recipient.String()),
	}
	if l.dn != "" {
		attrs = append(attrs, attribute.String("sip.dn", l.dn))
	}
	if host, port, err := net.SplitHostPort(l.peer); err == nil {
		p, _ := strconv.Atoi(port)
		if l.dir == inbound {
			attrs = append(attrs, attribute.String("client.address", host), attribute.Int("client.port", p))
		} else {
			attrs = append(attrs, attribute.String("server.address", host), attribute.Int("server.port", p))
		}
		attrs = append(attrs, attribute.String("network.peer.address", host), attribute.Int("network.peer.port", p))
	}
	if l.dir == inbound && l.transport == "TLS" {
		attrs = append(attrs, s.tlsAttrs(l.peer, true)...)
	}
	return s.tracer.Start(c.ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// tlsAttrs reads the TLS version and peer certificate subject of the connection to addr.
func (s *Server) tlsAttrs(addr string, inbound bool) []attribute.KeyValue {
	conn, err := s.ua.TransportLayer().GetConnection("tls", addr)
	if err != nil || conn == nil {
		return nil
	}
	tc, ok := conn.(*sip.TCPConnection)
	if !ok {
		return nil
	}
	tl, ok := tc.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tl.ConnectionState()
	attrs := []attribute.KeyValue{attribute.String("tls.protocol.version", tlsVersionName(cs.Version))}
	if len(cs.PeerCertificates) > 0 {
		key := "tls.server.subject"
		if inbound {
			key = "tls.client.subject"
		}
		attrs = append(attrs, attribute.String(key, cs.PeerCertificates[0].Subject.String()))
	}
	return attrs
}

func networkTransport(t string) string {
	if strings.EqualFold(t, "UDP") {
		return "udp"
	}
	return "tcp"
}

// startTxSpan starts the span of an in-dialog transaction on a leg.
func (s *Server) startTxSpan(l *leg, req *sip.Request) (context.Context, trace.Span) {
	parent := l.ctx
	if parent == nil {
		parent = l.c.ctx
	}
	return s.tracer.Start(parent, "sip.transaction "+string(req.Method), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("sipsvc.call.id", l.c.id),
			attribute.String("sip.leg", l.id),
			attribute.String("sip.method", string(req.Method)),
			attribute.String("sip.call_id", l.callID),
		))
}

// addRewriteEvent records a header rewrite as a span event.
func addRewriteEvent(span trace.Span, rw Rewrite) {
	if span == nil {
		return
	}
	span.AddEvent(eventRewrite, trace.WithAttributes(
		attribute.String("sip.leg", rw.Leg),
		attribute.String("sip.header", rw.Header),
		attribute.String("sip.header.before", rw.Before),
		attribute.String("sip.header.after", rw.After),
		attribute.String("sip.rule", rw.Rule),
	))
}

func markStatus(span trace.Span, code int) {
	if span == nil || code == 0 {
		return
	}
	span.SetAttributes(attribute.Int("sip.status_code", code))
	if code >= 400 {
		span.SetStatus(codes.Error, statusText(code))
	}
}

func markAnswered(span trace.Span, code int) {
	if span != nil {
		span.SetAttributes(attribute.Int("sip.status_code", code))
	}
}

func endLegSpan(span trace.Span, code int, cause string) {
	if span == nil {
		return
	}
	if cause != "" {
		span.SetAttributes(attribute.String("sip.cause", cause))
	}
	markStatus(span, code)
	span.End()
}

func endCallSpan(span trace.Span, code int, cause string) {
	endLegSpan(span, code, cause)
}

// injectTraceparent adds W3C trace context to an outgoing INVITE (per-DN option).
func injectTraceparent(ctx context.Context, req *sip.Request) {
	tc.Inject(ctx, sipCarrier{req})
}
