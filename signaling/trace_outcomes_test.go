package signaling

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// TestTrace_BusyIsAnOutcome: the callee answers 486. The CLIENT leg is an error (≥ 400,
// error.type 486), the SERVER leg is not (sipsvc answered < 500), the call span has outcome
// busy and no error status (docs: "Busy, no answer and rejections are outcomes, not errors").
func TestTrace_BusyIsAnOutcome(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	answerWith(bob, 486, "Busy Here")

	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	if res := alice.invite(b, "6000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 486 {
		t.Fatalf("final %d, want 486", res.StatusCode)
	}
	spans := sink.wait(t, 1)
	commonChecks(t, spans, sink)

	call := spanOne(t, spans, sc.SpanCall, "")
	checkSpanAttrs(t, "call", call, map[string]any{"sipsvc.call.outcome": sc.OutcomeBusy})
	if call.StatusCode == "ERROR" {
		t.Errorf("busy call span has error status: busy is an outcome")
	}
	a := spanOne(t, spans, sc.SpanLegInbound, "A")
	checkSpanAttrs(t, "leg A", a, map[string]any{"sip.status_code": 486})
	if a.StatusCode == "ERROR" {
		t.Errorf("leg A (SERVER) is an error after sipsvc answered 486: only ≥ 500 is")
	}
	b1 := spanOne(t, spans, sc.SpanLegOutbound, "B1")
	checkSpanAttrs(t, "leg B1", b1, map[string]any{"sip.status_code": 486, "error.type": "486"})
	if b1.StatusCode != "ERROR" {
		t.Errorf("leg B1 (CLIENT) status %s after 486, want ERROR", b1.StatusCode)
	}
}

// TestTrace_CancelIsAnEvent: the caller cancels while B1 rings. CANCEL gets no span, but a
// sip.cancel event on leg A (received) and on B1 (sent); B1's 487 after sipsvc's own CANCEL
// is not an error; the call's outcome is cancelled.
func TestTrace_CancelIsAnEvent(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Ring(req, tx)
		select {
		case <-tx.Done():
		case <-time.After(3 * time.Second):
		}
	})

	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{})
	call.WaitProvisional(180, 3*time.Second)
	call.Cancel()
	if res := call.Wait(5 * time.Second); res.StatusCode != 487 {
		t.Fatalf("final %d, want 487", res.StatusCode)
	}
	spans := sink.wait(t, 1)
	commonChecks(t, spans, sink)
	for _, s := range spans {
		if s.Name == sc.TransactionSpanName("CANCEL") {
			t.Errorf("CANCEL got a span (%s %s): CANCEL is an event (sip.cancel) on the leg span", s.Name, s.Kind)
		}
	}
	checkSpanAttrs(t, "call", spanOne(t, spans, sc.SpanCall, ""), map[string]any{"sipsvc.call.outcome": sc.OutcomeCancelled})
	for _, leg := range []struct{ name, id string }{{sc.SpanLegInbound, "A"}, {sc.SpanLegOutbound, "B1"}} {
		s := spanOne(t, spans, leg.name, leg.id)
		if len(s.EventsNamed(sc.EventCANCEL)) != 1 {
			t.Errorf("leg %s: %d %s events, want 1 (docs: ACK and CANCEL … events sip.ack, sip.cancel on the leg span)", leg.id, len(s.EventsNamed(sc.EventCANCEL)), sc.EventCANCEL)
		}
		if s.StatusCode == "ERROR" {
			t.Errorf("leg %s is an error after a CANCEL (487 after sipsvc's own CANCEL is not)", leg.id)
		}
	}
}
