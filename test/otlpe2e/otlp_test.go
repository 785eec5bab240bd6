package otlpe2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/devcert"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

// TestE2E_OTLPExportMetricsLogs runs sipsvc with OTLP/gRPC export to a receiver started
// here, places one sips→sip call through it (alice over TLS with a sips Request-URI to DN
// 6000, a plain UDP phone with the traceparent option), hangs up, scrapes /metrics, then
// stops sipsvc with SIGTERM. The batch processor's delay is longer than the test, so the
// spans can only arrive through the flush on shutdown.
func TestE2E_OTLPExportMetricsLogs(t *testing.T) {
	dir := t.TempDir()
	bin := buildSipsvc(t, dir)
	rcv := otlp.NewReceiver(t)

	pair, err := devcert.Generate("sipsvc e2e", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cert.pem": pair.CertPEM, "key.pem": pair.KeyPEM, "ca.pem": pair.CAPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bob := newPhone(t, "bob", "UDP", nil)
	alice := newPhone(t, "alice", "TLS", &tls.Config{RootCAs: pair.Pool(), MinVersion: tls.VersionTLS12})

	udp, tcp, tlsPort, grpcPort, httpPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`data_dir: %q
sip:
  hostname: 127.0.0.1
  udp: [%q]
  tcp: [%q]
  tls: [%q]
  ring_timeout: 10s
tls:
  cert_file: %q
  key_file: %q
  ca_file: %q
api:
  grpc_addr: %q
  http_addr: %q
log:
  level: debug
  format: json
telemetry:
  service_name: sipsvc-e2e
dns:
  - {number: "6000", type: extension, contact: "sip:6000@%s", traceparent: true, allow_anonymous: true}
`, filepath.Join(dir, "data"), addr(udp), addr(tcp), addr(tlsPort),
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem"),
		addr(grpcPort), addr(httpPort), bob.Addr)
	cfgPath := filepath.Join(dir, "sipsvc.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The receiver's environment, then a batch delay longer than the test: only the
	// shutdown flush can deliver the spans. OTEL_SERVICE_NAME wins over the config file.
	env := append(rcv.Env(), "OTEL_BSP_SCHEDULE_DELAY=120000", "OTEL_SERVICE_NAME=sipsvc")
	p := startProc(t, dir, env, bin, "--config", cfgPath)
	httpBase := "http://" + addr(httpPort)
	waitHTTP(t, p, httpBase+"/readyz", 15*time.Second)
	waitTCP(t, addr(tlsPort), 5*time.Second)

	before, _ := scrape(t, httpBase+"/metrics")

	// One call: sips over TLS → plain sip over UDP (R14 downgrade on B1, R22 Contact on A).
	d := alice.call(fmt.Sprintf("sips:6000@%s", addr(tlsPort)), addr(tlsPort), "sips")
	binv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	if code := d.Bye(); code != 200 {
		t.Fatalf("BYE → %d", code)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)

	// Metrics, before SIGTERM.
	var after metrics
	var page string
	deadline := time.Now().Add(3 * time.Second)
	for {
		after, page = scrape(t, httpBase+"/metrics")
		if v, _ := after.sum("sipsvc_calls_ended_total"); v >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkMetrics(t, before, after, page)

	if n := len(rcv.Spans()); n != 0 {
		t.Logf("%d spans arrived before shutdown (batch delay should have held them)", n)
	}
	p.stop(t, 10*time.Second)
	if p.err != nil {
		t.Errorf("sipsvc exit after SIGTERM: %v\n%s", p.err, p.tail(3000))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlp.Span) bool {
		return len(otlp.Named(s, sc.SpanCall)) > 0 && len(otlp.Named(s, sc.SpanLegOutbound)) > 0
	})
	if err != nil {
		t.Fatalf("spans after SIGTERM: %v\n%s", err, p.tail(3000))
	}
	call := otlp.Named(spans, sc.SpanCall)[0]
	checkSpans(t, spans, call, d, binv, addr(tlsPort), addr(udp), bob.Addr)
	checkLogs(t, p, call, d.Invite.CallID().Value())
}

func checkSpans(t *testing.T, all []otlp.Span, call otlp.Span, d *dialog, binv *sip.Request, tlsAddr, udpAddr, bobAddr string) {
	t.Helper()
	spans := otlp.Trace(all, call.TraceID)
	t.Logf("trace as received:\n%s", otlp.Tree(spans, "sip.leg", "sip.scheme", "sip.transport", "sip.scheme.rule", "sip.status_code"))
	if call.Kind != "INTERNAL" || call.ParentSpanID != "" {
		t.Errorf("sipsvc.call kind %s parent %q, want an INTERNAL root", call.Kind, call.ParentSpanID)
	}
	if got := call.Resource["service.name"]; got != "sipsvc" {
		t.Errorf("resource service.name %v, want sipsvc (OTEL_SERVICE_NAME)", got)
	}
	if call.Scope != "github.com/sipsvc/sipsvc/signaling" {
		t.Errorf("scope %q, want the signaling import path", call.Scope)
	}
	for k, v := range map[string]any{"sipsvc.call.origin": "sip", "sip.caller": "alice", "sip.dialed": "6000", "sipsvc.call.outcome": "answered"} {
		if got := call.Attributes[k]; got != v {
			t.Errorf("sipsvc.call %s = %v, want %v", k, got, v)
		}
	}
	callID := call.Str("sipsvc.call.id")
	var a, b1 []otlp.Span
	for _, s := range spans {
		if s.Str("sipsvc.call.id") != callID && s.Scope == call.Scope {
			t.Errorf("span %s has sipsvc.call.id %q, want %q", s.Name, s.Str("sipsvc.call.id"), callID)
		}
		switch {
		case s.Name == sc.SpanLegInbound:
			a = append(a, s)
		case s.Name == sc.SpanLegOutbound:
			b1 = append(b1, s)
		}
	}
	if len(a) != 1 || len(b1) != 1 {
		t.Fatalf("%d inbound and %d outbound leg spans, want 1 and 1", len(a), len(b1))
	}
	leg := func(s otlp.Span, kind string, want map[string]any) {
		t.Helper()
		if s.Kind != kind || s.ParentSpanID != call.SpanID {
			t.Errorf("%s kind %s parent %s, want %s child of sipsvc.call", s.Name, s.Kind, s.ParentSpanID, kind)
		}
		for k, v := range want {
			if got, ok := s.Attributes[k]; !ok || (v != nil && got != v) {
				t.Errorf("%s %s = %v (set %v), want %v", s.Name, k, got, ok, v)
			}
		}
	}
	leg(a[0], "SERVER", map[string]any{
		"sip.leg": "A", "sip.scheme": "sips", "sip.transport": "TLS", "sip.secure": true, "sip.scheme.reason": "request-uri sips",
		"sip.scheme.rule": "R22", "network.transport": "tcp", "sip.call_id": d.Invite.CallID().Value(), "sip.method": "INVITE",
		"tls.protocol.name": "tls", "tls.protocol.version": nil, "client.address": "127.0.0.1",
	})
	leg(b1[0], "CLIENT", map[string]any{
		"sip.leg": "B1", "sip.scheme": "sip", "sip.transport": "UDP", "sip.secure": false, "sip.scheme.reason": "dn contact sip",
		"sip.scheme.rule": nil, "network.transport": "udp", "sip.call_id": binv.CallID().Value(), "sip.dn": "6000",
		"server.address": "127.0.0.1", "sip.status_code": int64(200), "sip.traceparent.sent": true,
	})
	rw := map[string]otlp.Event{}
	for _, e := range b1[0].EventsNamed(sc.EventHeaderRewrite) {
		rw[e.Str("sip.header")] = e
	}
	for h, w := range map[string][3]string{
		"From":    {"sips:alice@127.0.0.1", "sip:alice@127.0.0.1", "R14"},
		"To":      {"sips:6000@" + tlsAddr, "sip:6000@" + bobAddr, "R14"},
		"Contact": {"sips:alice@127.0.0.1:5999", "sip:alice@" + udpAddr, "R14"},
		"Via":     {"SIP/2.0/TLS", "SIP/2.0/UDP", "R14"},
	} {
		e, ok := rw[h]
		if !ok {
			t.Errorf("B1 has no sip.header.rewrite event for %s (events %v)", h, b1[0].Events)
			continue
		}
		if e.Str("sip.header.before") != w[0] || e.Str("sip.header.after") != w[1] || e.Str("sip.rule") != w[2] || e.Str("sip.leg") != "B1" {
			t.Errorf("B1 %s rewrite %v, want %s → %s rule %s", h, e.Attributes, w[0], w[1], w[2])
		}
	}
	var contactA bool
	for _, e := range a[0].EventsNamed(sc.EventHeaderRewrite) {
		if e.Str("sip.header") == "Contact" && e.Str("sip.rule") == "R22" && e.Str("sip.header.after") == "sips:6000@"+tlsAddr {
			contactA = true
		}
	}
	if !contactA {
		t.Errorf("leg A has no R22 Contact rewrite to sips:6000@%s (events %v)", tlsAddr, a[0].Events)
	}
	if len(a[0].EventsNamed(sc.EventSchemeDecided)) != 1 || len(b1[0].EventsNamed(sc.EventSchemeDecided)) != 1 {
		t.Errorf("sip.scheme.decided events: A %d, B1 %d, want 1 each", len(a[0].EventsNamed(sc.EventSchemeDecided)), len(b1[0].EventsNamed(sc.EventSchemeDecided)))
	}
	route := otlp.Named(spans, sc.SpanRoute)
	if len(route) != 1 || route[0].ParentSpanID != call.SpanID {
		t.Errorf("sipsvc.route spans %d, want 1 child of the call", len(route))
	}
	byeA := 0
	for _, s := range otlp.Named(spans, sc.TransactionSpanName("BYE")) {
		if s.Kind == "SERVER" && s.ParentSpanID == a[0].SpanID {
			byeA++
		}
	}
	if byeA != 1 {
		t.Errorf("%d sip.transaction BYE SERVER spans under leg A, want 1", byeA)
	}
	// The DN's traceparent option: bob's INVITE carries the B1 span's context.
	tp := ""
	if h := binv.GetHeader("traceparent"); h != nil {
		tp = h.Value()
	}
	if want := "00-" + call.TraceID + "-" + b1[0].SpanID + "-01"; tp != want {
		t.Errorf("traceparent sent to DN 6000 %q, want %q", tp, want)
	}
}

// checkMetrics compares the counters before and after the call.
func checkMetrics(t *testing.T, before, after metrics, page string) {
	t.Helper()
	fails := 0
	moved := func(name string, labels ...string) {
		t.Helper()
		b, _ := before.sum(name, labels...)
		a, ok := after.sum(name, labels...)
		if !ok || a <= b {
			fails++
			t.Errorf("%s%s did not move: before %v after %v (present %v)", name, fmtLabels(labels), b, a, ok)
		}
	}
	moved("sipsvc_calls_attempts_total")
	moved("sipsvc_calls_ended_total", `sipsvc_call_outcome="answered"`)
	moved("sipsvc_legs_total", `sip_scheme="sips"`, `sip_transport="TLS"`)
	moved("sipsvc_legs_total", `sip_scheme="sip"`, `sip_transport="UDP"`)
	moved("sipsvc_header_rewrites_total", `sip_header="From"`, `sip_rule="R14"`)
	moved("sipsvc_header_rewrites_total", `sip_header="Contact"`, `sip_rule="R22"`)
	moved("sipsvc_sip_messages_received_total", `sip_method="INVITE"`)
	moved("sipsvc_sip_messages_received_total", `sip_method="BYE"`)
	moved("sipsvc_sip_messages_sent_total", `sip_method="INVITE"`)
	moved("sipsvc_sip_messages_sent_total", `sip_method="BYE"`)
	moved("sipsvc_sip_messages_sent_total", `sip_status_code="200"`)
	moved("sipsvc_tls_handshakes_total", `sipsvc_tls_direction="inbound"`, `sipsvc_tls_result="ok"`)
	moved("sipsvc_routing_decisions_total", `sipsvc_routing_outcome="builtin"`)
	moved("sipsvc_routing_duration_seconds_count")
	if v, ok := after.sum("sipsvc_calls_active"); !ok || v != 0 {
		fails++
		t.Errorf("sipsvc_calls_active = %v (present %v) after the call ended, want 0", v, ok)
	}
	if fails > 0 {
		var lines []string
		for _, l := range strings.Split(page, "\n") {
			if strings.HasPrefix(l, "sipsvc_") {
				lines = append(lines, l)
			}
		}
		t.Logf("sipsvc series on /metrics:\n%s", strings.Join(lines, "\n"))
	}
}

// checkLogs finds the JSON log lines about the call: they carry its trace id, a span id, the
// call id and the Call-ID of leg A.
func checkLogs(t *testing.T, p *proc, call otlp.Span, aCallID string) {
	t.Helper()
	callID := call.Str("sipsvc.call.id")
	var about, traced int
	for _, rec := range p.logLines(t) {
		if rec[sc.LogCallID] != callID {
			continue
		}
		about++
		line := fmt.Sprint(rec)
		if rec[sc.LogTraceID] != call.TraceID {
			t.Errorf("log line about the call has trace_id %v, want %s: %s", rec[sc.LogTraceID], call.TraceID, line)
			continue
		}
		if s, _ := rec[sc.LogSpanID].(string); len(s) != 16 {
			t.Errorf("log line about the call lacks span_id: %s", line)
		}
		if !strings.Contains(line, aCallID) {
			t.Errorf("log line about the call lacks leg A's Call-ID %s: %s", aCallID, line)
		}
		traced++
	}
	if about == 0 {
		t.Errorf("no JSON log line with %s=%s (signaling logs no call line with its ctx at level debug?)\n%s", sc.LogCallID, callID, p.tail(3000))
	}
	t.Logf("%d log lines about the call, %d with its trace_id", about, traced)
}
