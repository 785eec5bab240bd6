package signaling

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"
)

// Clock is the time source of the session timers (RFC 4028); tests pass a fake one and
// advance it. Config.Clock nil means the real clock.
type Clock interface {
	// AfterFunc calls f in its own goroutine after d, unless the returned timer is
	// stopped first.
	AfterFunc(d time.Duration, f func()) ClockTimer
}

// ClockTimer is a timer made by a Clock.
type ClockTimer interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// realClock is the Clock of time.AfterFunc.
type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) ClockTimer { return time.AfterFunc(d, f) }

// sessionTimer runs RFC 4028 on one leg: either we refresh the session every interval/2, or
// we expect the peer to and end the call when no refresh comes in time. It acts on the
// call the leg belongs to when it fires (leg.call()), so a leg moved by an attended
// transfer ends its new call. Each arming has a generation: a callback that fires for an
// older generation (it was already running when a refresh re-armed the timer) does
// nothing, so a timer that fired for an older deadline never ends a refreshed session.
type sessionTimer struct {
	l         *leg
	clock     Clock
	interval  time.Duration
	weRefresh bool

	mu      sync.Mutex // guards t, gen and stopped
	t       ClockTimer
	gen     uint64
	stopped bool
}

// sessionExpires is a parsed Session-Expires header (RFC 4028 §4).
type sessionExpires struct {
	// interval is the delta-seconds; 0 when the header is absent or its value is not a
	// positive number.
	interval time.Duration
	// refresher is the refresher parameter in lower case ("uac", "uas"), or "". It is read
	// even when interval is 0.
	refresher string
}

// parseSessionExpires reads Session-Expires (or its compact form x) once: the interval and
// the refresher parameter.
func parseSessionExpires(m interface{ GetHeader(string) sip.Header }) sessionExpires {
	v := headerValue(m, "Session-Expires")
	if v == "" {
		v = headerValue(m, "x")
	}
	var se sessionExpires
	delta, params, _ := strings.Cut(v, ";")
	if n, err := strconv.Atoi(strings.TrimSpace(delta)); err == nil && n > 0 {
		se.interval = time.Duration(n) * time.Second
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "refresher") {
			se.refresher = strings.ToLower(val)
			break
		}
	}
	return se
}

// setupTimers starts session timers on both legs after answer and returns the headers for
// leg A's 2xx. Leg A's Session-Expires is the one onInvite parsed (a.se) (the seed's example: Session-Expires: 1800;refresher=uas).
func (c *call) setupTimers(a, b *leg, res *sip.Response) []sip.Header {
	var hdrs []sip.Header
	se := a.se.interval // parsed once, by onInvite
	if se > 0 || HasOption(a.invite, "Supported", "timer") {
		if se <= 0 {
			se = c.s.cfg.SessionExpires
		}
		if se < c.s.cfg.MinSE {
			se = c.s.cfg.MinSE
		}
		weRefresh := a.se.refresher != "uac"
		at := c.newTimer(a, se, weRefresh)
		a.mu.Lock()
		a.timer = at
		a.mu.Unlock()
		hdrs = append(hdrs, at.header())
		if !weRefresh {
			hdrs = append(hdrs, sip.NewHeader("Require", "timer"))
		}
	}
	if bse := parseSessionExpires(res); bse.interval > 0 {
		bt := c.newTimer(b, bse.interval, bse.refresher != "uas")
		b.mu.Lock()
		b.timer = bt
		b.mu.Unlock()
	}
	return hdrs
}

func (c *call) newTimer(l *leg, interval time.Duration, weRefresh bool) *sessionTimer {
	t := &sessionTimer{l: l, clock: c.s.cfg.Clock, interval: interval, weRefresh: weRefresh}
	if t.clock == nil {
		t.clock = realClock{}
	}
	t.arm()
	return t
}

// header is the Session-Expires header for a 2xx on this leg (we are UAS on leg A).
func (t *sessionTimer) header() sip.Header {
	ref := "uac"
	if t.weRefresh == (t.l.dir == inbound) {
		ref = "uas"
	}
	return sip.NewHeader("Session-Expires", strconv.Itoa(int(t.interval/time.Second))+";refresher="+ref)
}

func (t *sessionTimer) arm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if t.t != nil {
		t.t.Stop()
	}
	t.gen = t.l.timerGen.Add(1)
	gen := t.gen
	if t.weRefresh {
		t.t = t.clock.AfterFunc(t.interval/2, func() { t.fire(gen, t.refresh) })
		return
	}
	// RFC 4028 §10: BYE at interval - min(32s, interval/3) without a refresh.
	grace := t.interval / 3
	if grace > 32*time.Second {
		grace = 32 * time.Second
	}
	t.t = t.clock.AfterFunc(t.interval-grace, func() { t.fire(gen, t.expire) })
}

// fire runs f for the arming of generation gen, unless the timer was stopped or re-armed
// since (the generation guard).
func (t *sessionTimer) fire(gen uint64, f func()) {
	t.mu.Lock()
	current := !t.stopped && t.gen == gen
	t.mu.Unlock()
	if !current {
		return
	}
	s := t.l.call().s
	// Serve waits for the refresh or the hang-up before closing the user agent; once
	// shutdown has begun, Serve ends the call itself (and an Add here would race its wait).
	if !s.enter() {
		return
	}
	defer s.wg.Done()
	f()
}

// refreshed is called when the peer refreshed the session.
func (t *sessionTimer) refreshed() {
	if !t.weRefresh {
		t.arm()
	}
}

func (t *sessionTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.t != nil {
		t.t.Stop()
	}
}

func (t *sessionTimer) expire() {
	c := t.l.call()
	c.log(slog.LevelInfo, "session timer expired", "leg", t.l.id)
	c.hangup(context.Background(), nil, "session timer expired on leg "+t.l.id)
}

// refresh sends UPDATE (when the peer allows it) or a re-INVITE with the last SDP we sent.
func (t *sessionTimer) refresh() {
	l := t.l
	c := l.call()
	s := c.s
	method := sip.INVITE
	l.mu.Lock()
	allowsUpdate := listHas(l.allow, "UPDATE")
	sdp := l.localSDP
	l.mu.Unlock()
	if allowsUpdate {
		method = sip.UPDATE
	}
	var body []byte
	if method == sip.INVITE {
		body = sdp
	}
	req := s.inDialogRequest(l, method, body, "application/sdp")
	req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(t.interval/time.Second))+";refresher=uac"))
	if method == sip.INVITE {
		l.mu.Lock()
		l.reinviteSeq = req.CSeq().SeqNo
		l.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	res, err := s.sendOn(ctx, l, req, trace.SpanContext{})
	if err != nil || res.StatusCode == 408 || res.StatusCode == 481 {
		l.call().hangup(context.Background(), nil, "session refresh failed on leg "+l.id)
		return
	}
	if method == sip.INVITE && res.IsSuccess() {
		_ = l.ack(nil)
	}
	t.arm()
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// sessionTimer returns the leg's session timer, or nil.
func (l *leg) sessionTimer() *sessionTimer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.timer
}
