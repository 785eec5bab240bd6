package signaling

import "time"

// MakeCallRequest asks for a third-party call (RFC 3725): ring From first and, when it
// answers, call To with From's offer.
type MakeCallRequest struct {
	// From is the originating DN number.
	From string
	// To is a DN number or a sip:/sips: URI.
	To string
	// Timeout bounds ringing of each party; zero means Config.RingTimeout.
	Timeout time.Duration
}

// TransferRequest transfers the party on one leg of a call. Exactly one of Target (blind)
// and ConsultCallID (attended) is set.
type TransferRequest struct {
	// CallID is the call; LegID the leg whose party is transferred.
	CallID string
	LegID  string
	// Target is a DN number or sip:/sips: URI for a blind transfer: REFER when the party
	// supports it, else the B2BUA re-routes the other leg.
	Target string
	// ConsultCallID is an existing call whose far party the transferred party is joined
	// with (attended transfer).
	ConsultCallID string
}
