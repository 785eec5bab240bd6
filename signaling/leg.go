package signaling

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"
)

// This file holds the methods that act on one leg's dialog state under the leg's own lock
// (leg.mu), in the manner of sipgo's DialogServerSession/DialogClientSession: a state enum
// with its transitions in one place, the CSeq counters, the route set and remote target.

// call returns the call the leg belongs to now: an attended transfer moves a leg to
// another call, so code that outlives a moment (a session timer, a relay) asks each time.
func (l *leg) call() *call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

// moveTo makes c the leg's call (attended transfer).
func (l *leg) moveTo(c *call) {
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
}

// legTransitions lists the states a leg may go to from each state. Released is final.
var legTransitions = map[CallState][]CallState{
	StateInitiating: {StateRinging, StateTalking, StateReleased},
	StateRinging:    {StateTalking, StateReleased},
	StateTalking:    {StateReleased},
}

// setState moves the leg to st and returns the state it left; ok is false (and nothing
// changes) when the leg is already in st or st is not reachable from its state.
func (l *leg) setState(st CallState) (prev CallState, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.setStateLocked(st)
}

func (l *leg) setStateLocked(st CallState) (prev CallState, ok bool) {
	prev = l.state
	for _, next := range legTransitions[prev] {
		if next == st {
			l.state = st
			return prev, true
		}
	}
	return prev, false
}

// getState returns the leg's state.
func (l *leg) getState() CallState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// info is the leg's part of a CallInfo.
func (l *leg) info() LegInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := LegDecision{Leg: l.id, Scheme: l.dec.Scheme, Transport: l.dec.Transport, Secure: l.secure, Reason: l.dec.Reason, Rule: l.dec.Rule}
	return LegInfo{
		ID: l.id, DN: l.dn, URI: l.remoteURI.String(), SIPCallID: l.callID, Direction: string(l.dir),
		State: l.state, Decision: d, Peer: l.peer, Cause: l.cause,
	}
}

// deriveSecure computes a dialog's "secure" flag (R25, RFC 3261 §12.1.1 and §12.1.2): the
// request that made the dialog went over TLS (received by us as UAS, sent by us as UAC)
// and its Request-URI is a sips URI. A sip: Request-URI over TLS is best-effort TLS (R7),
// not secure; a sips Record-Route alone does not make it secure either.
func deriveSecure(transport string, ruri sip.Uri) bool {
	return strings.EqualFold(transport, "TLS") && strings.EqualFold(ruri.Scheme, "sips")
}

// isSecure reports the leg's "secure" flag (R25).
func (l *leg) isSecure() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.secure
}

// nextCSeqLocked returns the CSeq of the next request we send in the dialog: our own
// sequence, one per request, per dialog (RFC 3261 §12.2.1.1). ACK and CANCEL reuse the
// number of the request they belong to. The caller holds l.mu.
func (l *leg) nextCSeqLocked(method sip.RequestMethod) uint32 {
	if method != sip.ACK && method != sip.CANCEL {
		l.localCSeq++
	}
	return l.localCSeq
}

// acceptRemoteCSeq applies RFC 3261 §12.2.2 to a request the peer sent in the dialog: a
// CSeq lower than the last one in that direction is out of order (false: answer 500);
// otherwise the remote sequence number becomes the request's. ACK and CANCEL carry the
// number of the request they belong to and are not checked.
func (l *leg) acceptRemoteCSeq(req *sip.Request) bool {
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return true
	}
	n := req.CSeq().SeqNo
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.remoteCSeqSet && n < l.remoteCSeq {
		return false
	}
	l.remoteCSeq, l.remoteCSeqSet = n, true
	return true
}

// matches reports whether a request the peer sent belongs to this leg's dialog: the
// Call-ID (the key the leg was found by) and both tags (RFC 3261 §12.2.2). The peer's
// From tag is the remote tag; its To tag is ours.
func (l *leg) matches(req *sip.Request) bool {
	from, _ := req.From().Params.Get("tag")
	to, _ := req.To().Params.Get("tag")
	l.mu.Lock()
	defer l.mu.Unlock()
	return from != "" && from == l.remoteTag && to == l.localTag
}

// markAcked records that the ACK for our 2xx arrived on an inbound leg.
func (l *leg) markAcked() {
	if l.acked != nil {
		l.ackOnce.Do(func() { close(l.acked) })
	}
}

// server returns the Server the leg's call runs on.
func (l *leg) server() *Server { return l.call().s }

// respond answers a request of the leg's peer on tx with our tag and, for responses that
// establish or refresh the dialog, our Contact (Server.respond: R22, R24).
func (l *leg) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, ctype string, hdrs ...sip.Header) error {
	return l.server().respond(l, tx, req, code, reason, body, ctype, hdrs...)
}

// ack acknowledges the 2xx of our last INVITE on the leg (its CSeq, RFC 3261 §13.2.2.4).
func (l *leg) ack(body []byte) error { return l.server().ack(l, body) }

// bye ends the leg's dialog from our side: it stops the leg's session timer, waits (bounded
// by ackWait and ctx) for the ACK of our 2xx on an inbound leg (RFC 3261 §15), then sends
// BYE and returns its final response. link is the request that caused it, if any.
func (l *leg) bye(ctx context.Context, link trace.SpanContext) (*sip.Response, error) {
	if t := l.sessionTimer(); t != nil {
		t.stop()
	}
	l.waitAck(ctx)
	s := l.server()
	return s.sendOn(ctx, l, s.inDialogRequest(l, sip.BYE, nil, ""), link)
}

// reinvite sends a re-INVITE with body on the leg, ACKs its 2xx, and records the SDP we
// sent and the peer's answer.
func (l *leg) reinvite(ctx context.Context, body []byte) error {
	s := l.server()
	req := s.inDialogRequest(l, sip.INVITE, body, "application/sdp")
	l.mu.Lock()
	l.reinviteSeq = req.CSeq().SeqNo
	l.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	defer cancel()
	res, err := s.sendOn(rctx, l, req, trace.SpanContext{})
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("re-INVITE answered %d %s", res.StatusCode, res.Reason)
	}
	_ = l.ack(nil)
	l.mu.Lock()
	if len(res.Body()) > 0 {
		l.remoteSDP = res.Body()
	}
	l.localSDP = body
	l.mu.Unlock()
	return nil
}
