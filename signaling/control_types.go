package signaling

import (
	"errors"
	"time"
)

// Domain errors of the call-control surface. The service edge maps them to gRPC codes.
var (
	// ErrCallNotFound: no call with that id.
	ErrCallNotFound = errors.New("signaling: call not found")
	// ErrLegNotFound: the call has no such leg.
	ErrLegNotFound = errors.New("signaling: leg not found")
	// ErrWrongState: the call or leg is not in a state that allows the operation.
	ErrWrongState = errors.New("signaling: wrong call state")
	// ErrNotSupported: the peer does not support what the operation needs (e.g. no Allow-Events: talk).
	ErrNotSupported = errors.New("signaling: not supported by peer")
	// ErrUnknownDN: a DN named in a request does not exist.
	ErrUnknownDN = errors.New("signaling: unknown DN")
	// ErrBadTarget: a target URI is malformed or unusable.
	ErrBadTarget = errors.New("signaling: bad target")
)

// CallState is the state of a call or a leg.
type CallState string

// States.
const (
	StateInitiating CallState = "initiating" // routing, no leg ringing yet
	StateRinging    CallState = "ringing"
	StateTalking    CallState = "talking"
	StateHeld       CallState = "held"
	StateReleased   CallState = "released"
)

// LegInfo is a snapshot of one leg.
type LegInfo struct {
	ID        string
	DN        string
	URI       string // remote party URI as written on this leg
	SIPCallID string
	Direction string // "inbound" (sipsvc is UAS) or "outbound" (sipsvc is UAC)
	State     CallState
	Decision  LegDecision
	Peer      string // remote address host:port
	Cause     string
}

// CallInfo is a snapshot of a call.
type CallInfo struct {
	ID       string
	State    CallState
	Caller   string
	Dialed   string
	Created  time.Time
	Answered time.Time
	Legs     []LegInfo
	Rewrites []Rewrite
}

// CallFilter selects calls for ListCalls.
type CallFilter struct {
	DN    string
	State CallState
}
