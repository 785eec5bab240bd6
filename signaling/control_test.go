package signaling

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

func ext(number string, p *phone) dn.DN {
	return dn.DN{Number: number, Type: dn.TypeExtension, Contact: p.ContactURI(number, "sip"), DisplayName: "Phone " + number}
}

func waitState(t *testing.T, b *b2bua, id string, want CallState) CallInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ci, err := b.s.GetCall(context.Background(), id)
		if err == nil && ci.State == want {
			return ci
		}
		time.Sleep(10 * time.Millisecond)
	}
	ci, err := b.s.GetCall(context.Background(), id)
	for _, e := range b.rec.all() {
		t.Logf("event %s leg=%s status=%d cause=%q", e.Kind, e.Leg, e.Status, e.Cause)
	}
	t.Fatalf("call %s not %s: %+v %v", id, want, ci, err)
	return ci
}

// TestMakeCall_RFC3725: the origin rings first; its offer goes to the destination; the
// origin's ACK carries the destination's answer.
func TestMakeCall_RFC3725(t *testing.T) {
	alice, bob := newPhone(t, "alice", "UDP"), newPhone(t, "bob", "TCP")
	bobSDP := strings.Replace(testSDP, "4000", "5000", 1)
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) { bob.OK(req, tx, []byte(bobSDP)) })
	b := startB2BUA(t, nil, ext("1000", alice), ext("2000", bob))
	ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, b, ci.ID, StateTalking)
	ainv := alice.WaitRequest(sip.INVITE, 1, time.Second)
	if len(ainv.Body()) != 0 {
		t.Errorf("origin INVITE carries an offer; flow I sends none")
	}
	binv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if string(binv.Body()) != testSDP {
		t.Errorf("destination did not get the origin's offer: %q", binv.Body())
	}
	if binv.From().Address.User != "1000" {
		t.Errorf("destination sees caller %s", binv.From().Address.User)
	}
	ack := alice.WaitRequest(sip.ACK, 1, 2*time.Second)
	if string(ack.Body()) != bobSDP {
		t.Errorf("origin ACK lacks the answer: %q", ack.Body())
	}
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	alice.WaitRequest(sip.BYE, 1, 2*time.Second)
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	if _, err := b.s.GetCall(context.Background(), ci.ID); !errors.Is(err, ErrCallNotFound) {
		t.Errorf("released call still there: %v", err)
	}
}

func TestMakeCallErrors(t *testing.T) {
	alice := newPhone(t, "alice", "UDP")
	b := startB2BUA(t, nil, ext("1000", alice))
	for _, tc := range []struct {
		req  MakeCallRequest
		want error
	}{
		{MakeCallRequest{From: "9999", To: "1000"}, ErrUnknownDN},
		{MakeCallRequest{From: "1000", To: "8888"}, ErrUnknownDN},
		{MakeCallRequest{From: "1000", To: "sip:"}, ErrBadTarget},
	} {
		if _, err := b.s.MakeCall(context.Background(), tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.req, err, tc.want)
		}
	}
	if len(b.s.ListCalls(context.Background(), CallFilter{})) != 0 {
		t.Errorf("a failed MakeCall left a call behind")
	}
}

// TestAnswerCallTalkEvent: a ringing phone that advertised Allow-Events: talk is answered
// with NOTIFY Event: talk; one that did not gets ErrNotSupported.
func TestAnswerCallTalkEvent(t *testing.T) {
	alice, bob := newPhone(t, "alice", "UDP"), newPhone(t, "bob", "UDP")
	talk := func(p *phone, advertise bool) {
		p.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
			res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
			res.To().Params.Add("tag", p.Name+"tag")
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: p.Name, Host: "127.0.0.1", Port: p.Port()}})
			if advertise {
				res.AppendHeader(sip.NewHeader("Allow-Events", "talk, hold"))
			}
			_ = tx.Respond(res)
			deadline := time.After(5 * time.Second)
			for {
				select {
				case r := <-p.Inbox():
					if r.Method == sip.NOTIFY && hdr(r, "Event") == "talk" {
						p.OK(req, tx, []byte(testSDP))
						return
					}
				case <-deadline:
					return
				case <-tx.Done():
					return
				}
			}
		})

	}
	talk(alice, true)
	b := startB2BUA(t, nil, ext("1000", alice), ext("2000", bob))
	ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	ci = waitState(t, b, ci.ID, StateRinging)
	leg := ci.Legs[0].ID
	if err := b.s.HoldCall(context.Background(), ci.ID, leg); !errors.Is(err, ErrWrongState) {
		t.Errorf("hold a ringing call: %v, want ErrWrongState", err)
	}
	if err := b.s.AnswerCall(context.Background(), ci.ID, leg); err != nil {
		t.Fatalf("AnswerCall: %v", err)
	}
	waitState(t, b, ci.ID, StateTalking)
	if err := b.s.AnswerCall(context.Background(), ci.ID, leg); !errors.Is(err, ErrWrongState) {
		t.Errorf("answer a talking leg: %v", err)
	}
	_ = b.s.ReleaseCall(context.Background(), ci.ID)

	carol := newPhone(t, "carol", "UDP")
	talk(carol, false)
	b.dir.put(ext("3000", carol))
	ci, err = b.s.MakeCall(context.Background(), MakeCallRequest{From: "3000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	ci = waitState(t, b, ci.ID, StateRinging)
	if err := b.s.AnswerCall(context.Background(), ci.ID, ci.Legs[0].ID); !errors.Is(err, ErrNotSupported) {
		t.Errorf("no Allow-Events: talk → %v, want ErrNotSupported", err)
	}
	// Release from ringing: CANCEL.
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.GetCall(context.Background(), ci.ID); !errors.Is(err, ErrCallNotFound) {
		t.Errorf("released ringing call still there")
	}
}

// TestHoldRetrieve: hold sends a=sendonly to the held party, retrieve a=sendrecv.
func TestHoldRetrieve(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("2000", bob))
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "2000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	calls := b.s.ListCalls(context.Background(), CallFilter{DN: "2000"})
	if len(calls) != 1 {
		t.Fatalf("ListCalls by DN: %d", len(calls))
	}
	ci := calls[0]
	if err := b.s.HoldCall(context.Background(), ci.ID, "B1"); err != nil {
		t.Fatalf("hold: %v", err)
	}
	got := nthRequest(t, bob, sip.INVITE, 2)
	if !strings.Contains(string(got.Body()), "a=sendonly") {
		t.Errorf("held party got %q", got.Body())
	}
	if ci, _ := b.s.GetCall(context.Background(), ci.ID); ci.State != StateHeld {
		t.Errorf("state %s", ci.State)
	}
	if err := b.s.HoldCall(context.Background(), ci.ID, "B1"); !errors.Is(err, ErrWrongState) {
		t.Errorf("double hold: %v", err)
	}
	if err := b.s.RetrieveCall(context.Background(), ci.ID, "B1"); err != nil {
		t.Fatalf("retrieve: %v", err)
	}
	got = nthRequest(t, bob, sip.INVITE, 3)
	if !strings.Contains(string(got.Body()), "a=sendrecv") {
		t.Errorf("retrieved party got %q", got.Body())
	}
	if err := b.s.HoldCall(context.Background(), ci.ID, "B9"); !errors.Is(err, ErrLegNotFound) {
		t.Errorf("unknown leg: %v", err)
	}
	if err := b.s.HoldCall(context.Background(), "nope", "B1"); !errors.Is(err, ErrCallNotFound) {
		t.Errorf("unknown call: %v", err)
	}
	b.rec.waitKind(t, EventLegRetrieved)
	call.Request(sip.BYE, nil)
}

// TestBlindTransferReroute: the callee does not allow REFER, so the B2BUA calls the target,
// re-points the caller's media to it and releases the callee.
func TestBlindTransferReroute(t *testing.T) {
	bob, carol := newPhone(t, "bob", "UDP"), newPhone(t, "carol", "UDP")
	carolSDP := strings.Replace(testSDP, "4000", "6000", 1)
	carol.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) { carol.OK(req, tx, []byte(carolSDP)) })
	b := startB2BUA(t, nil, ext("2000", bob), ext("3000", carol))
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "2000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	ci := b.s.ListCalls(context.Background(), CallFilter{})[0]
	if err := b.s.TransferCall(context.Background(), TransferRequest{CallID: ci.ID, LegID: "A", Target: "3000"}); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	inv := carol.WaitRequest(sip.INVITE, 1, 2*time.Second)
	if string(inv.Body()) != testSDP {
		t.Errorf("target did not get the party's SDP")
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	reinv := nthRequest(t, alice, sip.INVITE, 1)
	if string(reinv.Body()) != carolSDP {
		t.Errorf("party not re-pointed to target: %q", reinv.Body())
	}
	b.rec.waitKind(t, EventLegTransferred)
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE %d", res.StatusCode)
	}
	carol.WaitRequest(sip.BYE, 1, 2*time.Second)
}

// TestBlindTransferRefer: a party that allows REFER gets REFER with Refer-To the target.
func TestBlindTransferRefer(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("2000", bob), dn.DN{Number: "3000", Type: dn.TypeExtension, Contact: "sip:3000@127.0.0.1:9"})
	alice := newPhone(t, "alice", "UDP")
	alice.SetReferCode(202)
	call := alice.invite(b, "2000", inviteOpts{headers: []sip.Header{sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, REFER, NOTIFY")}})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	ci := b.s.ListCalls(context.Background(), CallFilter{})[0]
	if err := b.s.TransferCall(context.Background(), TransferRequest{CallID: ci.ID, LegID: "A", Target: "3000"}); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	refer := alice.WaitRequest(sip.REFER, 1, 2*time.Second)
	if rt := hdr(refer, "Refer-To"); !strings.Contains(rt, "sip:3000@127.0.0.1") {
		t.Errorf("Refer-To %q", rt)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
}

func nthRequest(t *testing.T, p *phone, m sip.RequestMethod, n int) *sip.Request {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		k := 0
		for _, r := range p.Received() {
			if r.Method == m {
				k++
				if k == n {
					return r
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: no %s #%d", p.Name, m, n)
	return nil
}
