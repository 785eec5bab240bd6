package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// TestMakeCall: third-party call control (RFC 3725 flow I) between two phone DNs. The origin
// rings first with no offer; its offer goes to the destination; the origin's ACK carries the
// destination's answer; both end talking; ReleaseCall from talking sends BYE to both.
func TestMakeCall(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	c := s.makeCall("1000", "2000")
	if c.GetCaller() != "1000" || c.GetDialed() != "2000" {
		t.Errorf("MakeCall returned caller %q dialed %q", c.GetCaller(), c.GetDialed())
	}
	c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	for _, n := range []string{"1000", "2000"} {
		if l := legOf(t, c, n); l.GetState() != sipsvcv1.CallState_CALL_STATE_TALKING || l.GetDirection() != sipsvcv1.LegDirection_LEG_DIRECTION_OUTBOUND {
			t.Errorf("leg to %s: %v", n, l)
		}
	}
	if c.GetAnswerTime() == nil {
		t.Errorf("talking call has no answer_time")
	}

	ainv := alice.WaitRequest(sip.INVITE, 1, 2*time.Second)
	if len(ainv.Body()) != 0 {
		t.Errorf("origin INVITE carries an offer (flow I sends none): %q", ainv.Body())
	}
	binv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
	if string(binv.Body()) != alice.sdp {
		t.Errorf("destination did not get the origin's offer:\n%q\nwant\n%q", binv.Body(), alice.sdp)
	}
	if binv.From().Address.User != "1000" {
		t.Errorf("destination sees caller %q, want 1000", binv.From().Address.User)
	}
	ack := alice.WaitRequest(sip.ACK, 1, 2*time.Second)
	if string(ack.Body()) != bob.sdp {
		t.Errorf("origin's ACK does not carry the destination's answer: %q", ack.Body())
	}
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)

	id := c.GetCallId()
	w.wait(2*time.Second, "call_created", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_CREATED, id))
	// The ACK can reach bob before the B2 leg_answered event reaches the stream: wait for it.
	w.wait(2*time.Second, "leg_answered of B2", func(e *sipsvcv1.Event) bool {
		return e.GetKind() == sipsvcv1.EventKind_EVENT_KIND_LEG_ANSWERED && e.GetCallId() == id && e.GetLegId() == "B2"
	})
	answered := 0
	for _, e := range w.all() {
		if e.GetKind() == sipsvcv1.EventKind_EVENT_KIND_LEG_ANSWERED && e.GetCallId() == id {
			answered++
		}
	}
	if answered != 2 {
		t.Errorf("%d leg_answered events, want 2: %v", answered, w.all())
	}

	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	s.waitGone(id)
	w.wait(3*time.Second, "call_ended", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, id))
}

// TestAnswerCall: the origin phone rings with Allow-Events: talk in its 180 and only answers
// when it receives NOTIFY Event: talk. A ringing call cannot be held (FAILED_PRECONDITION).
// A phone whose 180 has no Allow-Events: talk cannot be answered (FAILED_PRECONDITION), and
// releasing it while ringing CANCELs its INVITE.
func TestAnswerCall(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	s.addPhone("2000", "bob", "UDP")
	carol := s.addPhone("3000", "carol", "UDP")
	alice.setAnswer(answerOnTalk(true))
	carol.setAnswer(answerOnTalk(false))

	c := s.makeCall("1000", "2000")
	c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)
	leg := legOf(t, c, "1000").GetLegId()
	time.Sleep(100 * time.Millisecond)
	if alice.hasAnswered() {
		t.Fatalf("origin answered before NOTIFY talk")
	}
	if got := s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING); got == nil {
		return
	}

	_, err := s.calls.HoldCall(s.ctx(), &sipsvcv1.HoldCallRequest{CallId: c.GetCallId(), LegId: leg})
	wantCode(t, err, codes.FailedPrecondition)

	if _, err := s.calls.AnswerCall(s.ctx(), &sipsvcv1.AnswerCallRequest{CallId: c.GetCallId(), LegId: leg}); err != nil {
		t.Fatalf("AnswerCall: %v", err)
	}
	notify := alice.WaitRequest(sip.NOTIFY, 1, 2*time.Second)
	if header(notify, "Event") != "talk" {
		t.Errorf("NOTIFY Event %q, want talk", header(notify, "Event"))
	}
	s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	// Answering a talking leg is a state error too.
	_, err = s.calls.AnswerCall(s.ctx(), &sipsvcv1.AnswerCallRequest{CallId: c.GetCallId(), LegId: leg})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}

	// carol's 180 has no Allow-Events: talk.
	c2 := s.makeCall("3000", "2000")
	c2 = s.waitState(c2.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)
	_, err = s.calls.AnswerCall(s.ctx(), &sipsvcv1.AnswerCallRequest{CallId: c2.GetCallId(), LegId: legOf(t, c2, "3000").GetLegId()})
	wantCode(t, err, codes.FailedPrecondition, "talk")
	if carol.Count(sip.NOTIFY) != 0 {
		t.Errorf("a phone without Allow-Events: talk got NOTIFY")
	}
	// Nothing half-done: the call still rings.
	s.waitState(c2.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)
	// Release from ringing: carol's INVITE is cancelled.
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c2.GetCallId()}); err != nil {
		t.Fatalf("ReleaseCall ringing: %v", err)
	}
	s.waitGone(c2.GetCallId())
	// carol's answer mode returns when the transaction ends (487 after CANCEL); the phone has
	// not answered the second call.
	if carol.hasAnswered() {
		t.Errorf("carol answered without NOTIFY talk")
	}
}

// TestReleaseRinging: ReleaseCall on a ringing call CANCELs the ringing phone's INVITE and
// the call disappears.
func TestReleaseRinging(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	alice.setAnswer(ringUntilCancel)
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	c := s.makeCall("1000", "2000")
	s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	alice.waitCancelled(3 * time.Second)
	s.waitGone(c.GetCallId())
	if n := bob.Count(sip.INVITE); n != 0 {
		t.Errorf("destination called %d times after the origin was cancelled", n)
	}
	if n := alice.Count(sip.BYE); n != 0 {
		t.Errorf("ringing origin got BYE")
	}
	w.wait(3*time.Second, "call_ended", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, c.GetCallId()))
}

// TestHoldRetrieve: HoldCall re-INVITEs the held party with a=sendonly, RetrieveCall with
// a=sendrecv; the call goes held and back to talking, with leg_held / leg_retrieved events.
func TestHoldRetrieve(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	c := s.makeCall("1000", "2000")
	c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	id, leg := c.GetCallId(), legOf(t, c, "2000").GetLegId()

	if _, err := s.calls.HoldCall(s.ctx(), &sipsvcv1.HoldCallRequest{CallId: id, LegId: leg}); err != nil {
		t.Fatalf("HoldCall: %v", err)
	}
	held := bob.WaitRequest(sip.INVITE, 2, 3*time.Second)
	if body := string(held.Body()); !strings.Contains(body, "a=sendonly") || strings.Contains(body, "a=sendrecv") {
		t.Errorf("held party's re-INVITE SDP:\n%s\nwant a=sendonly", body)
	}
	if alice.Count(sip.INVITE) != 1 {
		t.Errorf("the other party was re-INVITEd too")
	}
	s.waitState(id, sipsvcv1.CallState_CALL_STATE_HELD)
	w.wait(2*time.Second, "leg_held", kind(sipsvcv1.EventKind_EVENT_KIND_LEG_HELD, id))
	_, err := s.calls.HoldCall(s.ctx(), &sipsvcv1.HoldCallRequest{CallId: id, LegId: leg})
	wantCode(t, err, codes.FailedPrecondition, "held")

	if _, err := s.calls.RetrieveCall(s.ctx(), &sipsvcv1.RetrieveCallRequest{CallId: id, LegId: leg}); err != nil {
		t.Fatalf("RetrieveCall: %v", err)
	}
	retrieved := bob.WaitRequest(sip.INVITE, 3, 3*time.Second)
	if body := string(retrieved.Body()); !strings.Contains(body, "a=sendrecv") || strings.Contains(body, "a=sendonly") {
		t.Errorf("retrieved party's re-INVITE SDP:\n%s\nwant a=sendrecv", body)
	}
	s.waitState(id, sipsvcv1.CallState_CALL_STATE_TALKING)
	w.wait(2*time.Second, "leg_retrieved", kind(sipsvcv1.EventKind_EVENT_KIND_LEG_RETRIEVED, id))
	_, err = s.calls.RetrieveCall(s.ctx(), &sipsvcv1.RetrieveCallRequest{CallId: id, LegId: leg})
	wantCode(t, err, codes.FailedPrecondition)

	// An unknown leg of a known call is NOT_FOUND.
	_, err = s.calls.HoldCall(s.ctx(), &sipsvcv1.HoldCallRequest{CallId: id, LegId: "B99"})
	wantCode(t, err, codes.NotFound, "B99")
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestBlindTransferReroute: the transferred party's phone does not allow REFER, so the B2BUA
// calls the target with the party's SDP, re-points the party to the target, and sends BYE to
// the transferor.
func TestBlindTransferReroute(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	carol := s.addPhone("3000", "carol", "UDP")
	w := s.watch(&sipsvcv1.WatchEventsRequest{})

	c := s.makeCall("1000", "2000")
	c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	id, leg := c.GetCallId(), legOf(t, c, "1000").GetLegId()

	_, err := s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{
		CallId: id, LegId: leg, Destination: &sipsvcv1.TransferCallRequest_Target{Target: "3000"},
	})
	if err != nil {
		t.Fatalf("TransferCall: %v", err)
	}
	inv := carol.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if string(inv.Body()) != alice.sdp {
		t.Errorf("target did not get the transferred party's SDP: %q", inv.Body())
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	if n := alice.Count(sip.REFER); n != 0 {
		t.Errorf("a phone without REFER in Allow got %d REFER", n)
	}
	reinv := alice.WaitRequest(sip.INVITE, 2, 3*time.Second)
	if string(reinv.Body()) != carol.sdp {
		t.Errorf("transferred party not re-pointed to the target: %q", reinv.Body())
	}
	w.wait(3*time.Second, "leg_transferred", kind(sipsvcv1.EventKind_EVENT_KIND_LEG_TRANSFERRED, id))

	got := s.waitState(id, sipsvcv1.CallState_CALL_STATE_TALKING)
	if l := legOf(t, got, "3000"); l.GetState() != sipsvcv1.CallState_CALL_STATE_TALKING {
		t.Errorf("target leg %v", l)
	}
	for _, l := range got.GetLegs() {
		if l.GetDn() == "2000" && l.GetState() != sipsvcv1.CallState_CALL_STATE_RELEASED {
			t.Errorf("transferor leg still in the call: %v", l)
		}
	}
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	carol.WaitRequest(sip.BYE, 1, 3*time.Second)
	if n := bob.Count(sip.BYE); n != 1 {
		t.Errorf("transferor got %d BYE, want 1", n)
	}
}

// TestCallErrors: unknown call → NOT_FOUND; bad DN number → INVALID_ARGUMENT naming the
// field; unknown DN → NOT_FOUND; a failed MakeCall leaves no call behind.
func TestCallErrors(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.addPhone("1000", "alice", "UDP")
	ctx := s.ctx()

	_, err := s.calls.GetCall(ctx, &sipsvcv1.GetCallRequest{CallId: "no-such-call"})
	wantCode(t, err, codes.NotFound, "no-such-call")
	_, err = s.calls.HoldCall(ctx, &sipsvcv1.HoldCallRequest{CallId: "no-such-call", LegId: "B1"})
	wantCode(t, err, codes.NotFound, "no-such-call")
	_, err = s.calls.ReleaseCall(ctx, &sipsvcv1.ReleaseCallRequest{CallId: "no-such-call"})
	wantCode(t, err, codes.NotFound)
	_, err = s.calls.AnswerCall(ctx, &sipsvcv1.AnswerCallRequest{CallId: "no-such-call", LegId: "B1"})
	wantCode(t, err, codes.NotFound)
	_, err = s.calls.TransferCall(ctx, &sipsvcv1.TransferCallRequest{CallId: "no-such-call", LegId: "B1",
		Destination: &sipsvcv1.TransferCallRequest_Target{Target: "1000"}})
	wantCode(t, err, codes.NotFound)

	for _, tc := range []struct {
		from, to, field string
	}{
		{"not a number!", "1000", "from"},
		{"", "1000", "from"},
		{"1000", "bad number!", "to"},
		{"1000", "sip:", "to"},
	} {
		_, err := s.calls.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: tc.from, To: tc.to})
		st := wantCode(t, err, codes.InvalidArgument, tc.field)
		var named bool
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					named = named || v.GetField() == tc.field
				}
			}
		}
		if !named {
			t.Errorf("MakeCall(%q, %q): no BadRequest field violation for %q: %v", tc.from, tc.to, tc.field, st.Details())
		}
	}
	_, err = s.calls.HoldCall(ctx, &sipsvcv1.HoldCallRequest{CallId: "x"})
	wantCode(t, err, codes.InvalidArgument, "leg_id")
	_, err = s.calls.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "9999", To: "1000"})
	wantCode(t, err, codes.NotFound, "9999")
	_, err = s.calls.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "1000", To: "8888"})
	wantCode(t, err, codes.NotFound, "8888")

	res, err := s.calls.ListCalls(ctx, &sipsvcv1.ListCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetCalls()) != 0 {
		t.Errorf("failed requests left calls behind: %v", res.GetCalls())
	}
	_, err = s.calls.ListCalls(ctx, &sipsvcv1.ListCallsRequest{Dn: "bad dn!"})
	wantCode(t, err, codes.InvalidArgument, "dn")
}

// TestListCalls: filter by DN and by state, and page.
func TestListCalls(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.addPhone("1000", "alice", "UDP")
	s.addPhone("2000", "bob", "UDP")
	carol := s.addPhone("3000", "carol", "UDP")
	s.addPhone("4000", "dave", "UDP")
	carol.setAnswer(ringUntilCancel)

	talking := s.makeCall("1000", "2000")
	s.waitState(talking.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
	ringing := s.makeCall("3000", "4000")
	s.waitState(ringing.GetCallId(), sipsvcv1.CallState_CALL_STATE_RINGING)

	ids := func(req *sipsvcv1.ListCallsRequest) []string {
		t.Helper()
		res, err := s.calls.ListCalls(s.ctx(), req)
		if err != nil {
			t.Fatalf("ListCalls(%v): %v", req, err)
		}
		var out []string
		for _, c := range res.GetCalls() {
			out = append(out, c.GetCallId())
		}
		return out
	}
	eq := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	eq("all (oldest first)", ids(&sipsvcv1.ListCallsRequest{}), talking.GetCallId(), ringing.GetCallId())
	eq("dn 1000", ids(&sipsvcv1.ListCallsRequest{Dn: "1000"}), talking.GetCallId())
	eq("dn 2000", ids(&sipsvcv1.ListCallsRequest{Dn: "2000"}), talking.GetCallId())
	eq("dn 3000", ids(&sipsvcv1.ListCallsRequest{Dn: "3000"}), ringing.GetCallId())
	eq("dn 5555", ids(&sipsvcv1.ListCallsRequest{Dn: "5555"}))
	eq("state talking", ids(&sipsvcv1.ListCallsRequest{State: sipsvcv1.CallState_CALL_STATE_TALKING}), talking.GetCallId())
	eq("state ringing", ids(&sipsvcv1.ListCallsRequest{State: sipsvcv1.CallState_CALL_STATE_RINGING}), ringing.GetCallId())
	eq("dn 1000 ringing", ids(&sipsvcv1.ListCallsRequest{Dn: "1000", State: sipsvcv1.CallState_CALL_STATE_RINGING}))
	eq("dn 3000 ringing", ids(&sipsvcv1.ListCallsRequest{Dn: "3000", State: sipsvcv1.CallState_CALL_STATE_RINGING}), ringing.GetCallId())

	// Paging: one call per page.
	p1, err := s.calls.ListCalls(s.ctx(), &sipsvcv1.ListCallsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.GetCalls()) != 1 || p1.GetNextPageToken() == "" {
		t.Fatalf("page 1: %v", p1)
	}
	p2, err := s.calls.ListCalls(s.ctx(), &sipsvcv1.ListCallsRequest{PageSize: 1, PageToken: p1.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.GetCalls()) != 1 || p2.GetNextPageToken() != "" || p2.GetCalls()[0].GetCallId() != ringing.GetCallId() {
		t.Errorf("page 2: %v", p2)
	}

	for _, c := range []*sipsvcv1.Call{talking, ringing} {
		if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c.GetCallId()}); err != nil {
			t.Errorf("ReleaseCall: %v", err)
		}
	}
	carol.waitCancelled(3 * time.Second)
}
