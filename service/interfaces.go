package service

import (
	"context"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

// CallControl is what CallService needs from the B2BUA; *signaling.Server implements it.
// Errors are the signaling sentinels (ErrCallNotFound, ErrLegNotFound, ErrWrongState,
// ErrNotSupported, ErrUnknownDN, ErrBadTarget), possibly wrapped. A method that fails must
// change nothing.
type CallControl interface {
	// MakeCall starts a third-party call and returns it as soon as it exists.
	MakeCall(ctx context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error)
	// AnswerCall answers a ringing leg with a NOTIFY (Event: talk).
	AnswerCall(ctx context.Context, callID, legID string) error
	// HoldCall puts the party on legID on hold.
	HoldCall(ctx context.Context, callID, legID string) error
	// RetrieveCall takes the party on legID off hold.
	RetrieveCall(ctx context.Context, callID, legID string) error
	// TransferCall transfers the party on req.LegID (blind or attended).
	TransferCall(ctx context.Context, req signaling.TransferRequest) error
	// ReleaseCall ends the call on every leg.
	ReleaseCall(ctx context.Context, callID string) error
	// GetCall returns a snapshot of one call.
	GetCall(ctx context.Context, callID string) (signaling.CallInfo, error)
	// ListCalls returns the live calls that match f, in any order.
	ListCalls(ctx context.Context, f signaling.CallFilter) []signaling.CallInfo
}

// Registrations is what DirectoryService needs from the registrar. List returns
// dn.ErrNotFound for an unknown DN; Remove returns dn.ErrNotFound when the DN or the contact
// is unknown. The contact is matched with dn.BindingKey (scheme-insensitive).
type Registrations interface {
	// List returns the unexpired bindings of a DN.
	List(ctx context.Context, number string) ([]dn.Binding, error)
	// Remove deletes one binding of a DN.
	Remove(ctx context.Context, number, contact string) error
}

// Readiness is implemented by a component whose state decides whether sipsvc is ready:
// Ready returns nil when it is, else why not. *signaling.Server implements it (not ready
// until it serves, nor while it drains). When APIConfig.Calls implements it, GET /readyz and
// the grpc.health.v1 status follow it.
type Readiness interface {
	// Ready reports readiness; it must be cheap, as it is polled.
	Ready() error
}
