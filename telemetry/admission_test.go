package telemetry

import (
	"testing"

	"github.com/sipsvc/sipsvc/signaling"
)

// TestCallRefusedScrape: refused calls are counted by reason and scraped as
// sipsvc_calls_refused_total{sipsvc_refused_reason=…}.
func TestCallRefusedScrape(t *testing.T) {
	tel, m := newTestMetrics(t)
	m.CallRefused(signaling.RefusedAnonymous)
	m.CallRefused(signaling.RefusedAnonymous)
	m.CallRefused(signaling.RefusedCapSource)
	got := scrape(t, tel.MetricsHandler)
	for series, want := range map[string]string{
		`sipsvc_calls_refused_total{sipsvc_refused_reason="anonymous"}`:  "2",
		`sipsvc_calls_refused_total{sipsvc_refused_reason="cap_source"}`: "1",
	} {
		if got[series] != want {
			t.Errorf("%s = %q, want %q", series, got[series], want)
		}
	}
}
