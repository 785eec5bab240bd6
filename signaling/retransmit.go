package signaling

import (
	"context"
	"log/slog"
	"strings"
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

// expectAck registers that our 2xx to the INVITE with CSeq seq awaits its ACK and returns
// the channel ackArrived closes. It is registered before the 2xx is sent, so an ACK that
// comes back at once is never missed.
func (l *leg) expectAck(seq uint32) chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ackWaits == nil {
		l.ackWaits = map[uint32]chan struct{}{}
	}
	if old, ok := l.ackWaits[seq]; ok {
		close(old) // a 2xx sent again for the same INVITE: one retransmitter at a time
	}
	l.ackWaits[seq] = ch
	return ch
}

// ackArrived stops the retransmission of our 2xx to the INVITE with CSeq seq.
func (l *leg) ackArrived(seq uint32) {
	l.mu.Lock()
	ch, ok := l.ackWaits[seq]
	delete(l.ackWaits, seq)
	l.mu.Unlock()
	if ok {
		close(ch)
	}
}

// forgetAck drops the wait for the ACK to seq if it is still ch (the 2xx was not sent).
func (l *leg) forgetAck(seq uint32, ch chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ackWaits[seq] == ch {
		delete(l.ackWaits, seq)
		close(ch)
	}
}

// retransmit2xx sends res again on tx at T1, 2*T1… (capped at T2) until acked is closed,
// the call ends or the server stops; with no ACK after 64*T1 it ends the call with a BYE
// to the leg's peer (RFC 3261 §13.3.1.4). Its goroutine is one of the server's (s.wg).
func (s *Server) retransmit2xx(l *leg, tx sip.ServerTransaction, res *sip.Response, seq uint32, acked chan struct{}) {
	c := l.call()
	if c == nil || !s.enter() {
		l.forgetAck(seq, acked)
		return
	}
	// The real clock, not Config.Clock: that one is the session timers' (tests step it and
	// count its timers); tests shorten T1 and T2 instead.
	clock := realClock{}
	t1, t2 := s.t1(), s.t2()
	// Write through the transaction's connection (our UDP listener), as the transaction
	// itself does in its Accepted state: sip.transaction_wait may end the transaction
	// (Timer L) before 64*T1, and the 2xx must still go out until then.
	send := func() error { return tx.Respond(res) }
	if cx, ok := tx.(interface{ Connection() sip.Connection }); ok && cx.Connection() != nil {
		conn := cx.Connection()
		send = func() error { return conn.WriteMsg(res) }
	}
	go func() {
		defer s.wg.Done()
		tick := make(chan struct{}, 1)
		giveUp := make(chan struct{}, 1)
		signal := func(ch chan struct{}) func() {
			return func() {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
		deadline := clock.AfterFunc(64*t1, signal(giveUp))
		defer deadline.Stop()
		interval := t1
		timer := clock.AfterFunc(interval, signal(tick))
		defer func() { timer.Stop() }()
		for {
			select {
			case <-acked:
				return
			case <-c.done:
				l.forgetAck(seq, acked)
				return
			case <-s.lc.stop:
				l.forgetAck(seq, acked)
				return
			case <-tick:
				if err := send(); err != nil {
					c.log(slog.LevelDebug, "2xx retransmission failed", "leg", l.id, "error", err)
				} else {
					s.countOut(res)
					if l.span != nil {
						l.span.AddEvent(eventRetransmit2xx)
					}
				}
				interval = min(2*interval, t2)
				timer = clock.AfterFunc(interval, signal(tick))
			case <-giveUp:
				l.forgetAck(seq, acked)
				l.noAck.Store(true) // the BYE need not wait for an ACK that will not come
				l.setOutcome(OutcomeFailed)
				if l.span != nil {
					l.span.AddEvent(eventNoAck, trace.WithAttributes(sc.AttrSIPStatusCode.Int(res.StatusCode)))
				}
				c.log(slog.LevelInfo, "no ACK for 2xx; ending the call", "leg", l.id, "cseq", seq)
				c.setOutcome(OutcomeFailed)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.hangup(ctx, nil, causeNoAck+" on leg "+l.id)
				cancel()
				return
			}
		}
	}()
}
