package signaling

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// This file holds the retransmission of our 2xx to an INVITE over an unreliable transport
// (RFC 3261 §13.3.1.4 and §17.2.1, RFC 6026 §7.1). sipgo's server transaction does not
// retransmit a 2xx (it passes on what the TU gives it while "Accepted"): the TU, sipsvc,
// sends the 2xx again at T1, 2*T1, 4*T1… capped at T2, until the ACK arrives, and gives up
// after 64*T1: then the dialog ends (BYE) and the call ends failed.

// Default RFC 3261 timer values (§17.1.1.1): Config.T1 and Config.T2 when zero.
const (
	DefaultT1 = 500 * time.Millisecond
	DefaultT2 = 4 * time.Second
)

// Causes and span events of the 2xx retransmission.
const (
	causeNoAck = "no ACK for 2xx" // the cause of a call ended by the give-up

	eventRetransmit2xx = "sip.2xx.retransmit" // on the leg span, per retransmission
	eventNoAck         = "sip.2xx.no_ack"     // on the leg span, when we give up
)

// t1 and t2 are the configured RFC 3261 timers, or their defaults.
func (s *Server) t1() time.Duration {
	if s.cfg.T1 > 0 {
		return s.cfg.T1
	}
	return DefaultT1
}

func (s *Server) t2() time.Duration {
	if s.cfg.T2 > 0 {
		return s.cfg.T2
	}
	return DefaultT2
}

// unreliable reports whether a transport loses messages: 2xx retransmission applies to it.
func unreliable(transport string) bool { return strings.EqualFold(transport, "UDP") }

// needsAck reports whether a response we send is a 2xx to an INVITE over an unreliable
// transport: one the peer must ACK and we must retransmit until it does.
func needsAck(req *sip.Request, code int) bool {
	return req.Method == sip.INVITE && code >= 200 && code < 300 && unreliable(req.Transport())
}

// retx is one 2xx of ours to an INVITE, sent again over UDP until its ACK. It holds no
// goroutine while it waits: one timer re-arms itself at T1, 2*T1… (capped at T2), and its
// function sends the 2xx, ends the wait or gives up. It is one of the server's goroutines
// (s.wg) from start until it ends; it ends once, whichever comes first of the ACK
// (ackArrived), the end of the leg's call (stopRetransmits), the server's stop and the
// give-up after 64*T1.
type retx struct {
	s    *Server
	l    *leg
	tx   sip.ServerTransaction
	conn sip.Connection // the transaction's connection, or nil: send through tx
	res  *sip.Response
	seq  uint32

	mu       sync.Mutex // guards the fields below; taken before l.mu, never after
	timer    *time.Timer
	interval time.Duration
	giveUpAt time.Time
	running  bool // counted in s.wg
	ended    bool
}

// expectAck registers that our 2xx res to the INVITE with CSeq seq will await its ACK. It is
// registered before the 2xx is sent, so an ACK that comes back at once is never missed; the
// caller starts it once the 2xx is out, or stops it if it could not be sent.
func (l *leg) expectAck(s *Server, tx sip.ServerTransaction, res *sip.Response, seq uint32) *retx {
	r := &retx{s: s, l: l, tx: tx, res: res, seq: seq}
	// Write through the transaction's connection (our UDP listener), as the transaction
	// itself does in its Accepted state: sip.transaction_wait may end the transaction
	// (Timer L) before 64*T1, and the 2xx must still go out until then.
	if cx, ok := tx.(interface{ Connection() sip.Connection }); ok {
		r.conn = cx.Connection()
	}
	l.mu.Lock()
	old := l.takeRetxLocked(seq) // a 2xx sent again for the same INVITE: one retransmitter at a time
	var oldest *retx
	if len(l.retx) >= maxRetxPerLeg {
		// A peer that sends re-INVITE after re-INVITE and never ACKs must not make us hold a
		// retransmitter per INVITE: the oldest gives way (its 2xx is no longer sent again).
		oldest = l.retx[0]
		l.retx = append(l.retx[:0], l.retx[1:]...)
	}
	l.retx = append(l.retx, r)
	l.mu.Unlock()
	for _, o := range [...]*retx{old, oldest} {
		if o != nil {
			o.stop()
		}
	}
	return r
}

// maxRetxPerLeg caps the 2xx responses retransmitted at once on one leg. A dialog has one
// INVITE transaction at a time (RFC 3261 §14.2), so more than one awaiting its ACK is rare.
const maxRetxPerLeg = 4

// ackArrived stops the retransmission of our 2xx to the INVITE with CSeq seq.
func (l *leg) ackArrived(seq uint32) {
	l.mu.Lock()
	r := l.takeRetxLocked(seq)
	l.mu.Unlock()
	if r != nil {
		r.stop()
	}
}

// takeRetxLocked removes and returns the retransmission of the 2xx to the INVITE with CSeq
// seq, or nil. The caller holds l.mu.
func (l *leg) takeRetxLocked(seq uint32) *retx {
	for i, w := range l.retx {
		if w.seq == seq {
			l.retx = append(l.retx[:i], l.retx[i+1:]...)
			return w
		}
	}
	return nil
}

// stopRetransmits ends every 2xx retransmission of the leg (its call ended).
func (l *leg) stopRetransmits() {
	l.mu.Lock()
	rs := l.retx
	l.retx = nil
	l.mu.Unlock()
	for _, r := range rs {
		r.stop()
	}
}

// drop removes r from its leg's list, if it is still there.
func (r *retx) drop() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, w := range l.retx {
		if w == r {
			l.retx = append(l.retx[:i], l.retx[i+1:]...)
			return
		}
	}
}

// start arms the first retransmission, T1 after the 2xx went out. The leg's call may have
// ended between expectAck and start: stopRetransmits ran after the registration (and
// stopped r) or the check here sees the call done.
func (r *retx) start() {
	s := r.s
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	c := r.l.call()
	if c == nil || closed(c.done) || !s.enter() {
		r.ended = true
		r.drop()
		return
	}
	r.running = true
	r.interval = s.t1()
	r.giveUpAt = time.Now().Add(64 * r.interval)
	// The real clock, not Config.Clock: that one is the session timers' (tests step it and
	// count its timers); tests shorten T1 and T2 instead.
	r.timer = time.AfterFunc(r.interval, r.fire)
}

// stop ends the retransmission. When the timer's function is already due (it waits for
// r.mu), that function leaves s.wg; otherwise stop does.
func (r *retx) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.ended = true
	if r.running && r.timer.Stop() {
		r.s.wg.Done()
	}
}

// fire is the timer's function: send the 2xx again and re-arm, or end.
func (r *retx) fire() {
	s, l := r.s, r.l
	r.mu.Lock()
	if r.ended { // stopped while this function was due: it leaves s.wg (see stop)
		r.mu.Unlock()
		s.wg.Done()
		return
	}
	c := l.call()
	now := time.Now()
	switch {
	case c == nil || closed(c.done) || closed(s.lc.stop):
		r.ended = true
		r.mu.Unlock()
		r.drop()
		s.wg.Done()
		return
	case !now.Before(r.giveUpAt):
		r.ended = true
		r.mu.Unlock()
		r.drop()
		r.giveUp(c)
		s.wg.Done()
		return
	}
	var err error
	if r.conn != nil {
		err = r.conn.WriteMsg(r.res)
	} else {
		err = r.tx.Respond(r.res)
	}
	if err != nil {
		c.log(slog.LevelDebug, "2xx retransmission failed", "leg", l.id, "error", err)
	} else {
		s.countOut(r.res)
		if l.span != nil {
			l.span.AddEvent(eventRetransmit2xx)
		}
	}
	r.interval = min(2*r.interval, s.t2())
	r.timer.Reset(min(r.interval, r.giveUpAt.Sub(now)))
	r.mu.Unlock()
}

// giveUp ends the call of a 2xx that got no ACK within 64*T1 with a BYE to the leg's peer
// (RFC 3261 §13.3.1.4).
func (r *retx) giveUp(c *call) {
	l := r.l
	l.noAck.Store(true) // the BYE need not wait for an ACK that will not come
	l.setOutcome(OutcomeFailed)
	if l.span != nil {
		l.span.AddEvent(eventNoAck, trace.WithAttributes(sc.AttrSIPStatusCode.Int(r.res.StatusCode)))
	}
	c.log(slog.LevelInfo, "no ACK for 2xx; ending the call", "leg", l.id, "cseq", r.seq)
	c.setOutcome(OutcomeFailed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.hangup(ctx, nil, causeNoAck+" on leg "+l.id)
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// stopRetransmits ends the 2xx retransmissions of the call's legs. Only an answered
// dialog gets an INVITE from its peer, so only legs A and B can have one.
func (c *call) stopRetransmits() {
	c.mu.Lock()
	a, b := c.a, c.b
	c.mu.Unlock()
	for _, l := range [...]*leg{a, b} {
		if l != nil {
			l.stopRetransmits()
		}
	}
}

// stopRetransmits ends the 2xx retransmissions of the calls still up when the server stops:
// they would otherwise hold Serve (s.wg) until their next timer.
func (s *Server) stopRetransmits() {
	calls := s.liveCalls()
	for _, c := range calls {
		c.stopRetransmits()
	}
}
