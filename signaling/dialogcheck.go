package signaling

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// attrDialogRefusal is the span attribute naming why an in-dialog request was refused
// (the rule id, or "cseq" for an out-of-order CSeq).
const attrDialogRefusal = attribute.Key("sipsvc.dialog.refusal")

// checkInDialog applies the per-dialog checks to a request the peer of leg l sent in its
// dialog, before the request changes anything; it answers a refused request itself and
// returns its status, or 0 when the request may go on.
//
//   - R4, R25, T6, P11: a request of a sips dialog (the leg's "secure" flag) that did not
//     arrive over TLS is refused with 480 + Warning 380 "SIPS Not Allowed" — the answer an
//     initial sips request over UDP/TCP gets (rejectInbound), so a peer sees one refusal
//     for one fault. 480 rather than 403: the request is not forbidden, it is refused on
//     that transport (RFC 5630 §4: rather fail than be delivered without TLS).
//   - R21, R23, R24: a target refresh (re-INVITE, UPDATE) in a sips dialog whose Contact is
//     not a sips URI would downgrade the dialog: 400, the dialog unchanged.
//   - RFC 3261 §12.2.2: a CSeq lower than the peer's last one is out of order: 500.
func (s *Server) checkInDialog(l *leg, req *sip.Request, tx sip.ServerTransaction, span trace.Span) int {
	secure := l.isSecure()
	switch {
	case secure && !strings.EqualFold(req.Transport(), "TLS"):
		span.SetAttributes(attrDialogRefusal.String("R25"))
		s.reply(tx, req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", withWarning(380, "SIPS Not Allowed"))
		return sip.StatusTemporarilyUnavailable
	case secure && isTargetRefresh(req) && req.Contact() != nil && !strings.EqualFold(req.Contact().Address.Scheme, "sips"):
		span.SetAttributes(attrDialogRefusal.String("R24"))
		s.reply(tx, req, sip.StatusBadRequest, "Bad Request", withWarning(399, "sip Contact in a sips dialog (R21, R24)"))
		return sip.StatusBadRequest
	case !l.acceptRemoteCSeq(req):
		span.SetAttributes(attrDialogRefusal.String("cseq"))
		s.reply(tx, req, sip.StatusInternalServerError, "Server Internal Error", withWarning(399, "CSeq lower than the dialog's last one"))
		return sip.StatusInternalServerError
	}
	return 0
}

// isTargetRefresh reports whether a request may change the dialog's remote target (RFC
// 3261 §12.2, RFC 3311).
func isTargetRefresh(req *sip.Request) bool {
	return req.Method == sip.INVITE || req.Method == sip.UPDATE
}

// refreshTarget applies a target refresh's Contact to the leg (RFC 3261 §12.2.2): the new
// remote target and, over UDP without a route set, where requests go.
func (l *leg) refreshTarget(req *sip.Request) {
	ct := req.Contact()
	if ct == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remoteTarget = *ct.Address.Clone()
	if l.transport == "UDP" && len(l.routeSet) == 0 {
		l.dest = hostPort(l.remoteTarget, l.transport)
	}
	if len(l.routeSet) > 0 && strings.EqualFold(l.remoteTarget.Scheme, "sips") && l.transport != "TLS" {
		l.routeTransportLocked() // R11: a target refreshed to sips is reached over TLS via the route
	}
}

var (
	holdDirRE  = regexp.MustCompile(`(?m)^a=(sendonly|inactive)\r?$`)
	nullConnRE = regexp.MustCompile(`(?m)^c=IN IP[46] (0\.0\.0\.0|::)\r?$`)
)

// sdpHolds reads whether an offer puts its receiver on hold: a=sendonly or a=inactive, or
// the RFC 2543 c=0.0.0.0 form. ok is false without an SDP.
func sdpHolds(sdp []byte) (held, ok bool) {
	if len(bytes.TrimSpace(sdp)) == 0 {
		return false, false
	}
	return holdDirRE.Match(sdp) || nullConnRE.Match(sdp), true
}

// setHeld records that leg l was put on hold (or taken off) and updates the call's state
// the same way for a hold asked by the API (setHold) and one made by a phone's own
// re-INVITE: held while any bridged leg is held. It emits leg_held / leg_retrieved when
// the leg's hold changed.
func (c *call) setHeld(l *leg, held bool) {
	l.mu.Lock()
	changed := l.held != held
	l.held = held
	l.mu.Unlock()
	c.mu.Lock()
	legs := []*leg{c.a, c.b}
	c.mu.Unlock()
	anyHeld := false
	for _, b := range legs {
		if b != nil {
			b.mu.Lock()
			anyHeld = anyHeld || b.held
			b.mu.Unlock()
		}
	}
	c.mu.Lock()
	if c.state == StateTalking || c.state == StateHeld {
		if anyHeld {
			c.state = StateHeld
		} else {
			c.state = StateTalking
		}
	}
	c.mu.Unlock()
	if !changed {
		return
	}
	if held {
		c.event(EventLegHeld, l, nil)
	} else {
		c.event(EventLegRetrieved, l, nil)
	}
}

// ackWait bounds how long a BYE on an inbound leg waits for the ACK of our 2xx (RFC 3261
// §15: a callee should not send BYE before the ACK; it does once the wait is over).
const ackWait = 2 * time.Second

// waitAck waits, on an inbound leg, for the ACK of our 2xx, at most ackWait or until ctx
// ends; other legs return at once.
func (l *leg) waitAck(ctx context.Context) {
	if l.acked == nil || l.dir != inbound || l.noAck.Load() || closed(l.acked) {
		return // closed: the usual case, with no timer to make
	}
	t := time.NewTimer(ackWait)
	defer t.Stop()
	select {
	case <-l.acked:
	case <-t.C:
	case <-ctx.Done():
	}
}

// refuseLiveCallID answers 482 (Loop Detected) to an out-of-dialog INVITE whose Call-ID is
// the Call-ID of a live leg, and reports whether it did. Such an INVITE is either our own
// request coming back (a loop: RFC 3261 §8.2.2.2) or a peer reusing a live Call-ID; either
// way it must never take over the live leg's entry, and sipsvc keys its dialogs by Call-ID,
// so it gets no new dialog.
func (s *Server) refuseLiveCallID(req *sip.Request, tx sip.ServerTransaction) bool {
	if s.legByCallID(string(*req.CallID())) == nil {
		return false
	}
	s.reply(tx, req, sip.StatusLoopDetected, "Loop Detected", withWarning(399, "Call-ID of a live dialog"))
	return true
}
