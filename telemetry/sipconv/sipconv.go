// Package sipconv holds the names sipsvc uses in its traces, metrics and logs: span names,
// span kinds by convention, attribute keys (OpenTelemetry semantic conventions where they exist,
// sip.* and sipsvc.* for the rest), span event names and slog field names.
//
// It is a leaf package: it imports only go.opentelemetry.io/otel/attribute and the standard
// library, so signaling (and any other package that creates spans) can import it without
// pulling exporters in. docs/observability.md is the prose version of this file; keep the two
// in step.
package sipconv

import (
	"log/slog"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// InstrumentationName is the tracer/meter name for code in the telemetry package itself.
const InstrumentationName = "github.com/sipsvc/sipsvc/telemetry"

// Span names. See docs/observability.md "Span model" for kinds, parents and lifetimes.
const (
	// SpanCall is the root span of one call (kind INTERNAL). It starts when the inbound
	// INVITE arrives (or when MakeCall starts the call) and ends when the last leg ends.
	SpanCall = "sipsvc.call"
	// SpanLegInbound is the span of a leg sipsvc answers as UAS (kind SERVER), child of SpanCall.
	SpanLegInbound = "sip.leg.inbound"
	// SpanLegOutbound is the span of a leg sipsvc originates as UAC (kind CLIENT), child of SpanCall.
	SpanLegOutbound = "sip.leg.outbound"
	// SpanRoute is the routing decision (kind INTERNAL), child of SpanCall. The otelgrpc
	// client span of the routing RPC is its child.
	SpanRoute = "sipsvc.route"
	// SpanTransactionPrefix starts the name of an in-dialog transaction span; the method
	// follows after one space: "sip.transaction BYE". Use TransactionSpanName.
	SpanTransactionPrefix = "sip.transaction "
	// SpanRegister is the span of one REGISTER transaction (kind SERVER), a root of its own.
	SpanRegister = "sip.transaction REGISTER"
)

// TransactionSpanName returns the span name of an in-dialog transaction: "sip.transaction " + method.
func TransactionSpanName(method string) string { return SpanTransactionPrefix + method }

// Span event names.
const (
	// EventHeaderRewrite is added for every header sipsvc changes, with AttrSIPLeg,
	// AttrSIPHeader, AttrSIPHeaderBefore, AttrSIPHeaderAfter and AttrSIPRule. Use RewriteAttrs.
	EventHeaderRewrite = "sip.header.rewrite"
	// EventSchemeDecided is added to a leg span when its scheme is decided (attributes as on the leg span).
	EventSchemeDecided = "sip.scheme.decided"
	// EventLegRinging, EventLegAnswered, EventLegHeld, EventLegRetrieved and
	// EventLegTransferred mark leg state changes on the leg span.
	EventLegRinging     = "sip.leg.ringing"
	EventLegAnswered    = "sip.leg.answered"
	EventLegHeld        = "sip.leg.held"
	EventLegRetrieved   = "sip.leg.retrieved"
	EventLegTransferred = "sip.leg.transferred"
	// EventACK and EventCANCEL mark an ACK or CANCEL on the leg span (they get no span of their own).
	EventACK    = "sip.ack"
	EventCANCEL = "sip.cancel"
	// EventRoutingFallback is added to the SpanRoute span (and the call span) when the routing
	// service failed and the B2BUA fell back; attributes AttrRoutingOutcome and AttrErrorType.
	EventRoutingFallback = "sipsvc.routing.fallback"
	// EventPolicyRefused is added when the sips policy refuses something: on the call span
	// when a leg is not dialled (strict, R19/R20), on the leg span when a transfer of that leg
	// is refused (strict join R14/R19/R20, sip Refer-To in a sips dialog R17); attributes
	// AttrSIPRule and AttrSIPCause.
	EventPolicyRefused = "sipsvc.policy.refused"
)

// OpenTelemetry semantic-convention attribute keys used by sipsvc.
const (
	// AttrNetworkTransport is "udp" or "tcp" (TLS legs are "tcp" with tls.* set).
	AttrNetworkTransport = attribute.Key("network.transport")
	// AttrNetworkPeerAddress and AttrNetworkPeerPort are the remote socket address of the leg.
	AttrNetworkPeerAddress = attribute.Key("network.peer.address")
	AttrNetworkPeerPort    = attribute.Key("network.peer.port")
	// AttrNetworkLocalAddress and AttrNetworkLocalPort are sipsvc's socket address on the leg.
	AttrNetworkLocalAddress = attribute.Key("network.local.address")
	AttrNetworkLocalPort    = attribute.Key("network.local.port")
	// AttrServerAddress and AttrServerPort: on a CLIENT leg the target host and port (from the
	// Request-URI, before DNS); on a SERVER leg the host and port the caller addressed.
	AttrServerAddress = attribute.Key("server.address")
	AttrServerPort    = attribute.Key("server.port")
	// AttrClientAddress and AttrClientPort: on a SERVER leg, the caller (Via received/rport).
	AttrClientAddress = attribute.Key("client.address")
	AttrClientPort    = attribute.Key("client.port")
	// AttrTLSProtocolName is "tls"; AttrTLSProtocolVersion "1.2" or "1.3".
	AttrTLSProtocolName    = attribute.Key("tls.protocol.name")
	AttrTLSProtocolVersion = attribute.Key("tls.protocol.version")
	// AttrTLSCipher is the IANA cipher suite name (tls.CipherSuiteName).
	AttrTLSCipher = attribute.Key("tls.cipher")
	// AttrTLSEstablished is true once the handshake completed; AttrTLSResumed if it was resumed.
	AttrTLSEstablished = attribute.Key("tls.established")
	AttrTLSResumed     = attribute.Key("tls.resumed")
	// AttrTLSClientSubject is the peer certificate subject on a SERVER leg (mutual TLS).
	AttrTLSClientSubject = attribute.Key("tls.client.subject")
	// AttrTLSServerSubject is the peer certificate subject on a CLIENT leg.
	AttrTLSServerSubject = attribute.Key("tls.server.subject")
	// AttrTLSServerName is the SNI sipsvc sent on a CLIENT leg.
	AttrTLSServerName = attribute.Key("tls.client.server_name")
	// AttrErrorType is a low-cardinality error class ("timeout", "tls_handshake", "503"…),
	// set together with an Error span status.
	AttrErrorType = attribute.Key("error.type")
)

// sip.* attribute keys.
const (
	// AttrSIPMethod is the request method: INVITE, BYE, REFER…
	AttrSIPMethod = attribute.Key("sip.method")
	// AttrSIPCallID is the SIP Call-ID of the leg (each leg has its own).
	AttrSIPCallID = attribute.Key("sip.call_id")
	// AttrSIPStatusCode is the final response code (int).
	AttrSIPStatusCode = attribute.Key("sip.status_code")
	// AttrSIPReasonPhrase is the final response's reason phrase.
	AttrSIPReasonPhrase = attribute.Key("sip.reason_phrase")
	// AttrSIPRequestURI is the Request-URI of the leg's INVITE (or of the transaction's request).
	AttrSIPRequestURI = attribute.Key("sip.request_uri")
	// AttrSIPCause is a short reason why a leg or call ended ("bye", "cancel", "timeout"…).
	AttrSIPCause = attribute.Key("sip.cause")
	// AttrSIPLeg is the leg id: "A", "B1", "B2"…
	AttrSIPLeg = attribute.Key("sip.leg")
	// AttrSIPScheme is the leg's URI scheme, "sips" or "sip".
	AttrSIPScheme = attribute.Key("sip.scheme")
	// AttrSIPSchemeReason says why the leg got its scheme (LegDecision.Reason).
	AttrSIPSchemeReason = attribute.Key("sip.scheme.reason")
	// AttrSIPSchemeRule is the rule (docs/sips.md) behind the scheme decision, e.g. "R8".
	AttrSIPSchemeRule = attribute.Key("sip.scheme.rule")
	// AttrSIPTransport is the SIP transport as written in Via: "UDP", "TCP" or "TLS".
	AttrSIPTransport = attribute.Key("sip.transport")
	// AttrSIPSecure is the dialog's secure flag (docs/sips.md R25).
	AttrSIPSecure = attribute.Key("sip.secure")
	// AttrSIPDN is the directory number of the leg's party.
	AttrSIPDN = attribute.Key("sip.dn")
	// AttrSIPCaller and AttrSIPDialed are the calling and dialed user parts (call span).
	AttrSIPCaller = attribute.Key("sip.caller")
	AttrSIPDialed = attribute.Key("sip.dialed")
	// AttrSIPHeader, AttrSIPHeaderBefore, AttrSIPHeaderAfter and AttrSIPRule describe one
	// header rewrite (EventHeaderRewrite). An added header has an empty before value, a
	// removed one an empty after value.
	AttrSIPHeader       = attribute.Key("sip.header")
	AttrSIPHeaderBefore = attribute.Key("sip.header.before")
	AttrSIPHeaderAfter  = attribute.Key("sip.header.after")
	AttrSIPRule         = attribute.Key("sip.rule")
	// AttrSIPTraceparentIn is true on the call span when an inbound traceparent header was continued.
	AttrSIPTraceparentIn = attribute.Key("sip.traceparent.received")
	// AttrSIPTraceparentOut is true on an outbound leg span when sipsvc added a traceparent header.
	AttrSIPTraceparentOut = attribute.Key("sip.traceparent.sent")
)

// sipsvc.* attribute keys.
const (
	// AttrCallID is sipsvc's own call id (not a SIP Call-ID).
	AttrCallID = attribute.Key("sipsvc.call.id")
	// AttrCallOrigin is "sip" (inbound INVITE) or "api" (MakeCall).
	AttrCallOrigin = attribute.Key("sipsvc.call.origin")
	// AttrCallOutcome is how the call ended; one of the Outcome* values.
	AttrCallOutcome = attribute.Key("sipsvc.call.outcome")
	// AttrLegOutcome is how a leg ended (leg span); one of the Outcome* values.
	AttrLegOutcome = attribute.Key("sipsvc.leg.outcome")
	// AttrCallerClass is how the caller of an inbound call was established:
	// "authenticated", "trusted" or "anonymous" (signaling.CallerClass).
	AttrCallerClass = attribute.Key("sipsvc.caller.class")
	// AttrRoutingSource is who decided: "routing-service", "fallback", "builtin".
	AttrRoutingSource = attribute.Key("sipsvc.routing.source")
	// AttrRoutingOutcome is the Metrics.RoutingDone outcome: routed, rejected, error, timeout,
	// fallback_dns, builtin, unavailable.
	AttrRoutingOutcome = attribute.Key("sipsvc.routing.outcome")
	// AttrRoutingTargets is the number of targets the router returned.
	AttrRoutingTargets = attribute.Key("sipsvc.routing.targets")
)

// Call outcomes, the values of AttrCallOutcome and AttrLegOutcome, and of Event.Outcome on
// call_ended and leg_released events.
const (
	OutcomeAnswered    = "answered"
	OutcomeBusy        = "busy"
	OutcomeNoAnswer    = "no_answer"
	OutcomeCancelled   = "cancelled"
	OutcomeRejected    = "rejected"
	OutcomeUnavailable = "unavailable"
	OutcomeFailed      = "failed"
)

// AttrCallDirection is a call's direction (call span attribute and metric label):
// DirectionInbound for a call a caller's INVITE started, DirectionOutbound for one sipsvc
// originated (MakeCall).
const AttrCallDirection = attribute.Key("sipsvc.call.direction")

// Values of AttrCallDirection (and of signaling.Event.Direction).
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// OutcomeForStatus maps the final status of a call (the one given to the caller; 0 means
// answered and later released) to one of the Outcome* values: 2xx answered, 486/600 busy,
// 408 no_answer, 480 unavailable, 487 cancelled, 502–504 unavailable, other 5xx failed,
// other 3xx–6xx rejected. It returns "" for a status it cannot place (1xx, out of range).
// It reads the status only: the path that ends a call knows more (a ring timeout is
// no_answer whatever the status) and sets the outcome itself (signaling.Event.Outcome).
func OutcomeForStatus(status int) string {
	switch st := status; {
	case st == 0 || (st >= 200 && st < 300):
		return OutcomeAnswered
	case st == 486 || st == 600:
		return OutcomeBusy
	case st == 408:
		return OutcomeNoAnswer
	case st == 480:
		return OutcomeUnavailable
	case st == 487:
		return OutcomeCancelled
	case st == 502 || st == 503 || st == 504:
		return OutcomeUnavailable
	case st >= 500 && st < 600:
		return OutcomeFailed
	case st >= 300 && st < 700:
		return OutcomeRejected
	}
	return ""
}

// Values of AttrCallOrigin.
const (
	OriginSIP = "sip"
	OriginAPI = "api"
)

// Log field names (slog keys). trace_id and span_id are added by the telemetry handler.
const (
	LogTraceID   = "trace_id"
	LogSpanID    = "span_id"
	LogCallID    = "call_id"
	LogLeg       = "leg"
	LogSIPCallID = "sip_call_id"
	LogDN        = "dn"
	LogMethod    = "method"
	LogStatus    = "status"
	LogError     = "error"
)

// RewriteAttrs returns the attributes of one EventHeaderRewrite event:
//
//	span.AddEvent(sipconv.EventHeaderRewrite, trace.WithAttributes(sipconv.RewriteAttrs(leg, hdr, before, after, rule)...))
func RewriteAttrs(leg, header, before, after, rule string) []attribute.KeyValue {
	return []attribute.KeyValue{
		AttrSIPLeg.String(leg),
		AttrSIPHeader.String(header),
		AttrSIPHeaderBefore.String(before),
		AttrSIPHeaderAfter.String(after),
		AttrSIPRule.String(rule),
	}
}

// LegSchemeAttrs returns the scheme-decision attributes of a leg span.
func LegSchemeAttrs(leg, scheme, transport string, secure bool, reason, rule string) []attribute.KeyValue {
	return []attribute.KeyValue{
		AttrSIPLeg.String(leg),
		AttrSIPScheme.String(scheme),
		AttrSIPTransport.String(transport),
		AttrNetworkTransport.String(NetworkTransport(transport)),
		AttrSIPSecure.Bool(secure),
		AttrSIPSchemeReason.String(reason),
		AttrSIPSchemeRule.String(rule),
	}
}

// NetworkTransport maps a SIP transport (UDP, TCP, TLS, WS, WSS, any case) to the
// network.transport value: "udp" or "tcp"; "" for an unknown transport.
func NetworkTransport(sipTransport string) string {
	switch strings.ToUpper(sipTransport) {
	case "UDP":
		return "udp"
	case "TCP", "TLS", "WS", "WSS":
		return "tcp"
	}
	return ""
}

// TLSVersion returns the tls.protocol.version value for a crypto/tls version number
// (tls.VersionTLS12 → "1.2"), or "" for an unknown one.
func TLSVersion(v uint16) string {
	switch v {
	case 0x0301:
		return "1.0"
	case 0x0302:
		return "1.1"
	case 0x0303:
		return "1.2"
	case 0x0304:
		return "1.3"
	}
	return ""
}

// StatusIsError reports whether a final SIP status marks a leg span as failed: on a CLIENT
// span any status >= 400 except 487 after sipsvc's own CANCEL (pass cancelled=true); on a
// SERVER span only >= 500.
func StatusIsError(status int, client, cancelled bool) bool {
	if client {
		return status >= 400 && !(status == 487 && cancelled)
	}
	return status >= 500
}

// LogCall returns the slog attribute naming sipsvc's call id.
func LogCall(callID string) slog.Attr { return slog.String(LogCallID, callID) }

// LogLegAttrs returns the slog attributes naming one leg: its id and SIP Call-ID.
func LogLegAttrs(leg, sipCallID string) []any {
	return []any{slog.String(LogLeg, leg), slog.String(LogSIPCallID, sipCallID)}
}

// StatusString formats a SIP status code for an error.type value ("486").
func StatusString(status int) string { return strconv.Itoa(status) }
