package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// onInvite handles every INVITE: a new call, or a re-INVITE within a dialog.
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.onInDialog(req, tx)
		return
	}
	// 100 Trying at once (RFC 3261 §8.2.6.1): stops retransmissions while we route.
	s.reply(tx, req, 100, "Trying")

	if s.draining.Load() {
		s.reply(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 0 {
		s.reply(tx, req, 483, "Too Many Hops")
		return
	}
	if s.refuseLiveCallID(req, tx) {
		return
	}
	dec, err := sips.DecideInbound(inboundOf(req))
	if err != nil {
		s.rejectInbound(req, tx, err)
		return
	}
	se := s.clampSessionExpires(parseSessionExpires(req)) // parsed once for the call: leg A keeps it for setupTimers
	if se.interval > 0 && se.interval < s.cfg.MinSE {
		// RFC 4028 §8.1: too small an interval gets 422 with our Min-SE.
		s.reply(tx, req, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", strconv.Itoa(int(s.cfg.MinSE/time.Second))))
		return
	}
	adm, ok := s.admitInvite(req, tx) // admit.go: caller class, anonymous gate, caps
	if !ok {
		return
	}
	if !s.enter() { // shutting down: no new call goroutine
		s.adm.release(adm.source, adm.dns)
		s.reply(tx, req, 503, "Service Unavailable")
		return
	}
	defer s.wg.Done()
	c, a := s.newInboundCall(req, tx, dec, adm.caller.DN, se)
	s.admitted(c, adm)
	c.runInbound(a)
}

// rejectInbound answers a request whose URIs break the sips rules.
func (s *Server) rejectInbound(req *sip.Request, tx sip.ServerTransaction, err error) {
	switch {
	case errors.Is(err, sips.ErrUnsupportedScheme):
		s.reply(tx, req, 416, "Unsupported URI Scheme") // R18
	case errors.Is(err, sips.ErrSIPSOverInsecure):
		// R4/T6/P11: rather fail than be reached without TLS; 480 + Warning 380 (R19).
		s.reply(tx, req, 480, "Temporarily Unavailable", withWarning(380, "SIPS Not Allowed"))
	case errors.Is(err, sips.ErrInconsistentContact):
		s.reply(tx, req, 400, "Bad Request", withWarning(399, "sips Request-URI with a sip Contact (R21)"))
	default:
		s.reply(tx, req, 400, "Bad Request", withWarning(399, err.Error()))
	}
}

func inboundOf(req *sip.Request) sips.Inbound {
	in := sips.Inbound{RequestURI: req.Recipient, Transport: req.Transport()}
	if rr := req.RecordRoute(); rr != nil {
		u := rr.Address
		in.TopRecordRoute = &u
	}
	if ct := req.Contact(); ct != nil {
		u := ct.Address
		in.Contact = &u
	}
	return in
}

// newInboundCall creates the call and its leg A from an INVITE, with the INVITE's parsed
// Session-Expires.
func (s *Server) newInboundCall(req *sip.Request, tx sip.ServerTransaction, dec sips.Decision, caller *dn.DN, se sessionExpires) (*call, *leg) {
	c := &call{
		id: s.newCallID(), s: s, created: time.Now(), state: StateInitiating,
		caller: req.From().Address.User, dialed: dn.NormalizeUser(req.Recipient.User), // RFC 3261 §19.1.4
		cancelled: make(chan struct{}), done: make(chan struct{}),
	}
	c.ctx, c.span = s.startCallSpan(context.Background(), req, c)
	a := &leg{id: "A", c: c, dir: inbound, dec: dec, state: StateRinging}
	if caller != nil {
		a.dn = caller.Number
	}
	a.callID = string(*req.CallID())
	a.remoteTag, _ = req.From().Params.Get("tag")
	a.localTag = sip.GenerateTagN(16)
	a.remoteURI = *req.From().Address.Clone()
	a.remoteDisplay = req.From().DisplayName
	a.localURI = *req.To().Address.Clone()
	a.localDisplay = req.To().DisplayName
	if ct := req.Contact(); ct != nil {
		a.remoteTarget = *ct.Address.Clone()
	} else {
		a.remoteTarget = *req.From().Address.Clone()
	}
	a.routeSet = recordRoutes(req)
	a.localCSeq = uint32(time.Now().UnixNano()&0x7fff) + 1
	a.remoteCSeq, a.remoteCSeqSet = req.CSeq().SeqNo, true  // RFC 3261 §12.1.1
	a.secure = deriveSecure(req.Transport(), req.Recipient) // R25, UAS side
	a.acked = make(chan struct{})
	a.transport = strings.ToUpper(req.Transport())
	a.peer = req.Source()
	a.localContact = s.advertiseURI(s.contactFor(c.dialed, dec, ""), a.transport, a.peer)
	a.setDialogDestLocked(a.peer) // after the Contact: a sips top route makes it sips (R9)
	a.invite = req
	a.serverTx = tx
	a.remoteSDP = req.Body()
	a.allow = headerValue(req, "Allow")
	a.events = headerValue(req, "Allow-Events")
	a.needs100rel = HasOption(req, "Require", "100rel")
	a.se = se
	a.ctx, a.span = s.startLegSpan(c, a, req)
	c.a = a
	s.addCall(c)
	if !s.registerLeg(a) {
		// refuseLiveCallID let it through, and another INVITE with its Call-ID won the race:
		// the live dialog keeps its entry, this call's in-dialog requests get 481.
		c.log(slog.LevelWarn, "Call-ID already live; leg A not reachable in-dialog", "sip_call_id", a.callID)
	}
	// The server transaction outlives the call by up to 64*T1 (RFC 6026 Timer L); a weak
	// pointer keeps it from holding the whole call in memory that long.
	wa := weak.Make(a)
	tx.OnCancel(func(*sip.Request) {
		if a := wa.Value(); a != nil {
			a.span.AddEvent(sc.EventCANCEL)
			a.call().cancel()
		}
	})
	c.event(EventCallCreated, nil, nil)
	c.decided(a)
	c.log(slog.LevelDebug, "call started", "caller", c.caller, "dialed", c.dialed, "scheme", dec.Scheme, "transport", dec.Transport, "source", a.peer)
	return c, a
}

// setDialogDestLocked sets, once, where in-dialog requests to leg A's peer go: with a route
// set, its top entry decides transport and address (routeTransportLocked: R35, P6); without,
// over TCP/TLS the connection the peer opened from source (RFC 3261 §18.2.2, R33, P7), over
// UDP the remote target. The caller holds l.mu (or owns the leg alone).
func (l *leg) setDialogDestLocked(source string) {
	source = l.sipsOverTLSLocked(source) // R11, R37 (policy.go)
	switch {
	case len(l.routeSet) > 0:
		l.routeTransportLocked()
	case l.transport != "UDP" && source != "":
		l.dest = source
	default:
		l.dest = hostPort(l.remoteTarget, l.transport)
	}
}

// contactFor writes our Contact for a leg: user@our host, the leg's scheme, our port for the
// transport the peer must use to reach us (TLS for sips, R3).
func (s *Server) contactFor(user string, d sips.Decision, style dn.Style) sip.Uri {
	tp := d.Transport
	if d.Scheme == "sips" {
		tp = "TLS"
	}
	la := s.local(tp)
	if user == "" {
		user = "sipsvc"
	}
	return sips.ContactURI(user, la.host, la.port, d, style)
}

// failure is why an originated attempt did not answer.
type failure struct {
	status  int
	reason  string
	cause   string // for the Reason header text
	warning string
	outcome Outcome // how the call ends if this failure ends it; "" means by status
}

func (f failure) headers() []sip.Header {
	var h []sip.Header
	if f.cause != "" {
		h = append(h, sip.NewHeader("Reason", fmt.Sprintf("SIP;cause=%d;text=%q", f.status, f.cause)))
	}
	if f.warning != "" {
		h = append(h, sip.NewHeader("Warning", f.warning))
	}
	return h
}

// better reports whether f should replace the current best failure (RFC 3261 §16.7 step 6,
// simplified: 6xx wins, then the first non-timeout 4xx/5xx).
func (f failure) better(cur *failure) bool {
	if cur == nil {
		return true
	}
	if cur.status >= 600 {
		return false
	}
	if f.status >= 600 {
		return true
	}
	return cur.status == 408 || cur.status == 503 && f.status != 408
}

// runInbound routes the call and tries the targets until one answers, A cancels, or all fail.
func (c *call) runInbound(a *leg) {
	s := c.s
	rr := RouteRequest{
		CallID: c.id, SIPCallID: a.callID, Caller: c.caller, CallerDisplay: a.remoteDisplay,
		Dialed: c.dialed, RequestURI: a.invite.Recipient.String(), Inbound: a.decision(), Source: a.peer,
	}
	if s.cfg.Router != nil {
		rr.Headers = selectedHeaders(a.invite) // only a routing service reads them
	}
	c.describeCaller(&rr)
	d, ok := c.admitTargets(a, s.route(c.ctx, c, rr))
	if !ok {
		return
	}
	if d.Reject != nil {
		reason := d.Reject.Reason
		if reason == "" {
			reason = statusText(d.Reject.Status)
		}
		f := failure{status: d.Reject.Status, reason: reason, cause: "rejected by " + d.Source}
		var hdrs []sip.Header
		if d.Reject.Status == 503 {
			hdrs = append(hdrs, sip.NewHeader("Retry-After", "30"))
		}
		c.fail(a, f, hdrs...)
		return
	}
	var best *failure
	for _, t := range d.Targets {
		if c.isCancelled() {
			break
		}
		answered, f := c.tryTarget(a, t)
		if answered {
			return
		}
		if f != nil && f.better(best) {
			best = f
		}
		if f != nil && f.status >= 600 {
			break
		}
	}
	if c.isCancelled() {
		// A CANCEL from the caller was answered 487 by its server transaction; a release by
		// the API was not: answer it here (a 487 on an already cancelled transaction is ignored).
		c.fail(a, failure{status: 487, reason: "Request Terminated", cause: "cancelled"})
		return
	}
	if best == nil {
		best = &failure{status: 480, reason: "Temporarily Unavailable", cause: "no target answered", outcome: OutcomeNoAnswer}
	}
	c.fail(a, *best)
}

// fail sends the final failure to leg A and ends the call.
func (c *call) fail(a *leg, f failure, extra ...sip.Header) {
	if f.reason == "" {
		f.reason = statusText(f.status)
	}
	hdrs := append(c.failureHeaders(f), extra...)
	if err := c.s.respond(a, a.serverTx, a.invite, f.status, f.reason, nil, "", hdrs...); err != nil {
		c.log(slog.LevelDebug, "final response to A failed", "error", err)
	}
	c.setOutcome(f.outcomeOf())
	c.finish(a, f.cause, f.status)
}

func selectedHeaders(req *sip.Request) map[string]string {
	out := map[string]string{}
	for _, n := range []string{"From", "To", "P-Asserted-Identity", "User-Agent", "Diversion", "Referred-By"} {
		if v := headerValue(req, n); v != "" {
			out[n] = v
		}
	}
	return out
}

// spec is one place an originated leg goes.
type spec struct {
	uri        sip.Uri
	number     string
	d          dn.DN
	registered bool
	binding    dn.Binding
}

// resolve turns a target into the URIs to fork to (all live bindings of a self-registered DN).
func (c *call) resolve(t Target) ([]spec, *failure) {
	s := c.s
	if t.DN != "" {
		d, err := s.cfg.Directory.Lookup(c.ctx, t.DN)
		if err != nil {
			if errors.Is(err, dn.ErrNotFound) {
				return nil, &failure{status: 404, reason: "Not Found", cause: "unknown DN " + t.DN}
			}
			return nil, &failure{status: 500, reason: "Server Internal Error", cause: "directory: " + err.Error()}
		}
		if d.Disabled {
			return nil, &failure{status: 480, reason: "Temporarily Unavailable", cause: "DN " + t.DN + " disabled"}
		}
		if !d.SelfRegistered() {
			u, err := dn.ParseContact(d.Contact)
			if err != nil {
				return nil, &failure{status: 500, reason: "Server Internal Error", cause: "DN contact: " + err.Error()}
			}
			return []spec{{uri: u, number: d.Number, d: d}}, nil
		}
		bs, err := s.cfg.Directory.Bindings(c.ctx, d.Number)
		if err != nil {
			return nil, &failure{status: 500, reason: "Server Internal Error", cause: "bindings: " + err.Error()}
		}
		var out []spec
		for _, b := range bs {
			var u sip.Uri
			if err := sip.ParseUri(b.Contact, &u); err != nil {
				continue
			}
			out = append(out, spec{uri: u, number: d.Number, d: d, registered: true, binding: b})
		}
		out = s.pickFlows(out) // RFC 5626 §5.3: one flow per outbound device (flow.go)
		if len(out) == 0 {
			return nil, &failure{status: 480, reason: "Temporarily Unavailable", cause: "DN " + t.DN + " not registered"}
		}
		return out, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(t.URI, &u); err != nil || (u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
		return nil, &failure{status: 404, reason: "Not Found", cause: "bad target URI " + t.URI}
	}
	return []spec{{uri: u, number: u.User}}, nil
}

// forkResult is a response or error from one originated leg.
type forkResult struct {
	l   *leg
	res *sip.Response
	err error
}

// tryTarget dials t and, when a leg answers, completes the call with leg A.
func (c *call) tryTarget(a *leg, t Target) (bool, *failure) {
	mf := 70
	if amf := a.invite.MaxForwards(); amf != nil {
		mf = int(amf.Val()) - 1 // decremented across the B2BUA
	}
	tmpl := originateParams{
		other: &a.dec, callerUser: c.caller, callerDisplay: a.remoteDisplay,
		maxForwards: mf, body: a.remoteSDP, ctype: contentType(a.invite), from: a.invite, fromLeg: a,
	}
	winner, f := c.dial(t, tmpl, func(l *leg, res *sip.Response) { c.onProvisional(a, l, res) })
	if winner == nil {
		return false, f
	}
	if err := c.answer(a, winner, lastResponse(winner)); err != nil {
		c.log(slog.LevelWarn, "answer failed", "error", err)
	}
	return true, nil
}

// dial originates one leg per spec of t in parallel (all live bindings of a self-registered
// DN) and waits for the first 2xx, the ring timeout, the call's cancellation, or all of them
// failing. The losers are CANCELled. onProv sees every provisional response.
func (c *call) dial(t Target, tmpl originateParams, onProv func(*leg, *sip.Response)) (*leg, *failure) {
	s := c.s
	specs, f := c.resolve(t)
	if f != nil {
		return nil, f
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = s.cfg.RingTimeout
	}
	results := make(chan forkResult)
	dialDone := make(chan struct{})
	defer close(dialDone)
	var forks []*leg
	var best *failure
	for _, sp := range specs {
		p := tmpl
		p.sp = sp
		p.policy = t.Policy
		if p.policy == dn.PolicyDefault {
			p.policy = sp.d.Policy
		}
		if p.policy == dn.PolicyDefault {
			p.policy = s.cfg.Policy
		}
		l, f := c.originate(p, results, dialDone)
		if f != nil {
			if f.better(best) {
				best = f
			}
			continue
		}
		forks = append(forks, l)
	}
	if len(forks) == 0 {
		return nil, best
	}
	ring := time.NewTimer(timeout)
	defer ring.Stop()
	pending := len(forks)
	var winner *leg
	for pending > 0 && winner == nil {
		select {
		case r := <-results:
			if r.err != nil {
				pending--
				ff := transportFailure(r.err)
				c.releaseLegAs(r.l, ff.outcomeOf(), ff.cause, ff.status)
				if ff.better(best) {
					best = &ff
				}
				continue
			}
			switch {
			case r.res.IsProvisional():
				c.earlyDialog(r.l, r.res)
				if onProv != nil {
					onProv(r.l, r.res)
				}
			case r.res.IsSuccess():
				winner = r.l
			default:
				pending--
				ff := failure{status: r.res.StatusCode, reason: r.res.Reason, cause: fmt.Sprintf("leg %s answered %d", r.l.id, r.res.StatusCode)}
				if w := headerValue(r.res, "Warning"); w != "" {
					ff.warning = w
				}
				c.releaseLeg(r.l, ff.cause, ff.status)
				if ff.better(best) {
					best = &ff
				}
			}
		case <-ring.C:
			c.cancelForks(nil, "ring timeout", OutcomeNoAnswer)
			c.drain(results, &pending)
			return nil, &failure{status: 408, reason: "Request Timeout", cause: "ring timeout", outcome: OutcomeNoAnswer}
		case <-c.cancelled:
			c.cancelForks(nil, "cancelled", OutcomeCancelled)
			c.drain(results, &pending)
			return nil, &failure{status: 487, reason: "Request Terminated", cause: "cancelled", outcome: OutcomeCancelled}
		}
	}
	if winner == nil {
		return nil, best
	}
	c.cancelForks(winner, "answered elsewhere", OutcomeCancelled)
	return winner, nil
}

// drain waits briefly for cancelled forks to finish so their spans and events close.
func (c *call) drain(results chan forkResult, pending *int) {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for *pending > 0 {
		select {
		case r := <-results:
			if r.err != nil || !r.res.IsProvisional() {
				*pending--
				if r.err == nil && r.res.IsSuccess() {
					// A 2xx raced our CANCEL: accept and hang up that leg (RFC 3261 §9.1).
					c.ackAndBye(r.l, r.res)
					c.releaseLegAs(r.l, OutcomeCancelled, "answered after cancel", r.res.StatusCode)
					continue
				}
				code := 487
				if r.res != nil {
					code = r.res.StatusCode
				}
				c.releaseLeg(r.l, "cancelled", code)
			}
		case <-deadline.C:
			return
		}
	}
}

func short(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}

// lastResponse returns the 2xx stored on a winning leg.
func lastResponse(l *leg) *sip.Response {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.final
}
