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

// sessionTimer runs RFC 4028 on one leg: either we refresh the session every interval/2, or
// we expect the peer to and end the call when no refresh comes in time.
type sessionTimer struct {
	c         *call
	l         *leg
	interval  time.Duration
	weRefresh bool

	mu      sync.Mutex // guards t and stopped
	t       *time.Timer
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
		c.mu.Lock()
		a.timer = at
		c.mu.Unlock()
		hdrs = append(hdrs, at.header())
		if !weRefresh {
			hdrs = append(hdrs, sip.NewHeader("Require", "timer"))
		}
	}
	if bse := parseSessionExpires(res); bse.interval > 0 {
		bt := c.newTimer(b, bse.interval, bse.refresher != "uas")
		c.mu.Lock()
		b.timer = bt
		c.mu.Unlock()
	}
	return hdrs
}

func (c *call) newTimer(l *leg, interval time.Duration, weRefresh bool) *sessionTimer {
	t := &sessionTimer{c: c, l: l, interval: interval, weRefresh: weRefresh}
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
	if t.weRefresh {
		t.t = time.AfterFunc(t.interval/2, t.refresh)
		return
	}
	// RFC 4028 §10: BYE at interval - min(32s, interval/3) without a refresh.
	grace := t.interval / 3
	if grace > 32*time.Second {
		grace = 32 * time.Second
	}
	t.t = time.AfterFunc(t.interval-grace, t.expire)
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
	t.c.log(slog.LevelInfo, "session timer expired", "leg", t.l.id)
	t.c.hangup(context.Background(), nil, "session timer expired on leg "+t.l.id)
}

// refresh sends UPDATE (when the peer allows it) or a re-INVITE with the last SDP we sent.
func (t *sessionTimer) refresh() {
	s, l, c := t.c.s, t.l, t.c
	method := sip.INVITE
	c.mu.Lock()
	allowsUpdate := listHas(l.allow, "UPDATE")
	sdp := l.localSDP
	c.mu.Unlock()
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
		c.mu.Lock()
		l.reinviteSeq = req.CSeq().SeqNo
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	res, err := s.sendOn(ctx, l, req, trace.SpanContext{})
	if err != nil || res.StatusCode == 408 || res.StatusCode == 481 {
		t.c.hangup(context.Background(), nil, "session refresh failed on leg "+l.id)
		return
	}
	if method == sip.INVITE && res.IsSuccess() {
		_ = s.ack(l, nil)
	}
	t.arm()
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// sessionTimer returns the leg's session timer, or nil.
func (l *leg) sessionTimer() *sessionTimer {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.timer
}
