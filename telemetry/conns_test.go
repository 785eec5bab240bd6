package telemetry

import (
	"context"
	"testing"
)

// TestConnClosedMetric: connection refusals are exported by transport and reason (issue 10).
func TestConnClosedMetric(t *testing.T) {
	tel, err := Setup(context.Background(), Config{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	m, err := NewMetrics(tel.MeterProvider)
	if err != nil {
		t.Fatal(err)
	}
	m.ConnClosed("TCP", "max_per_source")
	m.ConnClosed("TCP", "max_per_source")
	m.ConnClosed("tls", "handshake_timeout")
	m.ConnClosed("SCTP", "idle_timeout")
	got := scrape(t, tel.MetricsHandler)
	for k, want := range map[string]string{
		`sipsvc_connections_closed_total{sip_transport="TCP",sipsvc_connection_reason="max_per_source"}`:    "2",
		`sipsvc_connections_closed_total{sip_transport="TLS",sipsvc_connection_reason="handshake_timeout"}`: "1",
		`sipsvc_connections_closed_total{sip_transport="other",sipsvc_connection_reason="idle_timeout"}`:    "1",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}
