package signaling

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// Directory resolves DNs and their live registrations. It returns dn.ErrNotFound (possibly
// wrapped) for an unknown number.
type Directory interface {
	// Lookup returns the DN with the given number.
	Lookup(ctx context.Context, number string) (dn.DN, error)
	// Bindings returns the unexpired bindings of a self-registered DN.
	Bindings(ctx context.Context, number string) ([]dn.Binding, error)
}

// Registrar serves REGISTER requests. It must answer every request it is given.
type Registrar interface {
	ServeRegister(ctx context.Context, req *sip.Request, tx sip.ServerTransaction)
}

// Authenticator decides whether an out-of-dialog INVITE may be routed. When it returns
// ok=false it has already answered the transaction (401/403/407). caller is the authenticated
// calling DN, or nil when the caller is not a known DN.
type Authenticator interface {
	AuthorizeCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (caller *dn.DN, ok bool)
}

// Router decides where a call goes. Errors (including context deadline) make the B2BUA fall
// back; see Config.FallbackDNs.
type Router interface {
	Route(ctx context.Context, req RouteRequest) (RouteDecision, error)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, req RouteRequest) (RouteDecision, error)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, req RouteRequest) (RouteDecision, error) {
	return f(ctx, req)
}

// RouteRequest is what the router is told about a new call.
type RouteRequest struct {
	// CallID is sipsvc's id for the call (not a SIP Call-ID).
	CallID string
	// SIPCallID is the Call-ID of the inbound leg.
	SIPCallID string
	// Caller is the calling user (From user part); CallerDisplay its display name.
	Caller        string
	CallerDisplay string
	// Dialed is the dialed user part of the Request-URI.
	Dialed string
	// RequestURI is the full inbound Request-URI.
	RequestURI string
	// Headers holds selected inbound headers (From, To, P-Asserted-Identity, User-Agent…).
	Headers map[string]string
	// Inbound is the scheme decision of the inbound leg.
	Inbound LegDecision
	// Source is the inbound peer's address.
	Source string
	// CallerClass is how the caller was established: authenticated, trusted or anonymous.
	// sipsvc refuses targets the class may not reach whatever the router answers.
	CallerClass CallerClass
	// CallerDN is the authenticated DN, or the trusted DN whose rule matched; empty when
	// anonymous.
	CallerDN string
	// CallerRule names the trust rule that matched a trusted caller.
	CallerRule string
}

// Target is one place to try a call.
type Target struct {
	// DN is a directory number to call; or
	DN string
	// URI is a SIP/SIPS URI to call directly.
	URI string
	// Timeout bounds ringing on this target; zero means Config.RingTimeout.
	Timeout time.Duration
	// Policy overrides the sips policy for this target.
	Policy dn.Policy
}

// Rejection tells the B2BUA to refuse the call.
type Rejection struct {
	Status int
	Reason string
}

// RouteDecision is the router's answer: ordered targets, or a rejection.
type RouteDecision struct {
	Targets []Target
	Reject  *Rejection
	// Source names who decided: "routing-service", "fallback", "builtin". Set by the B2BUA
	// when empty.
	Source string
}

// Observer receives every event of every call. Observe must not block: it is called on the
// call's goroutine.
type Observer interface {
	Observe(ctx context.Context, ev Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(ctx context.Context, ev Event)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, ev Event) { f(ctx, ev) }

// EventKind names an event.
type EventKind string

// Event kinds.
const (
	EventCallCreated         EventKind = "call_created"
	EventLegSchemeDecided    EventKind = "leg_scheme_decided"
	EventHeaderRewritten     EventKind = "header_rewritten"
	EventLegRinging          EventKind = "leg_ringing"
	EventLegAnswered         EventKind = "leg_answered"
	EventLegHeld             EventKind = "leg_held"
	EventLegRetrieved        EventKind = "leg_retrieved"
	EventLegTransferred      EventKind = "leg_transferred"
	EventLegReleased         EventKind = "leg_released"
	EventCallEnded           EventKind = "call_ended"
	EventRoutingFallback     EventKind = "routing_fallback"
	EventRegistrationAdded   EventKind = "registration_added"
	EventRegistrationRefresh EventKind = "registration_refreshed"
	EventRegistrationRemoved EventKind = "registration_removed"
)

// Event is one thing that happened to a call, a leg or a registration.
type Event struct {
	Kind EventKind
	Time time.Time
	// CallID is sipsvc's call id; empty for registration events.
	CallID string
	// Leg is the leg id ("A", "B1", "B2"…), when the event concerns one leg.
	Leg string
	// DN is the DN of the leg's party, when known.
	DN string
	// SIPCallID is the Call-ID of the leg.
	SIPCallID string
	// Decision is set for EventLegSchemeDecided.
	Decision *LegDecision
	// Rewrite is set for EventHeaderRewritten.
	Rewrite *Rewrite
	// Binding is set for registration events.
	Binding *dn.Binding
	// Status is the SIP status code for answered/released events; Cause a short reason, for
	// people: read the typed fields below, not Cause.
	Status int
	Cause  string
	// Outcome is set on call_ended (how the call ended) and on leg_released (how the leg
	// ended), by the path that ended it.
	Outcome Outcome
	// Direction is DirectionInbound or DirectionOutbound: on call events whether a caller's
	// INVITE started the call or sipsvc originated it (MakeCall); on leg events whether
	// sipsvc is the leg's UAS or UAC.
	Direction string
	// FallbackReason is set on routing_fallback: FallbackTimeout or FallbackError.
	FallbackReason string
}

// LegDecision is the scheme decision for one leg (docs/sips.md R3–R25).
type LegDecision struct {
	// Leg is the leg id.
	Leg string
	// Scheme is "sips" or "sip" as written in the leg's URIs.
	Scheme string
	// Transport is UDP, TCP or TLS.
	Transport string
	// Secure is the dialog "secure" flag (R25): SIPS URI and TLS.
	Secure bool
	// Reason says why, e.g. "request-uri sips", "dn contact sips", "registered with sips".
	Reason string
	// Rule is the rule id (docs/sips.md) behind the decision, e.g. "R8".
	Rule string
}

// Rewrite is one header sipsvc changed on a leg, with the rule that asked for it.
type Rewrite struct {
	Leg    string
	Header string
	Before string
	After  string
	Rule   string
}

// Metrics receives counts from the SIP hot path. Implementations must be cheap and
// non-blocking. A nil Metrics in Config means none are recorded.
type Metrics interface {
	// MessageIn counts a SIP message received: a request (method set, status 0) or a
	// response (status set, method is the CSeq method).
	MessageIn(method string, status int, transport string)
	// MessageOut counts a SIP message sent.
	MessageOut(method string, status int, transport string)
	// TLSHandshake counts a TLS handshake: direction "inbound"/"outbound", result "ok" or a short error class.
	TLSHandshake(direction, result string)
	// RoutingDone records one routing decision: how long it took and its outcome
	// ("routed", "rejected", "error", "timeout", "fallback_dns", "builtin", "unavailable").
	RoutingDone(d time.Duration, outcome string)
}
