package signaling

import (
	"context"
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// ErrPolicyRefused: the sips policy does not allow the operation, e.g. joining a sips leg
// with a sip one under the strict policy (R14, R19, R20), or referring the party of a sips
// dialog to a sip: URI (R17). It is always returned together with ErrWrongState, so that the
// service edge reports a failed precondition.
var ErrPolicyRefused = errors.New("signaling: refused by sips policy")

// policyRefusal applies the strict policy between the new leg's decision d and the leg it is
// to be bridged to; a leg with no other leg yet (a MakeCall's origin) is checked later, when
// its peer is dialled.
func (p originateParams) policyRefusal(d sips.Decision) *sips.Refusal {
	if p.other == nil {
		return nil
	}
	return sips.CheckPolicy(p.policy, *p.other, d)
}

// sipsOverTLSLocked applies "a sips URI is reached over TLS, or not at all" (R11, R37) to an
// inbound leg before its in-dialog destination is set: when its decision reaches it over TLS
// although the INVITE came over TCP or UDP (a sip: Request-URI with a sips Contact or
// Record-Route), the leg's transport becomes TLS and the caller's connection is not reused
// (it returns ""), so in-dialog requests go over TLS to the remote target or route.
// Otherwise it returns source, whose connection the dialog reuses (R33). The caller holds
// the leg's lock (or owns the leg alone).
func (l *leg) sipsOverTLSLocked(source string) string {
	if l.dir == inbound && l.dec.Transport != "" && l.dec.Transport != l.transport {
		l.transport = l.dec.Transport
		return ""
	}
	return source
}

// policyOf returns the sips policy for calls toward a DN: its own, else the global one. An
// empty number (a party that is not a DN) has the global policy.
func (s *Server) policyOf(ctx context.Context, number string) dn.Policy {
	if number != "" {
		if d, err := s.cfg.Directory.Lookup(ctx, number); err == nil && d.Policy != dn.PolicyDefault {
			return d.Policy
		}
	}
	return s.cfg.Policy
}

// pairPolicy is the policy under which two parties are joined: strict when either DN's
// policy is.
func (s *Server) pairPolicy(ctx context.Context, a, b string) dn.Policy {
	return sips.StricterPolicy(s.policyOf(ctx, a), s.policyOf(ctx, b))
}

// checkJoin refuses to join leg l of call c with leg far under the strict policy when one is
// sips and the other is not (R14, R19, R20): attended transfer joins two existing legs
// without a new INVITE, so the check that originate makes is made here. (A leg's decision and
// DN are set when it is made, then read-only.)
func (s *Server) checkJoin(ctx context.Context, c *call, l, far *leg) error {
	if far == nil {
		return nil // the caller reports the consultation call's state
	}
	if r := sips.CheckPolicy(s.pairPolicy(ctx, l.dn, far.dn), l.dec, far.dec); r != nil {
		c.policyRefused(l, r.Rule, "join with leg "+far.id)
		return fmt.Errorf("join leg %s (%s) with leg %s (%s): policy strict (%s, %s): %w: %w",
			l.id, l.dec.Scheme, far.id, far.dec.Scheme, r.Rule, r.Warning, ErrPolicyRefused, ErrWrongState)
	}
	return nil
}

// referURI is the Refer-To sipsvc writes on leg l for a blind transfer to t: a DN is called
// through sipsvc in the leg's own scheme (so a sips dialog refers to a sips URI, R17); a URI
// target is referred to as it is.
func referURI(l *leg, t Target) (sip.Uri, error) {
	if t.DN != "" {
		// Our Contact's scheme is the leg's decided scheme (sips.ContactURI), set when the
		// leg is made.
		return sip.Uri{Scheme: l.dec.Scheme, User: t.DN}, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(t.URI, &u); err != nil {
		return sip.Uri{}, fmt.Errorf("refer-to %q: %w: %w", t.URI, ErrBadTarget, err)
	}
	return u, nil
}

// checkRefer decides whether a blind transfer of leg l to t may use REFER (R17). It returns
// refer=false when sipsvc must not ask the party of a sips dialog to set up a sip one: the
// URI is not rewritten to sips either (that would be a silent upgrade, R38). Under the strict
// policy such a transfer is refused (ErrPolicyRefused); under per-leg, sipsvc calls the
// target itself (the documented per-leg exception, R14) instead of referring.
func (s *Server) checkRefer(ctx context.Context, c *call, l *leg, t Target) (refer bool, err error) {
	u, err := referURI(l, t)
	if err != nil {
		return false, err
	}
	if err := sips.CheckReferTo(l.dec, u); err != nil {
		if s.pairPolicy(ctx, l.dn, t.DN) == dn.PolicyStrict {
			c.policyRefused(l, "R17", "refer to "+u.String())
			return false, fmt.Errorf("transfer leg %s to %s: %w: %w: %w", l.id, u.String(), err, ErrPolicyRefused, ErrWrongState)
		}
		return false, nil
	}
	return true, nil
}

// policyRefused records a refusal by the sips policy as a span event (sipsvc.policy.refused):
// on leg l's span, or on the call span when l is nil (a leg that was never dialled).
func (c *call) policyRefused(l *leg, rule, what string) {
	span := c.span
	if l != nil && l.span != nil {
		span = l.span
	}
	if span == nil || !span.IsRecording() {
		return
	}
	span.AddEvent(sc.EventPolicyRefused, trace.WithAttributes(sc.AttrSIPRule.String(rule), sc.AttrSIPCause.String(what)))
}

// precheckMakeCall refuses a third-party call before the origin rings when the strict policy
// would refuse its two legs (R14, R19, R20): the origin's first contact and the
// destination's first contact are decided as they would be dialled and checked as a pair
// (strict when either DN is). It returns nil when the pair may be tried, or when a side
// cannot be decided yet (dial reports that failure itself).
func (c *call) precheckMakeCall(origin dn.DN, target Target) *failure {
	s := c.s
	policy := sips.StricterPolicy(s.policyOf(c.ctx, origin.Number), target.Policy)
	if target.DN != "" && target.Policy == dn.PolicyDefault {
		policy = sips.StricterPolicy(policy, s.policyOf(c.ctx, target.DN))
	}
	if policy != dn.PolicyStrict {
		return nil
	}
	a, ok := c.firstDecision(Target{DN: origin.Number})
	if !ok {
		return nil
	}
	b, ok := c.firstDecision(target)
	if !ok {
		return nil
	}
	r := sips.CheckPolicy(policy, a, b)
	if r == nil {
		return nil
	}
	c.policyRefused(nil, r.Rule, "origin "+origin.Number+" and destination "+targetName(target))
	return &failure{status: r.Status, reason: r.Reason, cause: "policy strict (" + r.Rule + ")",
		warning: refusalWarning(r.Warning), outcome: OutcomeRejected}
}

// firstDecision is the scheme decision of the first place t resolves to.
func (c *call) firstDecision(t Target) (sips.Decision, bool) {
	specs, f := c.resolve(t)
	if f != nil || len(specs) == 0 {
		return sips.Decision{}, false
	}
	sp := specs[0]
	d, err := sips.DecideOutbound(sips.Outbound{
		Target: sp.uri, Registered: sp.registered, RegisteredSecure: sp.binding.Secure,
		RegisteredTransport: sp.binding.Transport, Style: sp.d.Style,
	})
	return d, err == nil
}
