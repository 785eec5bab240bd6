package signaling

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// talkingCall sets up alice (over transport) → bob (UDP) on DN 6000 and returns the call.
func talkingCall(t *testing.T, transport string) (*b2bua, *phone, *phone, *uac, *sip.Request, CallInfo) {
	t.Helper()
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("6000", bob))
	alice := newPhone(t, "alice", transport)
	call := alice.invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	return b, alice, bob, call, inv, onlyCall(t, b, CallFilter{DN: "6000"})
}

// sendFrom sends req from phone p (its Via, its transport) to dest and returns the final
// response.
func sendFrom(t *testing.T, p *phone, req *sip.Request, dest string) *sip.Response {
	t.Helper()
	req.RemoveHeader("Via")
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.Transport, Host: "127.0.0.1", Port: p.Port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.PrependHeader(via)
	req.SetTransport(p.Transport)
	req.SetDestination(dest)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.Client.Do(ctx, req, prebuilt)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", req.Method, req.Recipient.String(), p.Name, err)
	}
	return res
}

// calleeRequest builds a request the callee p sends in the dialog of the INVITE inv it
// received: CSeq cseq, Contact contact ("" for the phone's own), body as SDP.
func calleeRequest(p *phone, inv *sip.Request, method sip.RequestMethod, cseq uint32, contact string, body []byte) *sip.Request {
	req := sip.NewRequest(method, *inv.Contact().Address.Clone())
	to := inv.From().AsTo()
	req.AppendHeader(&to)
	from := inv.To().AsFrom()
	from.Params = from.Params.Clone()
	from.Params.Add("tag", p.Tag())
	req.AppendHeader(&from)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	ct := p.Contact(inv.Recipient.Scheme)
	if contact != "" {
		ct = &sip.ContactHeader{}
		_ = sip.ParseUri(contact, &ct.Address)
	}
	req.AppendHeader(ct)
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	return req
}

// withTags replaces a request's From and To tags.
func withTags(req *sip.Request, fromTag, toTag string) *sip.Request {
	from := &sip.FromHeader{Address: *req.From().Address.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", fromTag)
	to := &sip.ToHeader{Address: *req.To().Address.Clone(), Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.ReplaceHeader(from)
	req.ReplaceHeader(to)
	return req
}

// TestDialogMatch_TagsRequired_481: a BYE with a live leg's Call-ID but other tags, sent
// from another address, matches no dialog (RFC 3261 §12.2.2): 481, and the call goes on.
func TestDialogMatch_TagsRequired_481(t *testing.T) {
	b, alice, bob, call, inv, ci := talkingCall(t, "UDP")
	mallory := newPhone(t, "mallory", "UDP")
	aliceTag, _ := call.Invite.From().Params.Get("tag")
	ourTagA, _ := call.Final.To().Params.Get("tag")
	ourTagB, _ := inv.From().Params.Get("tag")
	tests := []struct {
		name    string
		req     func() *sip.Request
		wantLeg string
	}{
		{"leg A, wrong From tag", func() *sip.Request { return withTags(call.InDialog(sip.BYE, nil), "other", ourTagA) }, "A"},
		{"leg A, wrong To tag", func() *sip.Request { return withTags(call.InDialog(sip.BYE, nil), aliceTag, "other") }, "A"},
		{"leg A, no To tag", func() *sip.Request { return withTags(call.InDialog(sip.BYE, nil), aliceTag, "") }, "A"},
		{"leg B, wrong From tag", func() *sip.Request {
			return withTags(calleeRequest(bob, inv, sip.BYE, 20, "", nil), "other", ourTagB)
		}, "B1"},
		{"leg B, wrong To tag", func() *sip.Request {
			return withTags(calleeRequest(bob, inv, sip.BYE, 21, "", nil), bob.Tag(), "other")
		}, "B1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := sendFrom(t, mallory, tt.req(), b.udp); res.StatusCode != 481 {
				t.Fatalf("got %d, want 481", res.StatusCode)
			}
			if got, err := b.s.GetCall(context.Background(), ci.ID); err != nil || got.State != StateTalking {
				t.Fatalf("call after a stray BYE: %+v %v", got, err)
			}
		})
	}
	if n := alice.Count(sip.BYE) + bob.Count(sip.BYE); n != 0 {
		t.Fatalf("stray BYEs ended a leg: %d BYEs sent", n)
	}
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("alice's own BYE → %d", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestDialogMatch_LiveCallIDInvite_482: an out-of-dialog INVITE (testdata/invite_live_callid.sip)
// that reuses the Call-ID of a live leg — the caller's, or our own INVITE to the callee coming
// back (a loop) — gets 482 and never takes over the live call's entry.
func TestDialogMatch_LiveCallIDInvite_482(t *testing.T) {
	b, _, bob, call, inv, ci := talkingCall(t, "UDP")
	raw, err := os.ReadFile("testdata/invite_live_callid.sip")
	must(t, err)
	for name, callID := range map[string]string{
		"caller's Call-ID":    string(*call.Invite.CallID()),
		"our B leg's Call-ID": string(*inv.CallID()),
	} {
		t.Run(name, func(t *testing.T) {
			msg := strings.NewReplacer("{{DST}}", b.udp, "{{CALLID}}", callID, "{{BRANCH}}", sip.GenerateTagN(8)).Replace(string(raw))
			if res := rawUDP(t, b.udp, msg); !strings.HasPrefix(res, "SIP/2.0 482") {
				t.Fatalf("got %q, want 482", firstLine(res))
			}
		})
	}
	if n := len(b.s.ListCalls(context.Background(), CallFilter{})); n != 1 {
		t.Fatalf("%d calls, want only the live one", n)
	}
	// The live call's legs are still reachable by their Call-IDs.
	if res := call.Request(sip.INFO, []byte("x")); res.StatusCode != 200 {
		t.Fatalf("INFO on the live call → %d", res.StatusCode)
	}
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	waitEnded(t, b, ci.ID)
}

// TestDialogCSeq_LowerGets500: a request whose CSeq is lower than the peer's last one in the
// dialog is out of order: 500 (RFC 3261 §12.2.2), not relayed; a higher one goes on. Both
// directions: from the caller (leg A) and from the callee (leg B).
func TestDialogCSeq_LowerGets500(t *testing.T) {
	b, alice, bob, call, inv, _ := talkingCall(t, "UDP")
	infoA := func(seq uint32) *sip.Request {
		req := call.InDialog(sip.INFO, []byte("a"))
		req.CSeq().SeqNo = seq
		return req
	}
	steps := []struct {
		name string
		req  func() *sip.Request
		from *phone
		dest string
		want int
	}{
		{"A CSeq 5", func() *sip.Request { return infoA(5) }, nil, "", 200},
		{"A CSeq 3 (lower)", func() *sip.Request { return infoA(3) }, nil, "", 500},
		{"A CSeq 6", func() *sip.Request { return infoA(6) }, nil, "", 200},
		{"B CSeq 10", func() *sip.Request { return calleeRequest(bob, inv, sip.INFO, 10, "", []byte("b")) }, bob, inv.Source(), 200},
		{"B CSeq 9 (lower)", func() *sip.Request { return calleeRequest(bob, inv, sip.INFO, 9, "", []byte("b")) }, bob, inv.Source(), 500},
		{"B CSeq 11", func() *sip.Request { return calleeRequest(bob, inv, sip.INFO, 11, "", []byte("b")) }, bob, inv.Source(), 200},
	}
	for _, st := range steps {
		p, dest := st.from, st.dest
		if p == nil {
			p, dest = alice, b.udp
		}
		if res := sendFrom(t, p, st.req(), dest); res.StatusCode != st.want {
			t.Fatalf("%s: got %d, want %d", st.name, res.StatusCode, st.want)
		}
	}
	if n := bob.Count(sip.INFO); n != 2 {
		t.Errorf("bob got %d INFOs relayed, want 2 (the out-of-order one is not relayed)", n)
	}
	if n := alice.Count(sip.INFO); n != 2 {
		t.Errorf("alice got %d INFOs relayed, want 2", n)
	}
	hangUp(t, alice, call, b.udp, 1000)
}

// TestDialogCSeq_OursIncrementsPerDialog: the requests sipsvc sends on a leg carry its own
// CSeq, one higher each time, whatever the other leg's numbers are.
func TestDialogCSeq_OursIncrementsPerDialog(t *testing.T) {
	b, alice, bob, call, inv, _ := talkingCall(t, "UDP")
	for i := 0; i < 3; i++ {
		req := call.InDialog(sip.INFO, []byte("x"))
		req.CSeq().SeqNo = uint32(100 + 50*i)
		if res := sendFrom(t, alice, req, b.udp); res.StatusCode != 200 {
			t.Fatalf("INFO %d → %d", i, res.StatusCode)
		}
	}
	infos := bob.Requests(sip.INFO)
	if len(infos) != 3 {
		t.Fatalf("bob got %d INFOs", len(infos))
	}
	first := inv.CSeq().SeqNo
	for i, r := range infos {
		if got := r.CSeq().SeqNo; got != first+uint32(i)+1 {
			t.Errorf("INFO %d on leg B: CSeq %d, want %d", i, got, first+uint32(i)+1)
		}
	}
	hangUp(t, alice, call, b.udp, 1000)
}

// hangUp sends the caller's BYE with CSeq seq (above the numbers the test used).
func hangUp(t *testing.T, p *phone, call *uac, dest string, seq uint32) {
	t.Helper()
	bye := call.InDialog(sip.BYE, nil)
	bye.CSeq().SeqNo = seq
	if res := sendFrom(t, p, bye, dest); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
}

// TestByeAfter2xx_WaitsForAck: the callee hangs up right after answering, before the caller
// ACKed sipsvc's 2xx: sipsvc's BYE to the caller waits for that ACK (RFC 3261 §15), and a
// caller's own BYE before its ACK is tolerated.
func TestByeAfter2xx_WaitsForAck(t *testing.T) {
	t.Run("callee hangs up before the caller's ACK", func(t *testing.T) {
		bob := newPhone(t, "bob", "UDP")
		b := startB2BUA(t, nil, ext("6000", bob))
		alice := newPhone(t, "alice", "UDP")
		call := alice.invite(b, "6000", inviteOpts{})
		if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
			t.Fatalf("final %d", res.StatusCode)
		}
		inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
		if code := byeFromPhone(t, bob, inv); code != 200 {
			t.Fatalf("bob's BYE → %d", code)
		}
		time.Sleep(400 * time.Millisecond)
		if n := alice.Count(sip.BYE); n != 0 {
			t.Fatalf("BYE sent to the caller before its ACK")
		}
		acked := time.Now()
		call.Ack()
		alice.WaitRequest(sip.BYE, 1, time.Second)
		if d := time.Since(acked); d > time.Second {
			t.Errorf("BYE %v after the ACK", d)
		}
	})
	t.Run("caller hangs up before its ACK", func(t *testing.T) {
		bob := newPhone(t, "bob", "UDP")
		b := startB2BUA(t, nil, ext("6000", bob))
		alice := newPhone(t, "alice", "UDP")
		call := alice.invite(b, "6000", inviteOpts{})
		if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
			t.Fatalf("final %d", res.StatusCode)
		}
		if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
			t.Fatalf("BYE before ACK → %d", res.StatusCode)
		}
		bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	})
}

// TestPhoneHold_ReinviteLikeAPIHold: a caller's own re-INVITE that holds (sendonly,
// inactive, or the old c=0.0.0.0 form) changes the call as HoldCall does — state held, a
// leg_held event for the leg it holds — and a sendrecv re-INVITE retrieves it.
func TestPhoneHold_ReinviteLikeAPIHold(t *testing.T) {
	tests := []struct{ name, old, new string }{
		{"sendonly", "a=sendrecv", "a=sendonly"},
		{"inactive", "a=sendrecv", "a=inactive"},
		{"c=0.0.0.0", "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, bob, call, _, ci := talkingCall(t, "UDP")
			if res := call.Request(sip.INVITE, []byte(strings.Replace(testSDP, tt.old, tt.new, 1))); res.StatusCode != 200 {
				t.Fatalf("hold re-INVITE → %d", res.StatusCode)
			}
			call.Ack()
			waitState(t, b, ci.ID, StateHeld)
			if e := b.rec.waitKind(t, EventLegHeld); e.Leg != "B1" || e.CallID != ci.ID {
				t.Errorf("leg_held for leg %q of %s, want B1 of %s", e.Leg, e.CallID, ci.ID)
			}
			if got := nthRequest(t, bob, sip.INVITE, 2); !strings.Contains(string(got.Body()), tt.new) {
				t.Errorf("bob got %q", got.Body())
			}
			if res := call.Request(sip.INVITE, []byte(testSDP)); res.StatusCode != 200 {
				t.Fatalf("retrieve re-INVITE → %d", res.StatusCode)
			}
			call.Ack()
			waitState(t, b, ci.ID, StateTalking)
			if e := b.rec.waitKind(t, EventLegRetrieved); e.Leg != "B1" {
				t.Errorf("leg_retrieved for leg %q, want B1", e.Leg)
			}
			call.Request(sip.BYE, nil)
		})
	}
}
