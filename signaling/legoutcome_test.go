package signaling

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// TestLegOutcome: a leg's outcome is the one its path set; otherwise a release without a
// final status is answered for a talking leg and failed for one that never answered;
// otherwise its final status decides. The leg span's error status reads that outcome, not
// the cause text: a CLIENT leg's 487 is no error when sipsvc gave the leg up itself.
func TestLegOutcome(t *testing.T) {
	tests := []struct {
		name    string
		set     Outcome
		prev    CallState
		status  int
		client  bool
		cause   string // free text: must not change anything
		want    Outcome
		wantErr bool
	}{
		{"talking_released", "", StateTalking, 0, true, "bye from A", OutcomeAnswered, false},
		{"early_release_no_status", "", StateRinging, 0, true, "ended after the attempt", OutcomeFailed, false},
		{"callee_busy_client", "", StateRinging, 486, true, "leg B1 answered 486", OutcomeBusy, true},
		{"callee_busy_server", "", StateRinging, 486, false, "", OutcomeBusy, false},
		{"ring_timeout_487_no_error", OutcomeNoAnswer, StateRinging, 487, true, "x", OutcomeNoAnswer, false},
		{"answered_elsewhere_487_no_error", OutcomeCancelled, StateRinging, 487, true, "y", OutcomeCancelled, false},
		{"caller_cancel_487_no_error", OutcomeCancelled, StateRinging, 487, true, "cancelled", OutcomeCancelled, false},
		{"cancel_cause_text_without_outcome_is_by_status", "", StateRinging, 487, true, "ring timeout", OutcomeCancelled, false},
		{"transport_unavailable_503", OutcomeUnavailable, StateInitiating, 503, true, "connection refused", OutcomeUnavailable, true},
		{"tls_failed_503", OutcomeFailed, StateInitiating, 503, true, "TLS handshake failed", OutcomeFailed, true},
		{"no_ack_server_failed", OutcomeFailed, StateTalking, 0, false, causeNoAck, OutcomeFailed, false},
		{"server_500", "", StateRinging, 500, false, "", OutcomeFailed, true},
		{"unplaceable_status", "", StateRinging, 700, true, "", OutcomeFailed, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := legOutcome(tc.set, tc.prev, tc.status)
			if got != tc.want {
				t.Errorf("legOutcome(%q, %s, %d) = %q, want %q", tc.set, tc.prev, tc.status, got, tc.want)
			}
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			_, span := tp.Tracer("t").Start(context.Background(), "leg")
			endLegSpan(span, tc.status, tc.cause, got, tc.client)
			ended := rec.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans ended", len(ended))
			}
			if isErr := ended[0].Status().Code == codes.Error; isErr != tc.wantErr {
				t.Errorf("span error %v, want %v", isErr, tc.wantErr)
			}
			var attr string
			for _, kv := range ended[0].Attributes() {
				if kv.Key == sc.AttrLegOutcome {
					attr = kv.Value.AsString()
				}
			}
			if attr != string(tc.want) {
				t.Errorf("span %s = %q, want %q", sc.AttrLegOutcome, attr, tc.want)
			}
		})
	}
}

// TestLegReleasedOutcome_RingTimeout: over real sockets, a callee that rings past the ring
// timeout is CANCELled; its leg_released event carries outcome no_answer (set by the ring
// timeout path), as does leg A's and the call's, and its CLIENT span is no error for the
// 487 that follows our CANCEL.
func TestLegReleasedOutcome_RingTimeout(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Ring(req, tx)
		select {
		case <-tx.Done():
		case <-time.After(5 * time.Second):
		}
	})
	b, sink := tracedB2BUA(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	if res := alice.invite(b, "6000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 408 {
		t.Fatalf("final %d, want 408", res.StatusCode)
	}
	ended := b.rec.waitKind(t, EventCallEnded)
	if ended.Outcome != OutcomeNoAnswer {
		t.Errorf("call outcome %q, want no_answer", ended.Outcome)
	}
	got := map[string]Outcome{}
	for _, e := range b.rec.all() {
		if e.Kind == EventLegReleased {
			got[e.Leg] = e.Outcome
		}
	}
	for _, leg := range []string{"A", "B1"} {
		if got[leg] != OutcomeNoAnswer {
			t.Errorf("leg_released %s outcome %q, want no_answer (all: %v)", leg, got[leg], got)
		}
	}
	spans := sink.wait(t, 1)
	b1 := spanOne(t, spans, sc.SpanLegOutbound, "B1")
	checkSpanAttrs(t, "leg B1", b1, map[string]any{string(sc.AttrLegOutcome): sc.OutcomeNoAnswer})
	if b1.StatusCode == "ERROR" {
		t.Errorf("leg B1 span is an error after the ring timeout's CANCEL (487)")
	}
}
