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

	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"

	"github.com/sipsvc/sipsvc/sips"
)

// Span names, attribute keys and event names come from telemetry/sipconv; the span model is
// written down in docs/observability.md.

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

// startCallSpan starts the call's root span: a child of parent (the API request for
// MakeCall), or of an incoming INVITE's traceparent.
func (s *Server) startCallSpan(parent context.Context, req *sip.Request, c *call) (context.Context, trace.Span) {
	ctx := parent
	origin := sc.OriginAPI
	received := false
	if req != nil {
		origin = sc.OriginSIP
		if req.GetHeader("traceparent") != nil {
			ctx = tc.Extract(ctx, sipCarrier{req})
			received = trace.SpanContextFromContext(ctx).IsValid()
		}
	}
	if !s.traced {
		return s.tracer.Start(ctx, sc.SpanCall)
	}
	attrs := []attribute.KeyValue{
		sc.AttrCallID.String(c.id),
		sc.AttrCallOrigin.String(origin),
		sc.AttrSIPCaller.String(c.caller),
		sc.AttrSIPDialed.String(c.dialed),
	}
	if received {
		attrs = append(attrs, sc.AttrSIPTraceparentIn.Bool(true))
	}
	return s.tracer.Start(ctx, sc.SpanCall, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// startLegSpan starts a leg's span: server kind for an inbound leg, client kind for an
// originated one, with the leg's scheme decision and peer attributes.
func (s *Server) startLegSpan(c *call, l *leg, req *sip.Request) (context.Context, trace.Span) {
	name, kind := sc.SpanLegOutbound, trace.SpanKindClient
	if l.dir == inbound {
		name, kind = sc.SpanLegInbound, trace.SpanKindServer
	}
	if !s.traced {
		return s.tracer.Start(c.ctx, name)
	}
	attrs := append(sc.LegSchemeAttrs(l.id, l.dec.Scheme, l.dec.Transport, l.isSecure(), l.dec.Reason, l.dec.Rule),
		sc.AttrCallID.String(c.id),
		sc.AttrSIPMethod.String(string(req.Method)),
		sc.AttrSIPCallID.String(l.callID),
		sc.AttrSIPRequestURI.String(req.Recipient.String()),
	)
	if l.dn != "" {
		attrs = append(attrs, sc.AttrSIPDN.String(l.dn))
	}
	if host, port, err := net.SplitHostPort(l.peer); err == nil {
		p, _ := strconv.Atoi(port)
		attrs = append(attrs, sc.AttrNetworkPeerAddress.String(host), sc.AttrNetworkPeerPort.Int(p))
		if l.dir == inbound {
			attrs = append(attrs, sc.AttrClientAddress.String(host), sc.AttrClientPort.Int(p))
		}
	}
	// The socket the request came in on: an inbound leg's dialog may go over TLS although its
	// INVITE came over TCP or UDP (a sips Contact, R11).
	reqTransport := l.transport
	if l.dir == inbound {
		reqTransport = strings.ToUpper(req.Transport())
	}
	// server.*: the host and port the Request-URI addresses (sipsvc on leg A, the target on B).
	port := req.Recipient.Port
	if port == 0 {
		port = sips.DefaultPort(reqTransport)
	}
	attrs = append(attrs, sc.AttrServerAddress.String(req.Recipient.Host), sc.AttrServerPort.Int(port))
	if l.dir == inbound || l.transport == "UDP" {
		la := s.local(reqTransport)
		host := la.host
		if la.ip != nil && !la.ip.IsUnspecified() {
			host = la.ip.String()
		}
		attrs = append(attrs, sc.AttrNetworkLocalAddress.String(host), sc.AttrNetworkLocalPort.Int(la.port))
	}
	if l.dir == inbound && reqTransport == "TLS" {
		attrs = append(attrs, s.tlsAttrs(l.peer, true)...)
	}
	ctx, span := s.tracer.Start(c.ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return ctx, span
	}
	span.AddEvent(sc.EventSchemeDecided, trace.WithAttributes(sc.LegSchemeAttrs(l.id, l.dec.Scheme, l.dec.Transport, l.isSecure(), l.dec.Reason, l.dec.Rule)...))
	return ctx, span
}

// tlsAttrs reads the TLS version and peer certificate subject of the connection to addr.
func (s *Server) tlsAttrs(addr string, inbound bool) []attribute.KeyValue {
	conn, err := s.ua.TransportLayer().GetConnection("tls", addr)
	if err != nil || conn == nil {
		return nil
	}
	tcpc, ok := conn.(*sip.TCPConnection)
	if !ok {
		return nil
	}
	tl, ok := tlsConnOf(tcpc.Conn)
	if !ok {
		return nil
	}
	cs := tl.ConnectionState()
	attrs := []attribute.KeyValue{
		sc.AttrTLSProtocolName.String("tls"),
		sc.AttrTLSProtocolVersion.String(sc.TLSVersion(cs.Version)),
		sc.AttrTLSCipher.String(tls.CipherSuiteName(cs.CipherSuite)),
		sc.AttrTLSEstablished.Bool(cs.HandshakeComplete),
	}
	if len(cs.PeerCertificates) > 0 {
		key := sc.AttrTLSServerSubject
		if inbound {
			key = sc.AttrTLSClientSubject
		}
		attrs = append(attrs, key.String(cs.PeerCertificates[0].Subject.String()))
	}
	return attrs
}

// startTxSpan starts the span of an in-dialog transaction received on a leg.
func (s *Server) startTxSpan(l *leg, req *sip.Request) (context.Context, trace.Span) {
	parent := l.ctx
	if parent == nil {
		parent = l.call().ctx
	}
	if !s.traced {
		return s.tracer.Start(parent, sc.SpanTransactionPrefix)
	}
	return s.tracer.Start(parent, sc.TransactionSpanName(string(req.Method)), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(txSpanAttrs(l, req, req.Source())...))
}

// txSpanAttrs are the attributes of an in-dialog transaction span.
func txSpanAttrs(l *leg, req *sip.Request, peer string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		sc.AttrCallID.String(l.call().id),
		sc.AttrSIPLeg.String(l.id),
		sc.AttrSIPMethod.String(string(req.Method)),
		sc.AttrSIPCallID.String(l.callID),
		sc.AttrSIPTransport.String(strings.ToUpper(req.Transport())),
		sc.AttrNetworkTransport.String(sc.NetworkTransport(req.Transport())),
		sc.AttrSIPRequestURI.String(req.Recipient.String()),
	}
	if host, port, err := net.SplitHostPort(peer); err == nil {
		p, _ := strconv.Atoi(port)
		attrs = append(attrs, sc.AttrNetworkPeerAddress.String(host), sc.AttrNetworkPeerPort.Int(p))
	}
	return attrs
}

// sendOn sends an in-dialog request on leg l inside a CLIENT transaction span, child of the
// leg's span; link is the server transaction that caused it (a relayed request), if any.
func (s *Server) sendOn(ctx context.Context, l *leg, req *sip.Request, link trace.SpanContext) (*sip.Response, error) {
	if !s.traced {
		return s.send(ctx, req, nil)
	}
	parent := l.ctx
	if parent == nil {
		parent = l.call().ctx
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(txSpanAttrs(l, req, req.Destination())...)}
	if link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: link}))
	}
	_, span := s.tracer.Start(parent, sc.TransactionSpanName(string(req.Method)), opts...)
	defer span.End()
	res, err := s.send(ctx, req, nil)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(sc.AttrSIPStatusCode.Int(res.StatusCode))
	if sc.StatusIsError(res.StatusCode, true, false) {
		span.SetStatus(codes.Error, res.Reason)
		span.SetAttributes(sc.AttrErrorType.String(sc.StatusString(res.StatusCode)))
	}
	return res, nil
}

// ack sends the ACK for a 2xx on leg l (no span of its own: an event on the leg span).
func (s *Server) ack(l *leg, body []byte) error {
	if l.span != nil && l.span.IsRecording() {
		l.span.AddEvent(sc.EventACK)
	}
	return s.write(s.inDialogAck(l, body))
}

// connAttrs adds the local address (and TLS details) of an outbound TCP/TLS leg's connection
// once it exists.
func (s *Server) connAttrs(l *leg) {
	if l.span == nil || !l.span.IsRecording() {
		return
	}
	l.mu.Lock()
	transport, dest := l.transport, l.dest
	l.mu.Unlock()
	if transport == "UDP" {
		return
	}
	conn, err := s.ua.TransportLayer().GetConnection(strings.ToLower(transport), dest)
	if err != nil || conn == nil {
		return
	}
	if host, port, err := net.SplitHostPort(conn.LocalAddr().String()); err == nil {
		p, _ := strconv.Atoi(port)
		l.span.SetAttributes(sc.AttrNetworkLocalAddress.String(host), sc.AttrNetworkLocalPort.Int(p))
	}
	if transport == "TLS" && l.dir == outbound {
		l.span.SetAttributes(s.tlsAttrs(dest, false)...)
	}
}

// startRouteSpan starts the routing decision's span, child of the call span.
func (s *Server) startRouteSpan(ctx context.Context, c *call) (context.Context, trace.Span) {
	if !s.traced {
		return s.tracer.Start(ctx, sc.SpanRoute)
	}
	return s.tracer.Start(ctx, sc.SpanRoute, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(sc.AttrCallID.String(c.id)))
}

// addRewriteEvent records a header rewrite as a span event.
func addRewriteEvent(span trace.Span, rw Rewrite) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.AddEvent(sc.EventHeaderRewrite, trace.WithAttributes(sc.RewriteAttrs(rw.Leg, rw.Header, rw.Before, rw.After, rw.Rule)...))
}

func markStatus(span trace.Span, code int) {
	if span == nil || code == 0 || !span.IsRecording() {
		return
	}
	span.SetAttributes(sc.AttrSIPStatusCode.Int(code))
	if code >= 500 {
		span.SetStatus(codes.Error, statusText(code))
	}
}

func markAnswered(span trace.Span, code int) {
	if span != nil && span.IsRecording() {
		span.SetAttributes(sc.AttrSIPStatusCode.Int(code))
	}
}

// endLegSpan ends a leg span with its final status and typed outcome (legoutcome.go);
// failures get an error status: a CLIENT leg that sipsvc itself gave up (legEndedByUs)
// is no error for its 487.
func endLegSpan(span trace.Span, code int, cause string, outcome Outcome, client bool) {
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	if cause != "" {
		span.SetAttributes(sc.AttrSIPCause.String(cause))
	}
	if outcome != "" {
		span.SetAttributes(sc.AttrLegOutcome.String(string(outcome)))
	}
	if code != 0 {
		span.SetAttributes(sc.AttrSIPStatusCode.Int(code))
		if sc.StatusIsError(code, client, legEndedByUs(outcome)) {
			span.SetStatus(codes.Error, cause)
			span.SetAttributes(sc.AttrErrorType.String(sc.StatusString(code)))
		}
	}
	span.End()
}

// endCallSpan ends the call's root span with its typed outcome and direction.
func endCallSpan(span trace.Span, code int, cause string, outcome Outcome, direction string) {
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(sc.AttrCallOutcome.String(string(outcome)), sc.AttrCallDirection.String(direction))
	if cause != "" {
		span.SetAttributes(sc.AttrSIPCause.String(cause))
	}
	if code != 0 {
		span.SetAttributes(sc.AttrSIPStatusCode.Int(code))
		if code >= 500 && code != 503 || outcome == OutcomeFailed {
			span.SetStatus(codes.Error, cause)
		}
	}
	span.End()
}

// injectTraceparent adds W3C trace context to an outgoing INVITE (per-DN option).
func injectTraceparent(ctx context.Context, req *sip.Request, span trace.Span) {
	tc.Inject(ctx, sipCarrier{req})
	span.SetAttributes(sc.AttrSIPTraceparentOut.Bool(true))
}
