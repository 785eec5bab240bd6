package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// TestBlindTransferRefer: the transferred party allows REFER, so it gets REFER with Refer-To
// the target; the transferor gets BYE; sipsvc does not call the target itself. The
// transferee's dialog stays up until it ends: by ReleaseCall (BYE to the transferee, at
// once) or by the transferee's BYE; either way the call goes away.
func TestBlindTransferRefer(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"ReleaseCall", "transferee BYE"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, stackOptions{})
			alice := s.addPhone("1000", "alice", "UDP")
			alice.mu.Lock()
			alice.allowRefer = true
			alice.mu.Unlock()
			bob := s.addPhone("2000", "bob", "UDP")
			carol := s.addPhone("3000", "carol", "UDP")
			w := s.watch(&sipsvcv1.WatchEventsRequest{})

			c := s.makeCall("1000", "2000")
			c = s.waitState(c.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
			id := c.GetCallId()
			_, err := s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{
				CallId: id, LegId: legOf(t, c, "1000").GetLegId(),
				Destination: &sipsvcv1.TransferCallRequest_Target{Target: "3000"},
			})
			if err != nil {
				t.Fatalf("TransferCall: %v", err)
			}
			refer := alice.WaitRequest(sip.REFER, 1, 3*time.Second)
			if rt := header(refer, "Refer-To"); !strings.Contains(rt, "sip:3000@127.0.0.1") {
				t.Errorf("Refer-To %q, want the target through sipsvc", rt)
			}
			bob.WaitRequest(sip.BYE, 1, 3*time.Second)
			if n := carol.Count(sip.INVITE); n != 0 {
				t.Errorf("REFER transfer: sipsvc called the target itself (%d INVITEs)", n)
			}
			ev := w.wait(3*time.Second, "leg_transferred", kind(sipsvcv1.EventKind_EVENT_KIND_LEG_TRANSFERRED, id))
			if !strings.Contains(ev.GetCause(), "REFER") {
				t.Errorf("leg_transferred cause %q", ev.GetCause())
			}

			switch end {
			case "ReleaseCall":
				start := time.Now()
				if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
					t.Fatalf("ReleaseCall after REFER: %v", err)
				}
				if el := time.Since(start); el > 2*time.Second {
					t.Errorf("ReleaseCall after REFER took %v", el)
				}
				alice.WaitRequest(sip.BYE, 1, 3*time.Second)
			default:
				if code := alice.byeAsCallee(s, alice.WaitRequest(sip.INVITE, 1, time.Second)); code != 200 {
					t.Errorf("transferee's BYE → %d", code)
				}
			}
			s.waitGone(id)
		})
	}
}

// TestAttendedTransfer: bob talks with alice (call 1) and with carol (call 2, the
// consultation); TransferCall(call 1, alice's leg, consult call 2) joins alice with carol:
// each gets a re-INVITE with the other's SDP, bob gets BYE on both calls, carol none.
// The consultation call may have been placed either way round.
func TestAttendedTransfer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		from, to string // the consultation call
	}{
		{"consult placed by the transferor", "2000", "3000"},
		{"consult placed by the target", "3000", "2000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, stackOptions{})
			alice := s.addPhone("1000", "alice", "UDP")
			bob := s.addPhone("2000", "bob", "UDP")
			carol := s.addPhone("3000", "carol", "UDP")

			c1 := s.makeCall("1000", "2000")
			c1 = s.waitState(c1.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
			c2 := s.makeCall(tc.from, tc.to)
			s.waitState(c2.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
			aliceInvites, carolInvites := alice.Count(sip.INVITE), carol.Count(sip.INVITE)

			_, err := s.calls.TransferCall(s.ctx(), &sipsvcv1.TransferCallRequest{
				CallId: c1.GetCallId(), LegId: legOf(t, c1, "1000").GetLegId(),
				Destination: &sipsvcv1.TransferCallRequest_ConsultCallId{ConsultCallId: c2.GetCallId()},
			})
			if err != nil {
				t.Fatalf("TransferCall attended: %v", err)
			}
			ra := alice.WaitRequest(sip.INVITE, aliceInvites+1, 3*time.Second)
			if string(ra.Body()) != carol.sdp {
				t.Errorf("alice re-INVITEd with %q, want carol's SDP", sdpName(ra.Body()))
			}
			rc := carol.WaitRequest(sip.INVITE, carolInvites+1, 3*time.Second)
			if string(rc.Body()) != alice.sdp {
				t.Errorf("carol re-INVITEd with %q, want alice's SDP", sdpName(rc.Body()))
			}
			bob.WaitRequest(sip.BYE, 2, 3*time.Second)
			if n := carol.Count(sip.BYE); n != 0 {
				t.Errorf("the transfer target got BYE")
			}
			s.waitGone(c2.GetCallId())
			got := s.waitState(c1.GetCallId(), sipsvcv1.CallState_CALL_STATE_TALKING)
			if findLeg(got, "3000") == nil {
				t.Errorf("call 1 after the transfer: %v", got.GetLegs())
			}
			if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: c1.GetCallId()}); err != nil {
				t.Errorf("ReleaseCall: %v", err)
			}
		})
	}
}

// sdpName is the session name (the phone's name) of a phoneSDP body.
func sdpName(b []byte) string {
	for _, l := range strings.Split(string(b), "\r\n") {
		if strings.HasPrefix(l, "s=") {
			return l[2:]
		}
	}
	return string(b)
}

// TestReleaseInboundRinging: a phone's call into sipsvc rings a DN; ReleaseCall CANCELs the
// DN's INVITE and answers the caller 487.
func TestReleaseInboundRinging(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	bob := s.addPhone("2000", "bob", "UDP")
	bob.setAnswer(ringUntilCancel)
	alice := s.callerPhone("alice", "UDP")

	u := alice.invite(s, "2000", inviteOpts{})
	bob.WaitRequest(sip.INVITE, 1, 3*time.Second)
	var id string
	deadline := time.Now().Add(3 * time.Second)
	for id == "" {
		res, err := s.calls.ListCalls(s.ctx(), &sipsvcv1.ListCallsRequest{Dn: "2000", State: sipsvcv1.CallState_CALL_STATE_RINGING})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetCalls()) == 1 {
			id = res.GetCalls()[0].GetCallId()
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbound call never ringing")
		}
		time.Sleep(15 * time.Millisecond)
	}
	if _, err := s.calls.ReleaseCall(s.ctx(), &sipsvcv1.ReleaseCallRequest{CallId: id}); err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	if res := u.Wait(3 * time.Second); res.StatusCode != 487 {
		t.Errorf("caller got %d, want 487", res.StatusCode)
	}
	bob.waitCancelled(3 * time.Second)
	s.waitGone(id)
}
