package signaling

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/sips"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// call is one B2BUA call: an inbound (or MakeCall origin) leg A and the originated legs.
type call struct {
	id      string
	s       *Server
	ctx     context.Context // carries the call's root span
	span    trace.Span
	created time.Time
	caller  string
	dialed  string

	// cancelled is closed when leg A cancels (or the API releases) before answer.
	cancelled chan struct{}
	cancelOne sync.Once
	// done is closed when the call ends.
	done    chan struct{}
	endOnce sync.Once

	mu       sync.Mutex // guards the fields below (not the legs: each leg guards its own state)
	a        *leg
	b        *leg   // the answered originated leg
	forks    []*leg // originated legs not (yet) answered
	state    CallState
	answered time.Time
	// adm is the inbound call's admission (caller class, cap slots); nil for MakeCall.
	// Set once by admitted (admit.go).
	adm      *admission
	rewrites []Rewrite
	nextLeg  int
	outcome  Outcome // how the call ends, when the path that ends it knows (outcome.go)
}

type legDirection string

const (
	inbound  legDirection = "inbound"
	outbound legDirection = "outbound"
)

// leg is one dialog of a call, with sipsvc as UAS (inbound) or UAC (outbound). The leg owns
// its dialog state under its own lock (mu): the call joins two legs and acts on them only
// through the leg's methods (leg.go). Lock order: a call's mu may be held while a leg's mu
// is taken, never the reverse.
type leg struct {
	// Set when the leg is made, then read-only.
	id   string
	dir  legDirection
	dn   string
	dec  sips.Decision
	span trace.Span
	ctx  context.Context

	callID        string
	localTag      string
	localURI      sip.Uri
	localDisplay  string
	remoteURI     sip.Uri
	remoteDisplay string
	peer          string
	invite        *sip.Request // initial INVITE received (A) or sent (B)
	serverTx      sip.ServerTransaction
	needs100rel   bool
	se            sessionExpires // Session-Expires of the initial INVITE received (leg A)
	// ackBody carries a late-offer SDP from A's ACK to B's ACK.
	ackCh chan []byte
	// acked is closed when the ACK for the 2xx of leg A's INVITE arrives (RFC 3261 §13.3.1.4).
	acked    chan struct{}
	ackOnce  sync.Once
	timerGen atomic.Uint64 // generations of the leg's session timers (see sessionTimer)
	// noAck is set when our 2xx was retransmitted for 64*T1 without an ACK (retransmit.go).
	noAck atomic.Bool

	mu sync.Mutex // guards the dialog state below
	// c is the call the leg belongs to; an attended transfer moves a leg to another call.
	// Read it with call().
	c *call
	// state moves forward only, through setState (leg.go).
	state CallState
	// secure is the dialog's "secure" flag (R25), derived by deriveSecure when the leg is made.
	secure       bool
	remoteTag    string
	localContact sip.Uri
	remoteTarget sip.Uri
	routeSet     []sip.Uri
	localCSeq    uint32
	// remoteCSeq is the highest CSeq the peer used in this dialog; remoteCSeqSet is false
	// until it sent one (RFC 3261 §12.2.2: the remote sequence number starts empty on a UAC).
	remoteCSeq    uint32
	remoteCSeqSet bool
	transport     string
	dest          string // host:port in-dialog requests go to (the connection for TCP/TLS, R33)
	clientTx      sip.ClientTransaction
	remoteSDP     []byte // last SDP the peer sent
	localSDP      []byte // last SDP we sent the peer
	allow         string // peer's Allow
	events        string // peer's Allow-Events
	cause         string
	outcome       Outcome // how the leg ended, set by the path that ends it (legoutcome.go)
	timer         *sessionTimer
	held          bool
	rang          bool

	// reliable provisional responses (RFC 3262) we sent on an inbound leg
	rseq      uint32
	prackWait map[uint32]chan struct{}
	// reinviteSeq is the CSeq of the last re-INVITE we sent, for its ACK.
	reinviteSeq uint32
	// final is the 2xx that answered an outbound leg.
	final *sip.Response
	// retx holds our 2xx responses still retransmitted until their ACK (retransmit.go).
	retx []*retx
}

// replaceLegLocked puts nl in the bridged slot (c.a or c.b) that old holds, and reports
// whether old held one. nl may be nil to empty the slot. A transfer reads the legs, then
// talks to the network, then replaces: a hang-up or another transfer may have changed the
// call meanwhile, and then nothing is replaced (writing c.b regardless, as the transfers
// once did, could drop the party's own leg). The caller holds c.mu.
func (c *call) replaceLegLocked(old, nl *leg) bool {
	switch {
	case old == nil:
		return false
	case c.a == old:
		c.a = nl
	case c.b == old:
		c.b = nl
	default:
		return false
	}
	return true
}

// removeForkLocked drops l from the unanswered originated legs, in place and keeping their
// order. The caller holds c.mu.
func (c *call) removeForkLocked(l *leg) {
	out := c.forks[:0]
	for _, f := range c.forks {
		if f != l {
			out = append(out, f)
		}
	}
	c.forks = out
}

func (s *Server) newCallID() string {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	return fmt.Sprintf("c%d-%s", n, sip.GenerateTagN(8))
}

func (c *call) newLegID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextLeg++
	return fmt.Sprintf("B%d", c.nextLeg)
}

// registerLeg makes l reachable by its Call-ID. It never replaces a live leg's entry (a
// request reusing a live Call-ID must not take over that dialog) and reports whether l
// was registered.
func (s *Server) registerLeg(l *leg) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.legs[l.callID]; ok && cur != l {
		return false
	}
	s.legs[l.callID] = l
	return true
}

func (s *Server) unregisterLeg(l *leg) {
	s.mu.Lock()
	if s.legs[l.callID] == l {
		delete(s.legs, l.callID)
	}
	s.mu.Unlock()
}

func (s *Server) legByCallID(id string) *leg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[id]
}

func (s *Server) addCall(c *call) {
	s.mu.Lock()
	s.calls[c.id] = c
	s.mu.Unlock()
}

func (s *Server) removeCall(c *call) {
	s.mu.Lock()
	delete(s.calls, c.id)
	s.mu.Unlock()
}

func (s *Server) callByID(id string) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// log writes a line about the call with its trace context (the handler adds trace_id and
// span_id), its id and the SIP Call-IDs of its legs.
func (c *call) log(level slog.Level, msg string, args ...any) {
	if !c.s.log.Enabled(c.ctx, level) {
		return
	}
	c.mu.Lock()
	ids := make([]string, 0, 2+len(c.forks))
	for _, l := range append([]*leg{c.a, c.b}, c.forks...) {
		if l != nil {
			ids = append(ids, l.id+"="+l.callID)
		}
	}
	c.mu.Unlock()
	args = append([]any{sc.LogCallID, c.id, "sip_call_ids", strings.Join(ids, ",")}, args...)
	c.s.log.Log(c.ctx, level, msg, args...)
}

// event sends an event about the call (and optionally a leg) to the observers.
func (c *call) event(kind EventKind, l *leg, fill func(*Event)) {
	ev := Event{Kind: kind, Time: time.Now(), CallID: c.id}
	ctx := c.ctx
	if l != nil {
		ev.Leg, ev.DN, ev.SIPCallID, ev.Direction = l.id, l.dn, l.callID, string(l.dir)
		if l.ctx != nil {
			ctx = l.ctx
		}
	} else {
		ev.DN = c.caller // call-level events name the calling party (a DN for MakeCall)
	}
	if fill != nil {
		fill(&ev)
	}
	if l != nil && l.span != nil && l.span.IsRecording() {
		if name, ok := legSpanEvents[kind]; ok {
			if ev.Status != 0 {
				l.span.AddEvent(name, trace.WithAttributes(sc.AttrSIPStatusCode.Int(ev.Status)))
			} else {
				l.span.AddEvent(name)
			}
		}
	}
	c.s.observe(ctx, ev)
}

// legSpanEvents are the events also marked on the leg's span.
var legSpanEvents = map[EventKind]string{
	EventLegRinging:     sc.EventLegRinging,
	EventLegAnswered:    sc.EventLegAnswered,
	EventLegHeld:        sc.EventLegHeld,
	EventLegRetrieved:   sc.EventLegRetrieved,
	EventLegTransferred: sc.EventLegTransferred,
}

// decided records a leg's scheme decision: on the leg's span and as an event.
func (c *call) decided(l *leg) {
	d := l.decision()
	c.event(EventLegSchemeDecided, l, func(e *Event) { e.Decision = &d })
}

// decision is the leg's scheme decision; Secure is the leg's own derived flag (R25).
func (l *leg) decision() LegDecision {
	return LegDecision{Leg: l.id, Scheme: l.dec.Scheme, Transport: l.dec.Transport, Secure: l.isSecure(), Reason: l.dec.Reason, Rule: l.dec.Rule}
}

// rewrite records one header rewrite on the call, its leg span, and as an event.
func (c *call) rewrite(l *leg, header, before, after, rule string) {
	if before == after {
		return
	}
	rw := Rewrite{Leg: l.id, Header: header, Before: before, After: after, Rule: rule}
	c.mu.Lock()
	c.rewrites = append(c.rewrites, rw)
	c.mu.Unlock()
	addRewriteEvent(l.span, rw)
	c.event(EventHeaderRewritten, l, func(e *Event) { e.Rewrite = &rw })
}

func (c *call) setState(st CallState) {
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
}

func (c *call) cancel() {
	c.cancelOne.Do(func() { close(c.cancelled) })
}

func (c *call) isCancelled() bool {
	select {
	case <-c.cancelled:
		return true
	default:
		return false
	}
}

// snapshot returns a CallInfo copy.
func (c *call) snapshot() CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := CallInfo{ID: c.id, State: c.state, Caller: c.caller, Dialed: c.dialed, Created: c.created, Answered: c.answered}
	ci.Rewrites = append([]Rewrite(nil), c.rewrites...)
	add := func(l *leg) {
		if l == nil {
			return
		}
		ci.Legs = append(ci.Legs, l.info())
	}
	add(c.a)
	add(c.b)
	for _, f := range c.forks {
		add(f)
	}
	return ci
}

// GetCall returns a snapshot of a live call.
func (s *Server) GetCall(ctx context.Context, callID string) (CallInfo, error) {
	c := s.callByID(callID)
	if c == nil {
		return CallInfo{}, fmt.Errorf("call %q: %w", callID, ErrCallNotFound)
	}
	return c.snapshot(), nil
}

// liveCalls returns the calls in progress, in no order: a copy, to act on without s.mu.
func (s *Server) liveCalls() []*call {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	return calls
}

// ListCalls returns snapshots of live calls matching f, oldest first.
func (s *Server) ListCalls(ctx context.Context, f CallFilter) []CallInfo {
	calls := s.liveCalls()
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		ci := c.snapshot()
		if f.State != "" && ci.State != f.State {
			continue
		}
		if f.DN != "" {
			match := false
			for _, l := range ci.Legs {
				if l.DN == f.DN {
					match = true
				}
			}
			if ci.Caller == f.DN || ci.Dialed == f.DN {
				match = true
			}
			if !match {
				continue
			}
		}
		out = append(out, ci)
	}
	sortCalls(out)
	return out
}

func (s *Server) shutdownCalls() {
	calls := s.liveCalls()
	for _, c := range calls {
		c.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.hangup(ctx, nil, "shutdown")
		cancel()
	}
}
