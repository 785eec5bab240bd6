package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sipsvc/sipsvc/signaling"
)

// MetricCallsRefused counts calls refused at admission (an anonymous caller, a target the
// caller may not reach, a call cap) or ended by the maximum call duration, by reason
// (signaling.Refused*).
const MetricCallsRefused = "sipsvc.calls.refused"

// AttrRefusedReason is the reason label of MetricCallsRefused.
const AttrRefusedReason = attribute.Key("sipsvc.refused.reason")

var _ signaling.AdmissionMetrics = (*Metrics)(nil)

// CallRefused implements signaling.AdmissionMetrics. The reasons are a small fixed set.
func (m *Metrics) CallRefused(reason string) {
	m.refused.Add(context.Background(), 1, metric.WithAttributes(AttrRefusedReason.String(reason)))
}
