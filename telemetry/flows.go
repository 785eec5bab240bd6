package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"

	"github.com/sipsvc/sipsvc/signaling"
)

var _ signaling.FlowMetrics = (*Metrics)(nil)

// MetricOutboundFlowsGone counts legs to RFC 5626 outbound bindings that were not sent
// because the binding's flow (the device's connection) was gone; docs/observability.md
// lists it.
const MetricOutboundFlowsGone = "sipsvc.registrations.outbound_flows_gone"

// flowMetrics is the part of Metrics that counts gone outbound flows.
type flowMetrics struct {
	flowsGone metric.Int64Counter
}

func (f *flowMetrics) initFlows(meter metric.Meter) error {
	var err error
	f.flowsGone, err = meter.Int64Counter(MetricOutboundFlowsGone, metric.WithUnit("{leg}"),
		metric.WithDescription("Legs to RFC 5626 outbound bindings not sent because the binding's flow was gone."))
	return err
}

// OutboundFlowGone implements signaling.FlowMetrics.
func (m *Metrics) OutboundFlowGone() { m.flowsGone.Add(context.Background(), 1) }
