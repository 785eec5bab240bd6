package telemetry

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

// scrape GETs /metrics from a real HTTP server and returns the sample lines (no comments).
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return out
}

func newTestMetrics(t *testing.T) (*Telemetry, *Metrics) {
	t.Helper()
	tel, err := Setup(context.Background(), Config{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m, err := NewMetrics(tel.MeterProvider)
	if err != nil {
		t.Fatal(err)
	}
	return tel, m
}

func TestMetricsScrape(t *testing.T) {
	tel, m := newTestMetrics(t)
	ctx := context.Background()

	// Two calls, one still up.
	for _, id := range []string{"c1", "c2"} {
		m.Observe(ctx, signaling.Event{Kind: signaling.EventCallCreated, CallID: id})
	}
	m.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, CallID: "c1", Leg: "A",
		Decision: &signaling.LegDecision{Leg: "A", Scheme: "sips", Transport: "TLS", Secure: true, Reason: "request-uri sips", Rule: "R8"}})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, CallID: "c1", Leg: "B1",
		Decision: &signaling.LegDecision{Leg: "B1", Scheme: "sip", Transport: "UDP", Reason: "dn contact sip", Rule: "R12"}})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventHeaderRewritten, CallID: "c1", Leg: "B1",
		Rewrite: &signaling.Rewrite{Leg: "B1", Header: "Contact", Before: "<sips:a>", After: "<sip:a>", Rule: "R22"}})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventHeaderRewritten, CallID: "c1", Leg: "B1",
		Rewrite: &signaling.Rewrite{Leg: "B1", Header: "Contact", Before: "<sips:b>", After: "<sip:b>", Rule: "R22"}})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventCallEnded, CallID: "c1", Cause: "leg B1 answered 486", Status: 486,
		Outcome: signaling.OutcomeBusy, Direction: signaling.DirectionInbound})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventRoutingFallback, CallID: "c2", Cause: "routing error: context deadline exceeded",
		FallbackReason: signaling.FallbackTimeout})
	// Leg events with no metric must not panic (nil Decision/Rewrite too).
	m.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventHeaderRewritten})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventLegAnswered, Status: 200})

	// Registrations: two added, one refreshed, one removed.
	b := &dn.Binding{}
	m.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationAdded, Binding: b})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationAdded, Binding: b})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationRefresh, Binding: b})
	m.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationRemoved, Binding: b})

	m.MessageIn("INVITE", 0, "TLS")
	m.MessageIn("INVITE", 0, "TLS")
	m.MessageIn("INVITE", 180, "UDP")
	m.MessageOut("INVITE", 0, "udp")
	m.MessageOut("BYE", 200, "TLS")
	m.MessageIn("FROBNICATE", 0, "SCTP")
	m.MessageIn("OPTIONS", 42, "TCP")
	m.TLSHandshake("inbound", "ok")
	m.TLSHandshake("outbound", "bad_certificate")
	m.ResponseDropped("TLS", "connection_gone")
	m.OutboundFlowGone()
	m.RoutingDone(3*time.Millisecond, "routed")
	m.RoutingDone(2*time.Second, "timeout")

	got := scrape(t, tel.MetricsHandler)
	want := map[string]string{
		`sipsvc_calls_active`:         "1",
		`sipsvc_calls_attempts_total`: "2",
		`sipsvc_calls_ended_total{sipsvc_call_direction="inbound",sipsvc_call_outcome="busy"}`:             "1",
		`sipsvc_legs_total{sip_scheme="sips",sip_scheme_rule="R8",sip_secure="true",sip_transport="TLS"}`:  "1",
		`sipsvc_legs_total{sip_scheme="sip",sip_scheme_rule="R12",sip_secure="false",sip_transport="UDP"}`: "1",
		`sipsvc_header_rewrites_total{sip_header="Contact",sip_rule="R22"}`:                                "2",
		`sipsvc_registrations_active`:                                                                       "1",
		`sipsvc_routing_fallbacks_total{error_type="timeout"}`:                                              "1",
		`sipsvc_sip_messages_received_total{sip_method="INVITE",sip_transport="TLS"}`:                       "2",
		`sipsvc_sip_messages_received_total{sip_method="INVITE",sip_status_code="180",sip_transport="UDP"}`: "1",
		`sipsvc_sip_messages_sent_total{sip_method="INVITE",sip_transport="UDP"}`:                           "1",
		`sipsvc_sip_messages_sent_total{sip_method="BYE",sip_status_code="200",sip_transport="TLS"}`:        "1",
		`sipsvc_sip_messages_received_total{sip_method="_OTHER",sip_transport="other"}`:                     "1",
		`sipsvc_sip_messages_received_total{sip_method="OPTIONS",sip_transport="TCP"}`:                      "1",
		`sipsvc_tls_handshakes_total{sipsvc_tls_direction="inbound",sipsvc_tls_result="ok"}`:                "1",
		`sipsvc_tls_handshakes_total{sipsvc_tls_direction="outbound",sipsvc_tls_result="bad_certificate"}`:  "1",
		`sipsvc_routing_decisions_total{sipsvc_routing_outcome="routed"}`:                                   "1",
		`sipsvc_sip_responses_dropped_total{sip_transport="TLS",sipsvc_sip_drop_reason="connection_gone"}`:  "1",
		`sipsvc_routing_decisions_total{sipsvc_routing_outcome="timeout"}`:                                  "1",
		`sipsvc_registrations_outbound_flows_gone_total`:                                                    "1",
		`sipsvc_routing_duration_seconds_count{sipsvc_routing_outcome="routed"}`:                            "1",
		`sipsvc_routing_duration_seconds_bucket{sipsvc_routing_outcome="routed",le="0.005"}`:                "1",
		`sipsvc_routing_duration_seconds_bucket{sipsvc_routing_outcome="routed",le="0.0025"}`:               "0",
		`sipsvc_routing_duration_seconds_bucket{sipsvc_routing_outcome="timeout",le="1"}`:                   "0",
		`sipsvc_routing_duration_seconds_bucket{sipsvc_routing_outcome="timeout",le="2.5"}`:                 "1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// Pre-built but unused label sets must not show up as zero series.
	if _, ok := got[`sipsvc_calls_ended_total{sipsvc_call_direction="inbound",sipsvc_call_outcome="answered"}`]; ok {
		t.Error("unused outcome exported")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("go collector missing")
	}
	if t.Failed() {
		var keys []string
		for k := range got {
			if strings.HasPrefix(k, "sipsvc_") {
				keys = append(keys, k+" "+got[k])
			}
		}
		t.Logf("sipsvc series:\n%s", strings.Join(keys, "\n"))
	}
}

// TestCallOutcome: the outcome label comes from the event's typed Outcome; Cause is never
// read (a callee's "leg B1 answered 480" is unavailable, not no_answer). An event without an
// Outcome falls back to its status alone.
func TestCallOutcome(t *testing.T) {
	for _, tc := range []struct {
		name    string
		outcome signaling.Outcome
		cause   string
		status  int
		want    string
	}{
		{"typed_busy", signaling.OutcomeBusy, "leg B1 answered 486", 486, "busy"},
		{"typed_no_answer_ring_timeout", signaling.OutcomeNoAnswer, "ring timeout", 408, "no_answer"},
		{"typed_unavailable_transport_timeout", signaling.OutcomeUnavailable, "no response: transaction timeout", 408, "unavailable"},
		{"typed_rejected_policy", signaling.OutcomeRejected, "policy strict (R19)", 480, "rejected"},
		{"typed_wins_over_status", signaling.OutcomeCancelled, "cancelled", 200, "cancelled"},
		{"untyped_callee_480_is_unavailable_not_no_answer", "", "leg B1 answered 480", 480, "unavailable"},
		{"untyped_cause_text_is_not_read", "", "no_answer", 486, "busy"},
		{"untyped_released_after_answer", "", "bye from A", 0, "answered"},
		{"untyped_503_unavailable", "", "", 503, "unavailable"},
		{"untyped_500_failed", "", "", 500, "failed"},
		{"untyped_404_rejected", "", "", 404, "rejected"},
		{"untyped_603_rejected", "", "", 603, "rejected"},
		{"unknown_typed_value", signaling.Outcome("weird"), "", 200, "other"},
		{"unplaceable_status", "", "", 42, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callOutcome(signaling.Event{Outcome: tc.outcome, Cause: tc.cause, Status: tc.status}); got != tc.want {
				t.Errorf("callOutcome(%q, %q, %d) = %q, want %q", tc.outcome, tc.cause, tc.status, got, tc.want)
			}
		})
	}
}

// TestFallbackType: the routing fallback label is the event's typed FallbackReason.
func TestFallbackType(t *testing.T) {
	for reason, want := range map[string]string{
		signaling.FallbackTimeout: "timeout",
		signaling.FallbackError:   "error",
		"routing timeout: context deadline exceeded; fallback via fallback": "other",
		"": "other",
	} {
		if got := fallbackType(reason); got != want {
			t.Errorf("fallbackType(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestCardinalityBound(t *testing.T) {
	tel, m := newTestMetrics(t)
	for i := range maxSeries * 2 {
		m.TLSHandshake("inbound", "err-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	got := scrape(t, tel.MetricsHandler)
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "sipsvc_tls_handshakes_total{") {
			n++
		}
	}
	if n > maxSeries+1 {
		t.Fatalf("%d series, want at most %d", n, maxSeries+1)
	}
	if got[`sipsvc_tls_handshakes_total{sipsvc_tls_direction="other",sipsvc_tls_result="other"}`] == "" {
		t.Fatal("no overflow series")
	}
}

func TestMetricsConcurrent(t *testing.T) {
	_, m := newTestMetrics(t)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				m.MessageIn("INVITE", 100+i%600, "UDP")
				m.Observe(context.Background(), signaling.Event{Kind: signaling.EventHeaderRewritten,
					Rewrite: &signaling.Rewrite{Header: "H" + string(rune('a'+g)), Rule: "R1"}})
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func TestMetricsHotPathAllocs(t *testing.T) {
	_, m := newTestMetrics(t)
	ctx := context.Background()
	ev := signaling.Event{Kind: signaling.EventLegSchemeDecided, Decision: &signaling.LegDecision{Scheme: "sips", Transport: "TLS", Secure: true, Rule: "R8"}}
	m.MessageIn("INVITE", 200, "UDP")
	m.Observe(ctx, ev)
	for name, f := range map[string]func(){
		"MessageIn":   func() { m.MessageIn("INVITE", 200, "UDP") },
		"MessageOut":  func() { m.MessageOut("ACK", 0, "TLS") },
		"RoutingDone": func() { m.RoutingDone(time.Millisecond, "routed") },
		"Observe":     func() { m.Observe(ctx, ev) },
	} {
		if a := testing.AllocsPerRun(200, f); a > 0 {
			t.Errorf("%s allocates %v times per call", name, a)
		}
	}
}

func TestNewMetricsNoop(t *testing.T) {
	m, err := NewMetrics(noop.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	m.MessageIn("INVITE", 0, "UDP")
	m.Observe(context.Background(), signaling.Event{Kind: signaling.EventCallCreated})
}

func BenchmarkMetrics(b *testing.B) {
	tel, err := Setup(context.Background(), Config{Getenv: envOf(nil)})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	m, err := NewMetrics(tel.MeterProvider)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rw := signaling.Event{Kind: signaling.EventHeaderRewritten, Rewrite: &signaling.Rewrite{Header: "Contact", Rule: "R22"}}
	b.Run("MessageIn/request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.MessageIn("INVITE", 0, "TLS")
		}
	})
	b.Run("MessageOut/response", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.MessageOut("INVITE", 200, "UDP")
		}
	})
	b.Run("RoutingDone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.RoutingDone(2*time.Millisecond, "routed")
		}
	})
	b.Run("Observe/rewrite", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Observe(ctx, rw)
		}
	})
	b.Run("MessageIn/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.MessageIn("BYE", 200, "TCP")
			}
		})
	})
}
