package signaling

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// TestOutcomeOfFailure: how a call ended is typed by the path that ended it, and otherwise by
// the final status alone (never by the cause text).
func TestOutcomeOfFailure(t *testing.T) {
	callee := func(code int) failure {
		return failure{status: code, cause: fmt.Sprintf("leg B1 answered %d", code)}
	}
	tests := []struct {
		name string
		f    failure
		want Outcome
	}{
		{"callee_480_unavailable", callee(480), OutcomeUnavailable},
		{"callee_486_busy", callee(486), OutcomeBusy},
		{"callee_600_busy", callee(600), OutcomeBusy},
		{"callee_408_no_answer", callee(408), OutcomeNoAnswer},
		{"callee_603_rejected", callee(603), OutcomeRejected},
		{"callee_404_rejected", callee(404), OutcomeRejected},
		{"callee_500_failed", callee(500), OutcomeFailed},
		{"callee_503_unavailable", callee(503), OutcomeUnavailable},
		{"caller_cancelled_487", failure{status: 487, cause: "cancelled"}, OutcomeCancelled},
		{"ring_timeout_408_no_answer", failure{status: 408, cause: "ring timeout", outcome: OutcomeNoAnswer}, OutcomeNoAnswer},
		{"487_after_ring_timeout_no_answer", failure{status: 487, cause: "ring timeout", outcome: OutcomeNoAnswer}, OutcomeNoAnswer},
		{"no_target_answered_no_answer", failure{status: 480, cause: "no target answered", outcome: OutcomeNoAnswer}, OutcomeNoAnswer},
		{"policy_refusal_rejected", failure{status: 480, cause: "policy strict (R19)", outcome: OutcomeRejected}, OutcomeRejected},
		{"cause_text_not_read", failure{status: 480, cause: "no answer"}, OutcomeUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.outcomeOf(); got != tc.want {
				t.Errorf("outcome of %+v = %q, want %q", tc.f, got, tc.want)
			}
		})
	}
}

// TestTransportFailureClassified: a transport error is classified by its type through
// errors.Is/errors.As, wrapped as sipgo wraps it, never by its text: an error whose message
// merely mentions "x509" or "refused" is a plain transport error.
func TestTransportFailureClassified(t *testing.T) {
	sipgoWrap := func(err error) error { // as sipgo's transaction layer reports a transport error
		return fmt.Errorf("INVITE transaction: %w", fmt.Errorf("%w. %w", err, sip.ErrTransactionTransport))
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	unreachable := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	tests := []struct {
		name        string
		err         error
		wantStatus  int
		wantOutcome Outcome
	}{
		{"timer_B_timeout", fmt.Errorf("tx: %w", sip.ErrTransactionTimeout), 408, OutcomeUnavailable},
		{"context_deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), 408, OutcomeUnavailable},
		{"net_OpError_refused", sipgoWrap(fmt.Errorf("dial TCP error: %w", refused)), 503, OutcomeUnavailable},
		{"net_OpError_unreachable", sipgoWrap(unreachable), 503, OutcomeUnavailable},
		{"tls_alert", sipgoWrap(fmt.Errorf("TLS handshake error: %w", tls.AlertError(42))), 503, OutcomeFailed},
		{"tls_record_header", sipgoWrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), 503, OutcomeFailed},
		{"x509_unknown_authority", sipgoWrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), 503, OutcomeFailed},
		{"x509_hostname", sipgoWrap(x509.HostnameError{Host: "bob.example", Certificate: &x509.Certificate{}}), 503, OutcomeFailed},
		{"text_mentioning_x509_is_not_tls", errors.New("peer said x509 tls: refused"), 503, OutcomeFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := transportFailure(tc.err)
			if f.status != tc.wantStatus || f.outcome != tc.wantOutcome || f.cause == "" {
				t.Errorf("transportFailure(%v) = %d %q (%s), want %d %q", tc.err, f.status, f.outcome, f.cause, tc.wantStatus, tc.wantOutcome)
			}
		})
	}
	if f := transportFailure(errors.New("peer said x509 tls: refused")); f.cause == "connection refused" || f.cause[:3] == "TLS" {
		t.Errorf("text was parsed: %q", f.cause)
	}
}

// TestTransportFailureRealErrors classifies errors from real sockets: a refused TCP dial and
// a TLS handshake against a server whose certificate is not trusted.
func TestTransportFailureRealErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	_, derr := net.Dial("tcp", addr)
	if derr == nil {
		t.Fatalf("dial %s succeeded: something else listens there", addr)
	}
	if f := transportFailure(fmt.Errorf("dial TCP error: %w", derr)); f.cause != "connection refused" || f.outcome != OutcomeUnavailable {
		t.Errorf("refused dial: %+v", f)
	}

	tl, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		if c, err := tl.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	_, herr := tls.Dial("tcp", tl.Addr().String(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"})
	if herr == nil {
		t.Fatal("handshake with an untrusted certificate succeeded")
	}
	if f := transportFailure(fmt.Errorf("TLS handshake error: %w", herr)); f.status != 503 || f.outcome != OutcomeFailed || f.cause[:20] != "TLS handshake failed" {
		t.Errorf("untrusted certificate: %+v (%v)", f, herr)
	}
}

// TestCallee480IsUnavailable: over real sockets, a callee answering 480 ends the call with
// outcome unavailable (not no_answer) on the call_ended event and on the call span, with the
// direction typed too.
func TestCallee480IsUnavailable(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	answerWith(bob, 480, "Temporarily Unavailable")
	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	if res := alice.invite(b, "6000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 480 {
		t.Fatalf("final %d, want 480", res.StatusCode)
	}
	ev := b.rec.waitKind(t, EventCallEnded)
	if ev.Outcome != OutcomeUnavailable || ev.Direction != DirectionInbound || ev.Status != 480 {
		t.Errorf("call_ended %+v: want outcome unavailable, direction inbound, status 480", ev)
	}
	spans := sink.wait(t, 1)
	checkSpanAttrs(t, "call", spanOne(t, spans, sc.SpanCall, ""), map[string]any{"sipsvc.call.outcome": sc.OutcomeUnavailable, "sipsvc.call.direction": sc.DirectionInbound})
}

// TestRingTimeoutIsNoAnswer: a callee that rings past the ring timeout is no_answer, typed
// by the timeout path; the API-originated direction is outbound for MakeCall.
func TestRingTimeoutIsNoAnswer(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Ring(req, tx)
		select {
		case <-tx.Done():
		case <-time.After(3 * time.Second):
		}
	})
	b := startB2BUA(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond }, ext("2000", bob))
	if _, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "2000", To: "sip:x@127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	ev := b.rec.waitKind(t, EventCallEnded)
	if ev.Outcome != OutcomeNoAnswer || ev.Direction != DirectionOutbound {
		t.Errorf("call_ended %+v: want no_answer, outbound", ev)
	}
}
