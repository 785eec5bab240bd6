package signaling

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
)

// MakeCall starts a third-party call (RFC 3725 flow I): it rings the From DN first and, when
// it answers, calls To with From's offer, then gives From the answer in its ACK. It returns
// as soon as the call exists; progress is reported through events. ctx's span becomes the
// parent of the call's root span.
func (s *Server) MakeCall(ctx context.Context, req MakeCallRequest) (CallInfo, error) {
	origin, err := s.cfg.Directory.Lookup(ctx, req.From)
	if err != nil {
		if errors.Is(err, dn.ErrNotFound) {
			return CallInfo{}, fmt.Errorf("from %q: %w", req.From, ErrUnknownDN)
		}
		return CallInfo{}, fmt.Errorf("from %q: %w", req.From, err)
	}
	target, dialed, err := s.parseTarget(ctx, req.To)
	if err != nil {
		return CallInfo{}, err
	}
	adm, err := s.admitMakeCall(origin, dialed) // admit.go: caps
	if err != nil {
		return CallInfo{}, err
	}
	if !s.enter() { // shutting down: no new call goroutine
		s.adm.release(adm.source, adm.dns)
		return CallInfo{}, ErrNotServing
	}
	c := &call{
		id: s.newCallID(), s: s, created: time.Now(), state: StateInitiating,
		caller: origin.Number, dialed: dialed,
		cancelled: make(chan struct{}), done: make(chan struct{}),
	}
	c.ctx, c.span = s.startCallSpan(context.WithoutCancel(ctx), nil, c)
	s.addCall(c)
	s.admitted(c, adm)
	c.event(EventCallCreated, nil, nil)
	go func() {
		defer s.wg.Done()
		c.runMakeCall(origin, target, req.Timeout)
	}()
	return c.snapshot(), nil
}

// parseTarget reads a DN number or a sip:/sips: URI.
func (s *Server) parseTarget(ctx context.Context, to string) (Target, string, error) {
	if lower := strings.ToLower(to); strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:") {
		u, err := dn.ParseContact(to)
		if err != nil {
			return Target{}, "", fmt.Errorf("%w: %w", ErrBadTarget, err)
		}
		return Target{URI: to}, u.User, nil
	}
	if _, err := s.cfg.Directory.Lookup(ctx, to); err != nil {
		if errors.Is(err, dn.ErrNotFound) {
			return Target{}, "", fmt.Errorf("to %q: %w", to, ErrUnknownDN)
		}
		return Target{}, "", fmt.Errorf("to %q: %w", to, err)
	}
	return Target{DN: to}, to, nil
}

func (c *call) runMakeCall(origin dn.DN, target Target, timeout time.Duration) {
	s := c.s
	if f := c.precheckMakeCall(origin, target); f != nil {
		c.endUnanswered(f) // nobody rings for a pair the strict policy refuses
		return
	}
	// Ring the origin with no offer: its 2xx carries the offer (RFC 3725 §4.1).
	a, f := c.dial(Target{DN: origin.Number, Timeout: timeout}, originateParams{callerUser: c.dialed}, nil)
	if a == nil {
		c.endUnanswered(f)
		return
	}
	resA := lastResponse(a)
	c.confirm(a, resA)
	c.mu.Lock()
	c.a = a
	c.removeForkLocked(a)
	c.mu.Unlock()
	a.setState(StateTalking)
	c.event(EventLegAnswered, a, func(e *Event) { e.Status = 200 })
	target.Timeout = timeout
	if s.policyOf(c.ctx, origin.Number) == dn.PolicyStrict {
		target.Policy = dn.PolicyStrict // the pair is strict when either DN is (R14, R19, R20)
	}
	b, f := c.dial(target, originateParams{
		callerUser: origin.Number, callerDisplay: origin.DisplayName, body: resA.Body(),
		ctype: contentType(resA), other: &a.dec,
	}, nil)
	if b == nil {
		_ = a.ack(nil)
		c.mu.Lock()
		c.b = a // so that hangup sends BYE to the origin
		c.mu.Unlock()
		cause := "destination failed"
		if f != nil {
			cause = fmt.Sprintf("destination failed: %d %s", f.status, f.cause)
		}
		c.setOutcome(destinationOutcome(f)) // the destination's failure, not "answered"
		c.hangupLegs(context.Background(), []*leg{a}, cause)
		return
	}
	resB := lastResponse(b)
	c.confirm(b, resB)
	c.mu.Lock()
	c.b = b
	c.removeForkLocked(b)
	c.state = StateTalking
	c.answered = time.Now()
	c.mu.Unlock()
	b.setState(StateTalking)
	a.mu.Lock()
	a.localSDP = resB.Body()
	a.mu.Unlock()
	b.mu.Lock()
	b.localSDP = resA.Body()
	b.mu.Unlock()
	_ = b.ack(nil)
	_ = a.ack(resB.Body())
	c.event(EventLegAnswered, b, func(e *Event) { e.Status = 200 })
	markAnswered(a.span, 200)
	markAnswered(b.span, 200)
	s.connAttrs(a)
	s.connAttrs(b)
}

// confirm records the dialog a 2xx creates on an outbound leg (RFC 3261 §12.1.2).
func (c *call) confirm(l *leg, res *sip.Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tag, _ := res.To().Params.Get("tag"); tag != "" {
		l.remoteTag = tag
	}
	if ct := res.Contact(); ct != nil {
		l.remoteTarget = *ct.Address.Clone()
	}
	l.routeSet = reverse(recordRoutes(res))
	switch {
	case len(l.routeSet) > 0:
		l.routeTransportLocked() // the top route decides transport and destination (R35)
	case l.transport == "UDP":
		l.dest = hostPort(l.remoteTarget, l.transport)
	}
	// Over TCP/TLS without a route set the dialog stays on the INVITE's connection (R33).
	l.remoteSDP = res.Body()
	if v := headerValue(res, "Allow"); v != "" {
		l.allow = v
	}
	if v := headerValue(res, "Allow-Events"); v != "" {
		l.events = v
	}
}

// endUnanswered ends a MakeCall whose origin never answered (no leg A): 480 "no answer"
// unless f tells why.
func (c *call) endUnanswered(f *failure) {
	cause, status, outcome := "no answer", 480, OutcomeNoAnswer
	if f != nil {
		cause, status, outcome = f.cause, f.status, f.outcomeOf()
	}
	c.setOutcome(outcome)
	c.finish(nil, cause, status)
}

// hangupLegs sends BYE on the given legs and ends the call.
func (c *call) hangupLegs(ctx context.Context, legs []*leg, cause string) {
	c.mu.Lock()
	c.state = StateReleased
	c.mu.Unlock()
	for _, l := range legs {
		c.byeLeg(ctx, l, cause, trace.SpanContext{})
	}
	c.end(cause, 0)
}

// byeLeg sends BYE on one leg and releases it. link is the request that caused it (a BYE
// received on the other leg), if any.
func (c *call) byeLeg(ctx context.Context, l *leg, cause string, link trace.SpanContext) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if res, err := l.bye(bctx, link); err != nil {
		c.log(slog.LevelDebug, "BYE failed", "leg", l.id, "error", err)
	} else if !res.IsSuccess() {
		c.log(slog.LevelDebug, "BYE refused", "leg", l.id, "status", res.StatusCode)
	}
	cancel()
	c.releaseLeg(l, cause, 0)
}

// findLeg returns a call and one of its legs.
func (s *Server) findLeg(callID, legID string) (*call, *leg, error) {
	c := s.callByID(callID)
	if c == nil {
		return nil, nil, fmt.Errorf("call %q: %w", callID, ErrCallNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range append([]*leg{c.a, c.b}, c.forks...) {
		if l != nil && l.id == legID {
			return c, l, nil
		}
	}
	return c, nil, fmt.Errorf("call %q leg %q: %w", callID, legID, ErrLegNotFound)
}

// AnswerCall answers a ringing phone remotely: an unsolicited NOTIFY with Event: talk, which
// phones that advertise Allow-Events: talk take as "go off-hook".
func (s *Server) AnswerCall(ctx context.Context, callID, legID string) error {
	_, l, err := s.findLeg(callID, legID)
	if err != nil {
		return err
	}
	l.mu.Lock()
	st, dir, events := l.state, l.dir, l.events
	l.mu.Unlock()
	if dir != outbound || st != StateRinging {
		return fmt.Errorf("leg %s is %s, not a ringing phone: %w", legID, st, ErrWrongState)
	}
	if !listHas(events, "talk") {
		return fmt.Errorf("leg %s did not advertise Allow-Events: talk: %w", legID, ErrNotSupported)
	}
	req := s.inDialogRequest(l, sip.NOTIFY, nil, "")
	req.AppendHeader(sip.NewHeader("Event", "talk"))
	req.AppendHeader(sip.NewHeader("Subscription-State", "active"))
	res, err := s.sendOn(ctx, l, req, trace.SpanContext{})
	if err != nil {
		return fmt.Errorf("answer leg %s: %w", legID, err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("answer leg %s: phone refused NOTIFY talk with %d: %w", legID, res.StatusCode, ErrNotSupported)
	}
	return nil
}

func listHas(list, item string) bool {
	for _, v := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), item) {
			return true
		}
	}
	return false
}

// HoldCall puts the party on legID on hold: a re-INVITE with a=sendonly on that leg.
func (s *Server) HoldCall(ctx context.Context, callID, legID string) error {
	return s.setHold(ctx, callID, legID, true)
}

// RetrieveCall takes the party on legID off hold: a re-INVITE with a=sendrecv.
func (s *Server) RetrieveCall(ctx context.Context, callID, legID string) error {
	return s.setHold(ctx, callID, legID, false)
}

func (s *Server) setHold(ctx context.Context, callID, legID string, hold bool) error {
	c, l, err := s.findLeg(callID, legID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	st, answered := c.state, c.b != nil
	c.mu.Unlock()
	l.mu.Lock()
	held, sdp, lst := l.held, l.localSDP, l.state
	l.mu.Unlock()
	if !answered || (st != StateTalking && st != StateHeld) || lst != StateTalking {
		return fmt.Errorf("call %s is %s: %w", callID, st, ErrWrongState)
	}
	if held == hold {
		if hold {
			return fmt.Errorf("leg %s is already held: %w", legID, ErrWrongState)
		}
		return fmt.Errorf("leg %s is not held: %w", legID, ErrWrongState)
	}
	dir := "sendrecv"
	if hold {
		dir = "sendonly"
	}
	body := setDirection(sdp, dir)
	if err := l.reinvite(ctx, body); err != nil {
		return fmt.Errorf("hold leg %s: %w", legID, err)
	}
	c.setHeld(l, hold)
	return nil
}

// reinvite sends a re-INVITE with body on l (leg.reinvite).
func (s *Server) reinvite(ctx context.Context, l *leg, body []byte) error {
	return l.reinvite(ctx, body)
}

var (
	dirRE     = regexp.MustCompile(`(?m)^a=(sendrecv|sendonly|recvonly|inactive)\r?$`)
	originRE  = regexp.MustCompile(`(?m)^(o=\S+ \S+ )(\d+)`)
	mediaLine = regexp.MustCompile(`(?m)^m=`)
)

// setDirection rewrites the SDP's direction attributes and bumps the origin version.
func setDirection(sdp []byte, dir string) []byte {
	out := sdp
	if dirRE.Match(out) {
		out = dirRE.ReplaceAll(out, []byte("a="+dir+"\r"))
		out = bytes.ReplaceAll(out, []byte("\r\r"), []byte("\r"))
	} else if loc := mediaLine.FindIndex(out); loc != nil {
		// append after the first media line
		end := bytes.IndexByte(out[loc[0]:], '\n')
		if end >= 0 {
			i := loc[0] + end + 1
			out = append(append(append([]byte{}, out[:i]...), []byte("a="+dir+"\r\n")...), out[i:]...)
		}
	}
	out = originRE.ReplaceAllFunc(out, func(m []byte) []byte {
		sub := originRE.FindSubmatch(m)
		n, _ := strconv.ParseUint(string(sub[2]), 10, 64)
		return []byte(string(sub[1]) + strconv.FormatUint(n+1, 10))
	})
	return out
}

// ReleaseCall ends a call: BYE on answered legs, CANCEL on ringing ones.
func (s *Server) ReleaseCall(ctx context.Context, callID string) error {
	c := s.callByID(callID)
	if c == nil {
		return fmt.Errorf("call %q: %w", callID, ErrCallNotFound)
	}
	c.mu.Lock()
	answered := !c.answered.IsZero() && c.state != StateReleased
	c.mu.Unlock()
	if !answered {
		c.cancel() // the call's own goroutine CANCELs its forks and answers leg A 487
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		return nil
	}
	c.hangup(ctx, nil, "released by API")
	return nil
}

// TransferCall transfers the party on req.LegID. Blind (Target): REFER when the party allows
// it, otherwise the B2BUA calls the target itself, re-points the party's media to it and
// releases the other leg. Attended (ConsultCallID): the party is joined with the far party of
// the consultation call and both transferor legs are released. A failed transfer leaves the
// call as it was.
func (s *Server) TransferCall(ctx context.Context, req TransferRequest) error {
	c, l, err := s.findLeg(req.CallID, req.LegID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	other := c.otherLocked(l)
	st := c.state
	c.mu.Unlock()
	if other == nil || (st != StateTalking && st != StateHeld) {
		return fmt.Errorf("call %s is %s: %w", req.CallID, st, ErrWrongState)
	}
	if req.ConsultCallID != "" {
		return s.attendedTransfer(ctx, c, l, other, req.ConsultCallID)
	}
	target, _, err := s.parseTarget(ctx, req.Target)
	if err != nil {
		return err
	}
	l.mu.Lock()
	allowsRefer := listHas(l.allow, "REFER")
	l.mu.Unlock()
	if allowsRefer {
		return s.referTransfer(ctx, c, l, other, target)
	}
	return s.rerouteTransfer(ctx, c, l, other, target)
}

// referTransfer asks the party to call the target itself (RFC 3515). Inside a sips dialog it
// never refers the party to a sip: URI (R17): under strict the transfer is refused, under
// per-leg sipsvc calls the target itself (rerouteTransfer).
func (s *Server) referTransfer(ctx context.Context, c *call, l, other *leg, t Target) error {
	if refer, err := s.checkRefer(ctx, c, l, t); err != nil || !refer { // R17
		if err != nil {
			return err
		}
		return s.rerouteTransfer(ctx, c, l, other, t) // per-leg: sipsvc calls the target (R14)
	}
	referTo := t.URI
	if t.DN != "" {
		// The party calls the DN through sipsvc, in the leg's own scheme (R17).
		l.mu.Lock()
		u := *l.localContact.Clone()
		l.mu.Unlock()
		referTo = (&sip.Uri{Scheme: u.Scheme, User: t.DN, Host: u.Host, Port: u.Port, UriParams: u.UriParams}).String()
	}
	req := s.inDialogRequest(l, sip.REFER, nil, "")
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+referTo+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+l.localURI.String()+">"))
	res, err := s.sendOn(ctx, l, req, trace.SpanContext{})
	if err != nil {
		return fmt.Errorf("REFER: %w", err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("REFER answered %d %s: %w", res.StatusCode, res.Reason, ErrNotSupported)
	}
	c.mu.Lock()
	c.replaceLegLocked(other, nil)
	c.mu.Unlock()
	c.byeLeg(ctx, other, "transferred", trace.SpanContext{})
	c.event(EventLegTransferred, l, func(e *Event) { e.Cause = "REFER to " + referTo })
	return nil
}

// rerouteTransfer calls the target from the B2BUA and bridges the party to it.
func (s *Server) rerouteTransfer(ctx context.Context, c *call, l, other *leg, t Target) error {
	l.mu.Lock()
	offer := l.remoteSDP
	l.mu.Unlock()
	user := l.remoteURI.User
	display := l.remoteDisplay
	if s.policyOf(ctx, l.dn) == dn.PolicyStrict {
		t.Policy = dn.PolicyStrict // the transferred party's strict DN binds the new pair
	}
	nl, f := c.dial(t, originateParams{callerUser: user, callerDisplay: display, body: offer, other: &l.dec}, nil)
	if nl == nil {
		cause := "no answer"
		if f != nil {
			cause = fmt.Sprintf("%d %s", f.status, f.cause)
		}
		return fmt.Errorf("transfer target %s: %s: %w", targetName(t), cause, ErrWrongState)
	}
	res := lastResponse(nl)
	c.confirm(nl, res)
	_ = nl.ack(nil)
	// Point the party's media at the new party.
	if err := l.reinvite(ctx, res.Body()); err != nil {
		c.byeLeg(ctx, nl, "transfer failed", trace.SpanContext{})
		return fmt.Errorf("re-INVITE party: %w", err)
	}
	c.mu.Lock()
	c.removeForkLocked(nl)
	if !c.replaceLegLocked(other, nl) {
		// The call changed while the target was called (a hang-up, another transfer).
		c.mu.Unlock()
		c.byeLeg(ctx, nl, "transfer failed", trace.SpanContext{})
		return fmt.Errorf("transfer: the call changed while the target answered: %w", ErrWrongState)
	}
	c.mu.Unlock()
	nl.setState(StateTalking)
	nl.mu.Lock()
	nl.localSDP = offer
	nl.mu.Unlock()
	c.byeLeg(ctx, other, "transferred", trace.SpanContext{})
	c.event(EventLegAnswered, nl, func(e *Event) { e.Status = 200 })
	c.event(EventLegTransferred, l, func(e *Event) { e.Cause = "to " + targetName(t) })
	return nil
}

func targetName(t Target) string {
	if t.DN != "" {
		return t.DN
	}
	return t.URI
}

// attendedTransfer joins the party on l with the far party of the consultation call.
func (s *Server) attendedTransfer(ctx context.Context, c *call, l, other *leg, consultID string) error {
	c2 := s.callByID(consultID)
	if c2 == nil {
		return fmt.Errorf("consult call %q: %w", consultID, ErrCallNotFound)
	}
	if c2 == c {
		return fmt.Errorf("consult call is the same call: %w", ErrWrongState)
	}
	c2.mu.Lock()
	st2 := c2.state
	// near is the transferor's leg in the consultation call (the one to its DN), far the
	// other one; when the DNs do not tell, the transferor placed the consultation (leg a).
	far, near := c2.b, c2.a
	if c2.b != nil && other.dn != "" && c2.b.dn == other.dn {
		far, near = c2.a, c2.b
	}
	c2.mu.Unlock()
	if err := s.checkJoin(ctx, c, l, far); err != nil { // R14, R19, R20 under strict
		return err
	}
	if far == nil || near == nil || (st2 != StateTalking && st2 != StateHeld) {
		return fmt.Errorf("consult call %s is %s: %w", consultID, st2, ErrWrongState)
	}
	l.mu.Lock()
	partySDP := l.remoteSDP
	l.mu.Unlock()
	far.mu.Lock()
	farSDP := far.remoteSDP
	far.mu.Unlock()
	if err := l.reinvite(ctx, farSDP); err != nil {
		return fmt.Errorf("re-INVITE party: %w", err)
	}
	if err := far.reinvite(ctx, partySDP); err != nil {
		_ = l.reinvite(ctx, partySDP)
		return fmt.Errorf("re-INVITE consult party: %w", err)
	}
	// Move far into call c, in place of the transferor.
	c2.mu.Lock()
	c2.replaceLegLocked(far, nil)
	c2.mu.Unlock()
	c.mu.Lock()
	if !c.replaceLegLocked(other, far) {
		// The transferor's call changed meanwhile: far stays out of it, and is released.
		c.mu.Unlock()
		c2.hangupLegs(ctx, []*leg{near, far}, "transfer failed")
		return fmt.Errorf("transfer: the call changed during the transfer: %w", ErrWrongState)
	}
	// The leg moves with its dialog, in the same step as it joins c: its session timer and
	// its in-dialog requests now act on call c (leg.call()). c.mu before far.mu is the
	// lock order.
	far.moveTo(c)
	c.mu.Unlock()
	c.byeLeg(ctx, other, "transferred", trace.SpanContext{})
	c2.hangupLegs(ctx, []*leg{near}, "transferred")
	c.event(EventLegTransferred, l, func(e *Event) { e.Cause = "joined with consult call " + consultID })
	return nil
}
