package signaling

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// refusals records Metrics and AdmissionMetrics counts.
type refusals struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

func (r *refusals) MessageIn(string, int, string)     {}
func (r *refusals) MessageOut(string, int, string)    {}
func (r *refusals) TLSHandshake(string, string)       {}
func (r *refusals) RoutingDone(time.Duration, string) {}
func (r *refusals) CallRefused(reason string)         { r.mu.Lock(); r.n[reason]++; r.mu.Unlock() }
func (r *refusals) count(reason string) int           { r.mu.Lock(); defer r.mu.Unlock(); return r.n[reason] }
func newRefusals() *refusals                          { return &refusals{n: map[string]int{}} }
func ringForever(p *phone) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) { p.Ring(req, tx); <-tx.Done() }
}

// TestCallCaps: over each cap (global, per source, per DN) a new call gets 503 with
// Retry-After and is counted by reason; a call that ends gives its slot back.
func TestCallCaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adm    Admission
		second string // number the second call dials (the first dials 6000)
		reason string
	}{
		{"global", Admission{MaxCalls: 1}, "6001", RefusedCapGlobal},
		{"per source", Admission{MaxCallsPerSource: 1}, "6001", RefusedCapSource},
		{"per DN", Admission{MaxCallsPerDN: 1}, "6000", RefusedCapDN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob := newPhone(t, "bob", "UDP")
			bob.SetAnswer(ringForever(bob))
			m := newRefusals()
			b := startB2BUA(t, func(c *Config) { c.Admission = tc.adm; c.Metrics = m },
				dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")},
				dn.DN{Number: "6001", Type: dn.TypeExtension, Contact: bob.ContactURI("6001", "sip")})
			alice := newPhone(t, "alice", "UDP")
			first := alice.invite(b, "6000", inviteOpts{})
			first.WaitProvisional(180, 3*time.Second)

			second := alice.invite(b, tc.second, inviteOpts{})
			res := second.Wait(3 * time.Second)
			if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil {
				t.Fatalf("call over the cap got %d (Retry-After %v), want 503 with Retry-After", res.StatusCode, res.GetHeader("Retry-After"))
			}
			if got := m.count(tc.reason); got != 1 {
				t.Errorf("refused{reason=%s} = %d, want 1", tc.reason, got)
			}
			if n := bob.Count(sip.INVITE); n != 1 {
				t.Errorf("callee got %d INVITEs, want 1 (the refused call must not ring)", n)
			}

			first.Cancel()
			if res := first.Wait(3 * time.Second); res.StatusCode != 487 {
				t.Fatalf("first call final %d, want 487", res.StatusCode)
			}
			b.rec.waitKind(t, EventCallEnded)
			third := alice.invite(b, tc.second, inviteOpts{})
			third.WaitProvisional(180, 3*time.Second) // the slot was given back
			third.Cancel()
			third.Wait(3 * time.Second)
		})
	}
}

// TestSessionExpiresClamped: a caller asking for a huge Session-Expires gets ours
// (MaxSessionExpires) in the 2xx (RFC 4028 §9 lets the UAS lower it).
func TestSessionExpiresClamped(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.Admission.MaxSessionExpires = time.Hour },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	u := alice.invite(b, "6000", inviteOpts{headers: []sip.Header{sip.NewHeader("Session-Expires", "31536000"), sip.NewHeader("Supported", "timer")}})
	res := u.Wait(5 * time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	u.Ack()
	defer u.Bye()
	h := res.GetHeader("Session-Expires")
	if h == nil {
		t.Fatal("2xx has no Session-Expires")
	}
	v, _, _ := cutSemicolon(h.Value())
	if n, err := strconv.Atoi(v); err != nil || n != 3600 {
		t.Errorf("Session-Expires %q, want 3600 (clamped)", h.Value())
	}
}

func cutSemicolon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ';' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestMaxCallDuration: an answered call is ended with BYE on both legs once it reaches
// MaxCallDuration, and counted.
func TestMaxCallDuration(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	m := newRefusals()
	b := startB2BUA(t, func(c *Config) { c.Admission.MaxCallDuration = 700 * time.Millisecond; c.Metrics = m },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	u := alice.invite(b, "6000", inviteOpts{})
	if res := u.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	u.Ack()
	alice.WaitRequest(sip.BYE, 1, 5*time.Second)
	bob.WaitRequest(sip.BYE, 1, 5*time.Second)
	b.rec.waitKind(t, EventCallEnded)
	if got := m.count(RefusedMaxDuration); got != 1 {
		t.Errorf("refused{reason=max_duration} = %d, want 1", got)
	}
}

// TestUnsafeValuesNeverWritten (issue 10, the last check at the point of writing): values
// that reached sipsvc another way than a checked entry, a DN display name with CRLF in the
// store, a routing answer's URI with CRLF, a registered contact with CRLF, never reach the
// wire: no forged header, no broken Request-Line.
func TestUnsafeValuesNeverWritten(t *testing.T) {
	t.Run("DN display name with CRLF in the store", func(t *testing.T) {
		alice, bob := newPhone(t, "alice", "UDP"), newPhone(t, "bob", "UDP")
		evil := ext("1000", alice)
		evil.DisplayName = "Alice\r\nP-Asserted-Identity: <sip:911@x>"
		b := startB2BUA(t, nil, evil, ext("2000", bob))
		if _, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"}); err != nil {
			t.Fatal(err)
		}
		inv := bob.WaitRequest(sip.INVITE, 1, 5*time.Second)
		if h := inv.GetHeader("P-Asserted-Identity"); h != nil {
			t.Fatalf("forged P-Asserted-Identity %q reached the wire", h.Value())
		}
		if d := inv.From().DisplayName; d != "" {
			t.Errorf("From display %q, want none", d)
		}
	})
	t.Run("routing answer URI with CRLF", func(t *testing.T) {
		bob := newPhone(t, "bob", "UDP")
		m := newRefusals()
		bad := bob.ContactURI("6000", "sip") + ";x\r\nX-Evil: 1"
		b := startB2BUA(t, func(c *Config) {
			c.Metrics = m
			c.Router = RouterFunc(func(context.Context, RouteRequest) (RouteDecision, error) {
				return RouteDecision{Targets: []Target{{URI: bad}}}, nil
			})
		})
		alice := newPhone(t, "alice", "UDP")
		if res := alice.invite(b, "6000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 480 {
			t.Fatalf("caller got %d, want 480", res.StatusCode)
		}
		if n := bob.Count(sip.INVITE); n != 0 {
			t.Errorf("%d INVITEs written to an unsafe URI", n)
		}
		if m.count(RefusedBadTarget) != 1 {
			t.Errorf("refused{reason=target_unsafe} = %d, want 1", m.count(RefusedBadTarget))
		}
	})
	t.Run("registered contact with CRLF", func(t *testing.T) {
		bob := newPhone(t, "bob", "UDP")
		b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "*"})
		b.dir.mu.Lock()
		b.dir.bindings["6000"] = []dn.Binding{{Number: "6000", Contact: bob.ContactURI("6000", "sip") + ";x\r\nX-Evil=1", Transport: "UDP"}}
		b.dir.mu.Unlock()
		alice := newPhone(t, "alice", "UDP")
		if res := alice.invite(b, "6000", inviteOpts{}).Wait(5 * time.Second); res.StatusCode < 400 {
			t.Fatalf("caller got %d, want a failure", res.StatusCode)
		}
		if n := bob.Count(sip.INVITE); n != 0 {
			t.Errorf("%d INVITEs written to an unsafe contact", n)
		}
	})
}

// BenchmarkAdmission is what admission adds to a call from a trusted caller: classify, take
// the cap slots, arm the maximum-duration timer, the last check of the target URI, and the
// release at the end. Compare with the CPU per call of docs/performance.md.
func BenchmarkAdmission(b *testing.B) {
	s, err := New(Config{Directory: newMemDir()})
	if err != nil {
		b.Fatal(err)
	}
	var target sip.Uri
	if err := sip.ParseUri("sip:6000@127.0.0.1:5070;transport=udp", &target); err != nil {
		b.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "6000", Host: "127.0.0.1", Port: 5060})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "1000", Host: "127.0.0.1"}, Params: sip.NewParams()}
	req.AppendHeader(from)
	req.SetSource("127.0.0.1:40000")
	b.ReportAllocs()
	for b.Loop() {
		adm, ok := s.admitInvite(req, nil)
		if !ok {
			b.Fatal("refused")
		}
		c := &call{id: "c", s: s}
		s.admitted(c, adm)
		l := &leg{c: c}
		if f := c.checkLegOnWire(l, target); f != nil {
			b.Fatal(f.cause)
		}
		c.releaseAdmission()
	}
}

// TestDialedNumberUnescaped: the dialed user part is compared after decoding its escapes
// (RFC 3261 §19.1.4), as the From user is: sip:%36000@h reaches DN 6000.
func TestDialedNumberUnescaped(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	u := alice.invite(b, "%36000", inviteOpts{})
	if res := u.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("INVITE sip:%%36000 got %d, want 200 from DN 6000", res.StatusCode)
	}
	u.Ack()
	u.Bye()
}

// TestMakeCallCaps: a call placed through the API takes cap slots too; over a cap
// MakeCall fails with ErrOverCap (the API answers RESOURCE_EXHAUSTED) and it is counted.
func TestMakeCallCaps(t *testing.T) {
	alice, bob := newPhone(t, "alice", "UDP"), newPhone(t, "bob", "UDP")
	alice.SetAnswer(ringForever(alice))
	m := newRefusals()
	b := startB2BUA(t, func(c *Config) { c.Admission.MaxCallsPerDN = 1; c.Metrics = m }, ext("1000", alice), ext("2000", bob))
	ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatal(err)
	}
	alice.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if _, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"}); !errors.Is(err, ErrOverCap) {
		t.Fatalf("second MakeCall from 1000: %v, want ErrOverCap", err)
	}
	if got := m.count(RefusedCapDN); got != 1 {
		t.Errorf("refused{reason=cap_dn} = %d, want 1", got)
	}
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	b.rec.waitKind(t, EventCallEnded)
	ci, err = b.s.MakeCall(context.Background(), MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatalf("MakeCall after the first call ended: %v (the slot was not given back)", err)
	}
	_ = b.s.ReleaseCall(context.Background(), ci.ID)
}

// TestCallerClassOnCallSpan: the call span says how the caller was established.
func TestCallerClassOnCallSpan(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	u := alice.invite(b, "6000", inviteOpts{})
	if res := u.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	u.Ack()
	u.Bye()
	for _, sp := range sink.wait(t, 1) {
		if sp.Name == "sipsvc.call" {
			if got := sp.Attributes["sipsvc.caller.class"]; got != "trusted" {
				t.Errorf("sipsvc.caller.class = %v, want trusted (no authenticator)", got)
			}
			return
		}
	}
	t.Fatal("no sipsvc.call span")
}
