package signaling

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
)

// originateParams describe a new outbound leg.
type originateParams struct {
	sp     spec
	policy dn.Policy
	// other is the decision of the leg this one is bridged to (strict policy, R19/R20); nil
	// when there is none yet (a MakeCall's origin leg).
	other *sips.Decision
	// callerUser and callerDisplay go in From (caller identity carried over).
	callerUser, callerDisplay string
	maxForwards               int
	body                      []byte
	ctype                     string
	// from is the request on the other leg, to record header rewrites; nil for MakeCall.
	from    *sip.Request
	fromLeg *leg
}

// originate builds and sends the INVITE of a new outbound leg and starts a goroutine that
// posts its responses to results.
func (c *call) originate(p originateParams, results chan<- forkResult, dialDone <-chan struct{}) (*leg, *failure) {
	s := c.s
	sp := p.sp
	d, err := sips.DecideOutbound(sips.Outbound{
		Target: sp.uri, Registered: sp.registered, RegisteredSecure: sp.binding.Secure,
		RegisteredTransport: sp.binding.Transport, Style: sp.d.Style,
	})
	if err != nil {
		// R4: refuse to send rather than modify the request (RFC 3261 §19.1.5).
		return nil, &failure{status: 480, reason: "Temporarily Unavailable", cause: "target " + sp.uri.String() + ": " + err.Error(), outcome: OutcomeFailed}
	}
	if r := p.policyRefusal(d); r != nil {
		c.policyRefused(nil, r.Rule, "not dialled: "+sp.uri.String())
		return nil, &failure{status: r.Status, reason: r.Reason, cause: "policy strict (" + r.Rule + ")", warning: refusalWarning(r.Warning), outcome: OutcomeRejected}
	}
	l := &leg{id: c.newLegID(), c: c, dir: outbound, dn: sp.number, dec: d, state: StateInitiating}
	l.callID = sip.GenerateTagN(20) + "@" + s.local(d.Transport).host
	l.localTag = sip.GenerateTagN(16)
	target := sips.TargetURI(sp.uri, d, sp.d.Style)
	l.remoteTarget = target
	l.remoteURI = sip.Uri{Scheme: d.Scheme, User: target.User, Host: target.Host, Port: target.Port}
	la := s.local(d.Transport)
	caller := p.callerUser
	if caller == "" {
		caller = "sipsvc"
	}
	l.localURI = sip.Uri{Scheme: d.Scheme, User: caller, Host: la.host}
	l.localDisplay = p.callerDisplay
	if p.fromLeg != nil && p.fromLeg.dn != "" {
		// A call from a known DN (an authenticated extension or ACD position): its
		// display_name goes in From, whatever its phone sent. A trunk's callers keep their
		// own names.
		if cd, err := s.cfg.Directory.Lookup(c.ctx, p.fromLeg.dn); err == nil && cd.DisplayName != "" && cd.Type != dn.TypeTrunk && cd.Type != dn.TypeVoIPService && safeDisplayName(cd.DisplayName) {
			l.localDisplay = cd.DisplayName
		}
	}
	if f := c.checkLegOnWire(l, target); f != nil { // admit.go: the last check before writing
		return nil, f
	}
	l.localContact = s.contactFor(caller, d, sp.d.Style)
	l.transport = d.Transport
	switch {
	case len(sp.binding.Path) > 0:
		// RFC 3327 §5.4, RFC 3261 §8.1.2: the binding's Path is the INVITE's preloaded Route
		// set, and the INVITE goes to its first entry (loose routing). A sips top route keeps
		// the leg on TLS; on a sips leg sip entries become sips (R12, R13, R35).
		routes, err := sips.RouteSet(sp.binding.Path, d)
		if err != nil {
			return nil, &failure{status: 480, reason: "Temporarily Unavailable", cause: "binding " + err.Error()}
		}
		l.routeSet = routes
		l.routeTransportLocked()
	case sp.registered && sp.binding.Outbound():
		// RFC 5626 §5.3: only over the binding's flow, never its Contact (flow.go).
		dest, f := s.outboundDest(sp.binding, d.Transport)
		if f != nil {
			return nil, f
		}
		l.dest = dest
	case sp.registered && strings.EqualFold(sp.binding.Transport, d.Transport) && sp.binding.Source != "":
		// R33/P7: reach a device that registered over TCP/TLS through its own connection
		// while it is open, else its Contact; over UDP through its NAT binding (flow.go).
		l.dest = s.bindingDest(sp.binding, target, d.Transport)
	default:
		l.dest = hostPort(target, d.Transport)
	}
	l.peer = l.dest
	l.localContact = s.advertiseURI(l.localContact, l.transport, l.dest)
	l.localCSeq = 1
	l.ackCh = make(chan []byte, 1)

	inv := sip.NewRequest(sip.INVITE, target)
	inv.AppendHeader(s.via(l.transport))
	for _, r := range l.routeSet {
		inv.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	mf := sip.MaxForwardsHeader(70)
	if p.maxForwards > 0 {
		mf = sip.MaxForwardsHeader(p.maxForwards)
	}
	inv.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: l.localDisplay, Address: l.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	inv.AppendHeader(from)
	inv.AppendHeader(&sip.ToHeader{Address: l.remoteURI, Params: sip.NewParams()})
	cid := sip.CallIDHeader(l.callID)
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: l.localCSeq, MethodName: sip.INVITE})
	inv.AppendHeader(&sip.ContactHeader{Address: l.localContact})
	inv.AppendHeader(sip.NewHeader("Allow", allowed))
	inv.AppendHeader(sip.NewHeader("Supported", "replaces, 100rel, timer"))
	inv.AppendHeader(sip.NewHeader("Allow-Events", "talk, hold"))
	inv.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(s.cfg.SessionExpires/time.Second))))
	inv.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(s.cfg.MinSE/time.Second))))
	inv.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	if len(p.body) > 0 {
		ct := p.ctype
		if ct == "" {
			ct = "application/sdp"
		}
		inv.AppendHeader(sip.NewHeader("Content-Type", ct))
	}
	inv.SetBody(p.body)
	s.prepare(inv, l.transport, l.dest)
	l.secure = deriveSecure(l.transport, target) // R25, UAC side: sent over TLS to a sips R-URI
	l.invite = inv
	l.ctx, l.span = s.startLegSpan(c, l, inv)
	if sp.d.Traceparent {
		injectTraceparent(l.ctx, inv, l.span)
	}

	c.mu.Lock()
	c.forks = append(c.forks, l)
	c.mu.Unlock()
	s.registerLeg(l)
	c.decided(l)
	if p.from != nil && p.fromLeg != nil {
		c.recordLegRewrites(p.fromLeg, p.from, l, sp)
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(c.ctx))
	if l.transport == "TLS" && l.dest == hostPort(target, d.Transport) {
		dest, err := s.ensureTLS(ctx, target.Host, l.dest, sp.d.InsecureSkipVerify)
		if err != nil {
			cancel()
			f := transportFailure(err)
			c.releaseLegAs(l, f.outcomeOf(), f.cause, f.status)
			return nil, &f
		}
		l.dest = dest
		inv.SetDestination(dest)
	}
	if s.uaClosed.Load() { // as in send: no socket opened after the user agent closed
		cancel()
		f := transportFailure(fmt.Errorf("send INVITE: %w", ErrServerClosed))
		c.releaseLeg(l, f.cause, f.status)
		return nil, &f
	}
	var tx sip.ClientTransaction
	err = checkUDPRequestSize(inv) // RFC 3261 §18.1.1 (sipgo's own UDP limit is raised)
	if err == nil {
		tx, err = s.client.TransactionRequest(ctx, inv, prebuilt)
	}
	if err != nil {
		cancel()
		f := transportFailure(err)
		c.releaseLegAs(l, f.outcomeOf(), f.cause, f.status)
		return nil, &f
	}
	s.countOut(inv)
	l.mu.Lock()
	l.clientTx = tx
	l.mu.Unlock()
	// deliver hands a result to dial, unless dial has finished.
	deliver := func(r forkResult) bool {
		select {
		case results <- r:
			return true
		case <-dialDone:
			return false
		}
	}
	inviteTransport := l.transport // the INVITE's own transport; the dialog may change l.transport (R35)
	go func() {
		defer cancel()
		for {
			select {
			case res := <-tx.Responses():
				s.countIn(res)
				if res.StatusCode == 100 {
					continue
				}
				if res.IsSuccess() {
					l.mu.Lock()
					first := l.final == nil
					if first {
						l.final = res
					}
					l.mu.Unlock()
					if !first {
						continue
					}
					if !deliver(forkResult{l: l, res: res}) {
						// Another leg won, or the attempt ended: accept and hang up (RFC 3261 §9.1).
						c.ackAndBye(l, res)
						c.releaseLegAs(l, OutcomeCancelled, "answered after another leg", res.StatusCode)
					}
					// The transaction now only absorbs retransmitted 2xx (RFC 6026 Accepted
					// state, 64*T1): answer those with an ACK from the hook, and do not keep
					// a goroutine per call for it. Over TCP/TLS nothing is retransmitted.
					// The hook holds the leg weakly: the transaction stays for Timer M after
					// the call has ended, and must not keep the call in memory meanwhile.
					if inviteTransport == "UDP" {
						wl := weak.Make(l)
						tx.OnRetransmission(func(r *sip.Response) {
							if l := wl.Value(); l != nil && r.IsSuccess() {
								_ = s.write(s.inDialogAck(l, nil))
							}
						})
					} else {
						tx.Terminate()
					}
					return
				}
				if !deliver(forkResult{l: l, res: res}) && res.StatusCode >= 300 {
					c.releaseLeg(l, "ended after the attempt", res.StatusCode)
				}
				if res.StatusCode >= 300 {
					return
				}
			case <-tx.Done():
				l.mu.Lock()
				answered := l.final != nil
				l.mu.Unlock()
				if !answered {
					if err := tx.Err(); err != nil && !deliver(forkResult{l: l, err: err}) {
						c.releaseLeg(l, "ended after the attempt", 0)
					}
				}
				return
			}
		}
	}()
	return l, nil
}

// recordLegRewrites records, for the headers whose scheme or transport the new leg changes,
// the value on leg A and the value on the new leg, with the rule behind the change.
func (c *call) recordLegRewrites(a *leg, from *sip.Request, l *leg, sp spec) {
	up := l.dec.Scheme == "sips" && a.dec.Scheme != "sips"
	down := l.dec.Scheme != "sips" && a.dec.Scheme == "sips"
	rule := ""
	switch {
	case up:
		rule = "R8" // device requires sips: R-URI, From, To, Contact become sips
	case down:
		rule = "R14" // per-leg policy: the documented exception to "never downgrade"
	}
	inv := l.invite
	if rule != "" {
		c.rewrite(l, "From", from.From().Address.String(), inv.From().Address.String(), rule)
		c.rewrite(l, "To", from.To().Address.String(), inv.To().Address.String(), rule)
		if ct := from.Contact(); ct != nil {
			c.rewrite(l, "Contact", ct.Address.String(), inv.Contact().Address.String(), rule)
		}
	}
	// Request-URI: the configured target as it was, and as the leg writes it.
	ruleURI := rule
	if tp, ok := dn.TransportParam(sp.uri); ok && strings.EqualFold(tp, "tls") && l.dec.Scheme == "sips" {
		ruleURI = "R6" // transport=tls is never emitted on a sips URI
	}
	if l.dec.Rule == "P4" {
		ruleURI = "P4"
	}
	if ruleURI != "" {
		c.rewrite(l, "Request-URI", sp.uri.String(), inv.Recipient.String(), ruleURI)
	}
	av, lv := from.Via(), inv.Via()
	if av != nil && lv != nil && !strings.EqualFold(av.Transport, lv.Transport) {
		r := rule
		if r == "" {
			r = l.dec.Rule
		}
		if l.dec.Transport == sips.TLS {
			r = "R8"
		}
		c.rewrite(l, "Via", "SIP/2.0/"+strings.ToUpper(av.Transport), "SIP/2.0/"+lv.Transport, r)
	}
}

// earlyDialog records the early dialog a provisional response creates on an outbound leg
// and PRACKs it if the peer asked for reliability (RFC 3262).
func (c *call) earlyDialog(l *leg, res *sip.Response) {
	l.mu.Lock()
	_, firstRing := l.setStateLocked(StateRinging)
	if tag, _ := res.To().Params.Get("tag"); tag != "" {
		l.remoteTag = tag
	}
	if ct := res.Contact(); ct != nil {
		l.remoteTarget = *ct.Address.Clone()
	}
	if rr := recordRoutes(res); len(rr) > 0 {
		l.routeSet = reverse(rr)
		l.routeTransportLocked()
	}
	if len(res.Body()) > 0 {
		l.remoteSDP = res.Body()
	}
	if ev := headerValue(res, "Allow-Events"); ev != "" {
		l.events = ev
	}
	if al := headerValue(res, "Allow"); al != "" {
		l.allow = al
	}
	l.mu.Unlock()
	c.mu.Lock()
	if c.state == StateInitiating {
		c.state = StateRinging
	}
	c.mu.Unlock()
	if firstRing {
		c.event(EventLegRinging, l, func(e *Event) { e.Status = res.StatusCode })
	}
	if HasOption(res, "Require", "100rel") {
		c.s.wg.Add(1) // Serve waits for it before closing the user agent
		go func() {
			defer c.s.wg.Done()
			c.prack(l, res)
		}()
	}
}

// onProvisional relays a 18x from an originated leg to leg A.
func (c *call) onProvisional(a, l *leg, res *sip.Response) {
	s := c.s
	a.mu.Lock()
	firstRing := !a.rang
	a.rang = true
	a.mu.Unlock()
	hdrs := []sip.Header{}
	if a.needs100rel {
		hdrs = append(hdrs, c.reliableHeaders(a)...)
	}
	if err := s.respond(a, a.serverTx, a.invite, res.StatusCode, res.Reason, res.Body(), contentType(res), hdrs...); err != nil {
		c.log(slog.LevelDebug, "relay provisional failed", "error", err)
	}
	if firstRing {
		c.event(EventLegRinging, a, func(e *Event) { e.Status = res.StatusCode })
	}
}

// prack acknowledges a reliable provisional response on an outbound leg (RFC 3262 §7.2).
func (c *call) prack(l *leg, res *sip.Response) {
	rseq := headerValue(res, "RSeq")
	if rseq == "" {
		return
	}
	cseq := res.CSeq()
	req := c.s.inDialogRequest(l, sip.PRACK, nil, "")
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%s %d %s", strings.TrimSpace(rseq), cseq.SeqNo, cseq.MethodName)))
	ctx, cancel := context.WithTimeout(l.ctx, 32*time.Second)
	defer cancel()
	if _, err := c.s.sendOn(ctx, l, req, trace.SpanContext{}); err != nil {
		c.log(slog.LevelDebug, "PRACK failed", "leg", l.id, "error", err)
	}
}

// answer completes the call: ACK the winning leg, answer leg A with its SDP.
func (c *call) answer(a, b *leg, res *sip.Response) error {
	s := c.s
	c.confirm(b, res)
	c.mu.Lock()
	c.b = b
	c.removeForkLocked(b)
	c.state = StateTalking
	c.answered = time.Now()
	c.mu.Unlock()
	b.mu.Lock()
	b.setStateLocked(StateTalking)
	b.localSDP = b.invite.Body()
	bRemote := b.remoteSDP
	b.mu.Unlock()
	a.mu.Lock()
	a.setStateLocked(StateTalking)
	a.localSDP = bRemote
	a.mu.Unlock()
	lateOffer := len(a.invite.Body()) == 0

	if !lateOffer {
		if err := s.ack(b, nil); err != nil {
			c.log(slog.LevelWarn, "ACK to B failed", "error", err)
		}
	}
	// Session timers (RFC 4028) on both legs.
	hdrs := c.setupTimers(a, b, res)
	hdrs = append(hdrs,
		sip.NewHeader("Allow", allowed),
		sip.NewHeader("Supported", "replaces, 100rel, timer"),
		sip.NewHeader("Allow-Events", "talk, hold, conference"))
	if ct := res.Contact(); ct != nil {
		rule := "R10"
		if a.dec.Scheme == "sips" {
			rule = "R22"
		}
		if ct.Address.Scheme != a.localContact.Scheme {
			c.rewrite(a, "Contact", ct.Address.String(), a.localContact.String(), rule)
		}
	}
	err := s.respond(a, a.serverTx, a.invite, 200, "OK", res.Body(), contentType(res), hdrs...)
	c.event(EventLegAnswered, b, func(e *Event) { e.Status = 200 })
	c.event(EventLegAnswered, a, func(e *Event) { e.Status = 200 })
	markAnswered(b.span, 200)
	markAnswered(a.span, 200)
	s.connAttrs(b)
	if lateOffer {
		s.wg.Add(1) // Serve waits for it before closing the user agent
		go func() {
			defer s.wg.Done()
			select {
			case sdp := <-a.ackCh:
				_ = s.ack(b, sdp)
			case <-time.After(32 * time.Second):
				c.hangup(context.Background(), nil, "no ACK from caller")
			case <-c.done:
			}
		}()
	}
	return err
}

// inDialogAck builds the ACK for a 2xx on an outbound leg: CSeq of the INVITE (§13.2.2.4).
func (s *Server) inDialogAck(l *leg, body []byte) *sip.Request {
	ack := s.inDialogRequest(l, sip.ACK, body, "application/sdp")
	l.mu.Lock()
	seq := l.invite.CSeq().SeqNo
	if l.reinviteSeq != 0 {
		seq = l.reinviteSeq
	}
	l.mu.Unlock()
	ack.CSeq().SeqNo = seq
	return ack
}

// ackAndBye accepts a 2xx we no longer want and ends that leg.
func (c *call) ackAndBye(l *leg, res *sip.Response) {
	s := c.s
	c.confirm(l, res)
	_ = s.ack(l, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = s.sendOn(ctx, l, s.inDialogRequest(l, sip.BYE, nil, ""), trace.SpanContext{})
}

// cancelForks CANCELs every unanswered outbound leg except keep; o is how those legs end.
func (c *call) cancelForks(keep *leg, cause string, o Outcome) {
	c.mu.Lock()
	forks := append([]*leg(nil), c.forks...)
	c.mu.Unlock()
	var todo []*leg
	for _, f := range forks {
		f.mu.Lock()
		if f != keep && f.final == nil {
			f.cause = cause // kept by releaseLeg
			f.setOutcomeLocked(o)
			todo = append(todo, f)
		}
		f.mu.Unlock()
	}
	for _, f := range todo {
		c.s.wg.Add(1) // Serve waits for it before closing the user agent
		go func() {
			defer c.s.wg.Done()
			c.sendCancel(f)
		}()
	}
}

// sendCancel sends CANCEL for an outbound INVITE (RFC 3261 §9.1): same branch, R-URI,
// Call-ID, From, To and CSeq number.
func (c *call) sendCancel(l *leg) {
	s := c.s
	inv := l.invite
	cancelReq := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	cancelReq.AppendHeader(sip.HeaderClone(inv.Via()))
	for _, h := range inv.GetHeaders("Route") {
		cancelReq.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	cancelReq.AppendHeader(&mf)
	cancelReq.AppendHeader(sip.HeaderClone(inv.From()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.To()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancelReq.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancelReq.SetBody(nil)
	s.prepare(cancelReq, inv.Transport(), inv.Destination()) // where the INVITE went (§9.1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if l.span != nil {
		l.span.AddEvent(sc.EventCANCEL)
	}
	if _, err := s.send(ctx, cancelReq, nil); err != nil {
		c.log(slog.LevelDebug, "CANCEL failed", "leg", l.id, "error", err)
	}
}

// releaseLeg marks a leg released without signalling: unregistered, a leg_released event, its
// span ended. A cause or outcome already set on the leg (e.g. by cancelForks) is kept.
// Idempotent.
func (c *call) releaseLeg(l *leg, cause string, status int) {
	l.mu.Lock()
	prev, ok := l.setStateLocked(StateReleased)
	if !ok {
		l.mu.Unlock()
		return
	}
	if l.cause == "" {
		l.cause = cause
	}
	cause = l.cause
	l.outcome = legOutcome(l.outcome, prev, status)
	outcome := l.outcome
	l.mu.Unlock()
	c.s.unregisterLeg(l)
	c.event(EventLegReleased, l, func(e *Event) { e.Cause, e.Status, e.Outcome = cause, status, outcome })
	endLegSpan(l.span, status, cause, outcome, l.dir == outbound)
}

// finish ends a call that never got answered: it releases the unanswered forks, then leg A
// (after it got its final response; nil when there is none, as for a MakeCall whose origin
// never answered), then ends the call.
func (c *call) finish(a *leg, cause string, status int) {
	c.mu.Lock()
	forks := append([]*leg(nil), c.forks...)
	c.state = StateReleased
	c.mu.Unlock()
	for _, f := range forks {
		c.releaseLeg(f, cause, status)
	}
	if a != nil {
		c.mu.Lock()
		o := c.outcome // set by the path that failed the call (fail), if it knew why
		c.mu.Unlock()
		if o != "" {
			a.setOutcome(o)
		}
		c.releaseLeg(a, cause, status)
	}
	c.end(cause, status)
}

// end closes the call once: removes it, ends the root span, emits call_ended.
func (c *call) end(cause string, status int) {
	c.endOnce.Do(func() {
		c.log(slog.LevelInfo, "call ended", "cause", cause, "status", status, "caller", c.caller, "dialed", c.dialed)
		// Remove before closing done: ReleaseCall waits on done, and its caller may look
		// the call up at once.
		c.s.removeCall(c)
		close(c.done)
		c.stopRetransmits()  // after done: see retx.start
		c.releaseAdmission() // after done: see admitted
		outcome, dir := c.endOutcome(status)
		c.event(EventCallEnded, nil, func(e *Event) { e.Cause, e.Status, e.Outcome, e.Direction = cause, status, outcome, dir })
		endCallSpan(c.span, status, cause, outcome, dir)
	})
}

// safeDisplayName reports whether v can go between the quotes of a From display name as it
// is: no quote, backslash or control character (sipgo writes it unescaped).
func safeDisplayName(v string) bool {
	for _, r := range v {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
