package signaling

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"go.opentelemetry.io/otel/trace"
)

// other returns the leg bridged to l, or nil.
func (c *call) otherLocked(l *leg) *leg {
	switch l {
	case c.a:
		return c.b
	case c.b:
		return c.a
	}
	return nil
}

// onInDialog handles requests within a dialog: BYE ends the call, the others (re-INVITE,
// UPDATE, INFO, NOTIFY, MESSAGE) are relayed to the other leg with their bodies.
func (s *Server) onInDialog(req *sip.Request, tx sip.ServerTransaction) {
	// Serve waits for the handler (a relay, the BYEs of a hang-up) before it closes the user
	// agent: a request sent after that would open a socket nothing closes. Once shutdown has
	// begun the handler is not started (its Add would race Serve's wait): the calls are being
	// ended by Serve, and the peer is told to try later.
	if !s.enter() {
		s.reply(tx, req, 503, "Service Unavailable")
		return
	}
	defer s.wg.Done()
	l := s.legByCallID(string(*req.CallID()))
	if l == nil || !l.matches(req) {
		// RFC 3261 §12.2.2: the Call-ID and both tags name the dialog; a request with the
		// right Call-ID but other tags belongs to no dialog of ours.
		s.reply(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	ctx, span := s.startTxSpan(l, req)
	defer span.End()
	if code := s.checkInDialog(l, req, tx, span); code != 0 {
		markStatus(span, code)
		return
	}
	c := l.call()
	c.mu.Lock()
	other := c.otherLocked(l)
	answered := !c.answered.IsZero()
	c.mu.Unlock()

	if req.Method == sip.BYE {
		// A BYE before the ACK for our 2xx is tolerated (RFC 3261 §15: the dialog ends).
		_ = l.respond(tx, req, 200, "OK", nil, "")
		markStatus(span, 200)
		if !answered {
			// A BYE on an early dialog: that fork (or the caller) gives up.
			if l.dir == outbound {
				c.releaseLegAs(l, OutcomeRejected, "bye from "+l.id, 0) // the callee gave up its early dialog
			} else {
				c.cancel()
			}
			return
		}
		c.hangup(ctx, l, "bye from "+l.id)
		return
	}
	if req.Method == sip.INVITE || req.Method == sip.UPDATE {
		l.refreshTarget(req)
		if t := l.sessionTimer(); t != nil {
			t.refreshed()
		}
	}
	if other == nil && req.Method == sip.NOTIFY {
		// e.g. the sipfrag NOTIFYs of a REFER we sent after the other leg left (RFC 3515).
		_ = l.respond(tx, req, 200, "OK", nil, "")
		markStatus(span, 200)
		return
	}
	if other == nil {
		s.reply(tx, req, 491, "Request Pending")
		markStatus(span, 491)
		return
	}
	if req.Method == sip.REFER {
		// A phone's own transfer request: the B2BUA does transfers through the control API.
		s.reply(tx, req, 501, "Not Implemented")
		markStatus(span, 501)
		return
	}
	code := s.relay(ctx, l, other, req, tx)
	markStatus(span, code)
}

// relayHeaders are copied from a relayed request to the request on the other leg.
var relayHeaders = []string{"Event", "Subscription-State", "Info-Package", "Content-Disposition", "Recv-Info"}

// relay sends req's method and body on leg to, and answers from with to's final response.
func (s *Server) relay(ctx context.Context, from, to *leg, req *sip.Request, tx sip.ServerTransaction) int {
	c := from.call()
	out := s.inDialogRequest(to, req.Method, req.Body(), contentType(req))
	for _, n := range relayHeaders {
		for _, h := range req.GetHeaders(n) {
			out.AppendHeader(sip.HeaderClone(h))
		}
	}
	if req.Method == sip.INVITE {
		to.mu.Lock()
		to.reinviteSeq = out.CSeq().SeqNo
		to.mu.Unlock()
	}
	rctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	defer cancel()
	res, err := s.sendOn(rctx, to, out, trace.SpanContextFromContext(ctx))
	if err != nil {
		f := transportFailure(err)
		_ = from.respond(tx, req, f.status, f.reason, nil, "", f.headers()...)
		return f.status
	}
	if req.Method == sip.INVITE && res.IsSuccess() {
		_ = to.ack(nil)
	}
	if res.IsSuccess() && len(res.Body()) > 0 && (req.Method == sip.INVITE || req.Method == sip.UPDATE) {
		to.mu.Lock()
		to.remoteSDP = res.Body()
		if len(req.Body()) > 0 {
			to.localSDP = req.Body()
		}
		to.mu.Unlock()
		from.mu.Lock()
		from.localSDP = res.Body()
		if len(req.Body()) > 0 {
			from.remoteSDP = req.Body()
		}
		from.mu.Unlock()
		c.holdEvents(to, req.Body())
	}
	var hdrs []sip.Header
	if t := from.sessionTimer(); t != nil && res.IsSuccess() && (req.Method == sip.INVITE || req.Method == sip.UPDATE) {
		hdrs = append(hdrs, t.header())
	}
	for _, n := range []string{"Event", "Subscription-State"} {
		if h := res.GetHeader(n); h != nil {
			hdrs = append(hdrs, sip.HeaderClone(h))
		}
	}
	_ = from.respond(tx, req, res.StatusCode, res.Reason, res.Body(), contentType(res), hdrs...)
	return res.StatusCode
}

// holdEvents applies a relayed offer to leg l (the leg that received it): an offer with
// sendonly, inactive or a c=0.0.0.0 connection puts l on hold, sendrecv takes it off, as
// HoldCall and RetrieveCall do (same call state, same events).
func (c *call) holdEvents(l *leg, sdp []byte) {
	held, ok := sdpHolds(sdp)
	if !ok {
		return
	}
	c.setHeld(l, held)
}

// onAck consumes ACKs for 2xx: a late-offer SDP from A goes on to B's ACK.
func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	l := s.legByCallID(string(*req.CallID()))
	if l == nil || !l.matches(req) {
		return // an ACK that matches no dialog is dropped (RFC 3261 §17.2.3)
	}
	if l.isSecure() && !strings.EqualFold(req.Transport(), "TLS") {
		return // R4/R25: requests of a sips dialog come over TLS
	}
	l.markAcked()
	l.ackArrived(req.CSeq().SeqNo) // stops our 2xx retransmission (retransmit.go)
	if l.span != nil {
		l.span.AddEvent(sc.EventACK)
	}
	if len(req.Body()) > 0 && l.ackCh != nil {
		select {
		case l.ackCh <- req.Body():
		default:
		}
	}
}

// onCancel answers a CANCEL that matched no transaction (sipgo handles those that match).
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.reply(tx, req, 481, "Call/Transaction Does Not Exist")
}

// onPrack answers PRACK for a reliable provisional response we sent (RFC 3262).
func (s *Server) onPrack(req *sip.Request, tx sip.ServerTransaction) {
	l := s.legByCallID(string(*req.CallID()))
	if l == nil || !l.matches(req) {
		s.reply(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	rack := strings.Fields(headerValue(req, "RAck"))
	l.mu.Lock()
	var ch chan struct{}
	if len(rack) == 3 && l.prackWait != nil {
		for n, w := range l.prackWait {
			if rack[0] == itoa(n) {
				ch = w
				delete(l.prackWait, n)
			}
		}
	}
	l.mu.Unlock()
	if ch == nil {
		s.reply(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	close(ch)
	_ = l.respond(tx, req, 200, "OK", nil, "")
}

// reliableHeaders makes the next provisional response to leg a reliable (RFC 3262 §3).
func (c *call) reliableHeaders(a *leg) []sip.Header {
	a.mu.Lock()
	a.rseq++
	n := a.rseq
	if a.prackWait == nil {
		a.prackWait = map[uint32]chan struct{}{}
	}
	a.prackWait[n] = make(chan struct{})
	a.mu.Unlock()
	return []sip.Header{sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", itoa(n))}
}

// hangup ends an answered call: BYE to every established leg except from.
func (c *call) hangup(ctx context.Context, from *leg, cause string) {
	c.mu.Lock()
	if c.state == StateReleased {
		c.mu.Unlock()
		return
	}
	if c.answered.IsZero() {
		// Not answered yet: runInbound finishes it.
		c.mu.Unlock()
		c.cancel()
		return
	}
	c.state = StateReleased
	legs := []*leg{c.a, c.b}
	c.mu.Unlock()
	var link trace.SpanContext
	if from != nil {
		link = trace.SpanContextFromContext(ctx) // the BYE we received causes the BYEs we send
	}
	for _, l := range legs {
		switch {
		case l == nil:
		case l == from:
			if t := l.sessionTimer(); t != nil {
				t.stop()
			}
			c.releaseLeg(l, cause, 0)
		default:
			c.byeLeg(ctx, l, cause, link)
		}
	}
	c.end(cause, 0)
}
