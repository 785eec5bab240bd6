package signaling

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"

	"github.com/emiago/sipgo/sip"

	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// Outcome is how a call ended, typed: metrics, the call span and call_ended events take it
// from Event.Outcome, never from the free-text Cause.
type Outcome string

// Outcomes (the values of the sipsvc.call.outcome attribute and metric label).
const (
	OutcomeAnswered    Outcome = sc.OutcomeAnswered
	OutcomeBusy        Outcome = sc.OutcomeBusy
	OutcomeNoAnswer    Outcome = sc.OutcomeNoAnswer
	OutcomeCancelled   Outcome = sc.OutcomeCancelled
	OutcomeRejected    Outcome = sc.OutcomeRejected
	OutcomeUnavailable Outcome = sc.OutcomeUnavailable
	OutcomeFailed      Outcome = sc.OutcomeFailed
)

// Directions of a call (Event.Direction on call events) and of a leg (on leg events).
const (
	DirectionInbound  = sc.DirectionInbound
	DirectionOutbound = sc.DirectionOutbound
)

// Reasons of a routing fallback (Event.FallbackReason on routing_fallback events).
const (
	FallbackTimeout = "timeout" // the routing service did not answer within Config.RoutingTimeout
	FallbackError   = "error"   // it failed, or answered with neither a target nor a rejection
)

// outcomeForStatus is the outcome of a final status when nothing else is known about why the
// call ended: 480 from a callee is unavailable, not no_answer.
func outcomeForStatus(status int) Outcome { return Outcome(sc.OutcomeForStatus(status)) }

// outcomeOf is the outcome of a failure: the one its path set, else its status's.
func (f failure) outcomeOf() Outcome {
	if f.outcome != "" {
		return f.outcome
	}
	return outcomeForStatus(f.status)
}

// destinationOutcome is how a MakeCall ends when its destination does not answer: the
// destination's failure, or no_answer when there is none to tell.
func destinationOutcome(f *failure) Outcome {
	if f == nil {
		return OutcomeNoAnswer
	}
	return f.outcomeOf()
}

// setOutcome records how the call ends, for end; the first one set wins.
func (c *call) setOutcome(o Outcome) {
	c.mu.Lock()
	if c.outcome == "" {
		c.outcome = o
	}
	c.mu.Unlock()
}

// endOutcome is the call's outcome and direction when it ends with status (0: answered and
// later released).
func (c *call) endOutcome(status int) (Outcome, string) {
	c.mu.Lock()
	o := c.outcome
	dir := DirectionOutbound // MakeCall: sipsvc originated every leg
	if c.a != nil && c.a.dir == inbound {
		dir = DirectionInbound
	}
	c.mu.Unlock()
	if o == "" {
		o = outcomeForStatus(status)
	}
	if o == "" {
		o = OutcomeFailed
	}
	return o, dir
}

// transportFailure classifies the error of an originated leg's transaction by its type, not
// its text: no response at all (timer B, RFC 3261 §17.1.1.2) is 408 and the callee
// unavailable; a failed TLS handshake or certificate is 503 and failed (a configuration or
// trust problem, R44); a refused or unreachable connection is 503 and unavailable.
func transportFailure(err error) failure {
	msg := short(err.Error())
	var (
		certErr    *tls.CertificateVerificationError
		alertErr   tls.AlertError
		recordErr  tls.RecordHeaderError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		opErr      *net.OpError
	)
	switch {
	case errors.Is(err, sip.ErrTransactionTimeout), errors.Is(err, context.DeadlineExceeded):
		return failure{status: 408, reason: "Request Timeout", cause: "no response: " + msg, outcome: OutcomeUnavailable}
	case errors.As(err, &certErr), errors.As(err, &alertErr), errors.As(err, &recordErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr):
		return failure{status: 503, reason: "Service Unavailable", cause: "TLS handshake failed: " + msg, outcome: OutcomeFailed}
	case errors.Is(err, syscall.ECONNREFUSED):
		return failure{status: 503, reason: "Service Unavailable", cause: "connection refused", outcome: OutcomeUnavailable}
	case errors.As(err, &opErr):
		return failure{status: 503, reason: "Service Unavailable", cause: "transport error: " + msg, outcome: OutcomeUnavailable}
	}
	return failure{status: 503, reason: "Service Unavailable", cause: "transport error: " + msg, outcome: OutcomeFailed}
}
