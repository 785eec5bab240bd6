package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc/codes"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// TestMakeCallReleaseWhileDestinationRings: the origin has answered and the destination
// rings; ReleaseCall CANCELs the destination and sends BYE to the origin.
func TestMakeCallReleaseWhileDestinationRings(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	bob.setAnswer(ringUntilCancel)

	c := s.makeCall("1000", "2000")
	bob.WaitRequest(sip.INVITE, 1, 3*time.Second)
	alice.WaitRequest(sip.INVITE, 1, time.Second)
	// Wait until bob's 180 has been seen, so that the INVITE can be cancelled.
	deadline := time.Now().Add(3 * time.Second)
	for {
		res, err := s.calls.GetCall(s.ctx(), &sipsvcv1.GetCallRequest{CallId: c.GetCallId()})
		if err == nil {
			if l := findLeg(res.GetCall(), "2000"); l != nil && l.GetState() == sipsvcv1.CallState_CALL_STATE_RINGING {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination leg never ringing: %v %v", res, err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	// Holding the origin while the destination has not answered is a state error.
	_, err := s.calls.HoldCall(s.ctx(), &sipsvcv1.HoldCallRequest{CallId: c.GetCallId(), LegId: legOfID(t, s, c.GetCallId(), "1000")})
	wantCode(t, err, codes.FailedPrecondition)

	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	bob.waitCancelled(3 * time.Second)
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	s.waitGone(c.GetCallId())
	_, err = s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()})
	wantCode(t, err, codes.NotFound)
}

// TestMakeCallDestinationRejects: the destination refuses; the answered origin gets BYE and
// the call ends with the destination's status in its cause.
func TestMakeCallDestinationRejects(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	bob.setAnswer(rejectWith(486, "Busy Here"))
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	c := s.makeCall("1000", "2000")
	alice.WaitRequest(sip.BYE, 1, 5*time.Second)
	s.waitGone(c.GetCallId())
	ev := w.wait(3*time.Second, "call_ended", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, c.GetCallId()))
	if !strings.Contains(ev.GetCause(), "486") {
		t.Errorf("call_ended cause %q, want the destination's 486", ev.GetCause())
	}
}

// TestMakeCallToURI: the destination is a sip: URI rather than a DN.
func TestMakeCallToURI(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.callerPhone("bob", "UDP")

	c := s.makeCall("1000", fmt.Sprintf("sip:bob@%s", bob.Addr))
	s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	if inv := bob.WaitRequest(sip.INVITE, 1, time.Second); string(inv.Body()) != alice.sdp || inv.Recipient.User != "bob" {
		t.Errorf("URI destination got %s with %q", inv.Recipient.String(), inv.Body())
	}
	if ack := alice.WaitRequest(sip.ACK, 1, 2*time.Second); string(ack.Body()) != bob.sdp {
		t.Errorf("origin's ACK does not carry the URI destination's answer")
	}
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
		t.Fatal(err)
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestAnswerDestination: AnswerCall also answers the destination of a MakeCall when its 180
// advertised talk; the call then talks end to end.
func TestAnswerDestination(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	bob.setAnswer(answerOnTalk(true))

	c := s.makeCall("1000", "2000")
	bob.WaitRequest(sip.INVITE, 1, 3*time.Second)
	var leg string
	deadline := time.Now().Add(3 * time.Second)
	for leg == "" {
		res, err := s.calls.GetCall(s.ctx(), &sipsvcv1.GetCallRequest{CallId: c.GetCallId()})
		if err == nil {
			if l := findLeg(res.GetCall(), "2000"); l != nil && l.GetState() == sipsvcv1.CallState_CALL_STATE_RINGING {
				leg = l.GetLegId()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination never ringing")
		}
		time.Sleep(15 * time.Millisecond)
	}
	if _, err := s.calls.AnswerCall(s.ctx(), &sipsvcv1.AnswerCallRequest{CallId: c.GetCallId(), LegId: leg}); err != nil {
		t.Fatalf("AnswerCall on the destination: %v", err)
	}
	s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	if ack := alice.WaitRequest(sip.ACK, 1, 2*time.Second); string(ack.Body()) != bob.sdp {
		t.Errorf("origin's ACK does not carry the answer")
	}
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
		t.Fatal(err)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestTransferFailures: transfers that cannot happen change nothing — a ringing call
// (FAILED_PRECONDITION), an unknown target DN (NOT_FOUND), a bad target (INVALID_ARGUMENT),
// a target that refuses (FAILED_PRECONDITION): the call still talks and no one got BYE.
func TestTransferFailures(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	carol := s.addPhone("3000", "carol", "UDP")
	carol.setAnswer(rejectWith(486, "Busy Here"))
	dave := s.addPhone("4000", "dave", "UDP")
	dave.setAnswer(ringUntilCancel)

	ringing := s.makeCall("4000", "2000")
	rc := s.waitState(ringing.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)
	_, err := s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{CallId: rc.GetCallId(), LegId: legOf(t, rc, "4000").GetLegId(),
		Destination: &sipsvcv1.TransferCallRequest_Target{Target: "1000"}})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: rc.GetCallId()}); err != nil {
		t.Fatal(err)
	}
	dave.waitCancelled(3 * time.Second)

	c := s.makeCall("1000", "2000")
	c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	id, leg := c.GetCallId(), legOf(t, c, "1000").GetLegId()
	transfer := func(target string) error {
		_, err := s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{CallId: id, LegId: leg,
			Destination: &sipsvcv1.TransferCallRequest_Target{Target: target}})
		return err
	}
	wantCode(t, transfer("7777"), codes.NotFound, "7777")
	wantCode(t, transfer("bad target!"), codes.InvalidArgument, "target")
	_, err = s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{CallId: id, LegId: leg})
	wantCode(t, err, codes.InvalidArgument, "target")
	wantCode(t, transfer("3000"), codes.FailedPrecondition, "3000")
	carol.WaitRequest(sip.INVITE, 1, time.Second)

	got := s.waitState(id, sipsvcv1.CallState_CALL_STATE_TALKING)
	for _, n := range []string{"1000", "2000"} {
		if l := legOf(t, got, n); l.GetState() != sipsvcv1.CallState_CALL_STATE_TALKING {
			t.Errorf("after failed transfers leg %v", l)
		}
	}
	if alice.Count(sip.BYE)+bob.Count(sip.BYE) != 0 {
		t.Errorf("a failed transfer hung up a party")
	}
	if n := alice.Count(sip.INVITE); n != 1 {
		t.Errorf("a failed transfer re-INVITEd the party (%d INVITEs)", n)
	}
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
		t.Fatal(err)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestWatchEventsFilters: a DN filter sees that DN's calls only; a call filter sees one call.
func TestWatchEventsFilters(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.addPhone("1000", "alice", "UDP")
	s.addPhone("2000", "bob", "UDP")
	s.addPhone("3000", "carol", "UDP")
	s.addPhone("4000", "dave", "UDP")
	byDN := s.watch(&sipsvcv1.WatchEventsRequest{Dn: "3000"})
	all := s.watch(&sipsvcv1.WatchEventsRequest{})

	c1 := s.makeCall("1000", "2000")
	s.waitState(c1.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	byCall := s.watch(&sipsvcv1.WatchEventsRequest{CallId: c1.GetCallId()})
	c2 := s.makeCall("3000", "4000")
	s.waitState(c2.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	for _, c := range []*sipsvcv1.Call{c1, c2} {
		if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
			t.Fatal(err)
		}
	}
	all.wait(3*time.Second, "call_ended 2", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, c2.GetCallId()))
	byDN.wait(3*time.Second, "call_created of 3000's call", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_CREATED, c2.GetCallId()))
	byDN.wait(3*time.Second, "call_ended of 3000's call", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, c2.GetCallId()))
	byCall.wait(3*time.Second, "call_ended 1", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, c1.GetCallId()))
	for _, e := range byDN.all() {
		if e.GetCallId() != c2.GetCallId() {
			t.Errorf("dn=3000 stream got an event of another call: %v", e)
		}
	}
	for _, e := range byCall.all() {
		if e.GetCallId() != c1.GetCallId() {
			t.Errorf("call_id stream got an event of another call: %v", e)
		}
	}
	st, err := s.events.WatchEvents(s.ctx(), &sipsvcv1.WatchEventsRequest{Dn: "bad dn!"})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "dn")
}

func findLeg(c *sipsvcv1.Call, number string) *sipsvcv1.Leg {
	for _, l := range c.GetLegs() {
		if l.GetDn() == number {
			return l
		}
	}
	return nil
}

func legOfID(t *testing.T, s *stack, callID, number string) string {
	t.Helper()
	res, err := s.calls.GetCall(s.ctx(), &sipsvcv1.GetCallRequest{CallId: callID})
	if err != nil {
		t.Fatal(err)
	}
	return legOf(t, res.GetCall(), number).GetLegId()
}
