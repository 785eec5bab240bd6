package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

var _ signaling.ConnMetrics = (*Metrics)(nil)

// MetricConnsClosed counts inbound TCP/TLS connections refused over a cap or closed at a
// deadline (package connlimit), by transport and reason.
const MetricConnsClosed = "sipsvc.connections.closed"

// attrConnReason is the connlimit reason: max_conns, max_per_source, handshake_timeout,
// handshake_failed, idle_timeout, message_timeout.
const attrConnReason = attribute.Key("sipsvc.connection.reason")

type connKey struct{ transport, reason string }

// connMetrics is the part of Metrics that counts connection refusals.
type connMetrics struct {
	connsClosed metric.Int64Counter
	conns       *optCache[connKey]
}

func (c *connMetrics) initConns(meter metric.Meter) error {
	var err error
	c.connsClosed, err = meter.Int64Counter(MetricConnsClosed, metric.WithUnit("{connection}"),
		metric.WithDescription("Inbound TCP/TLS connections refused over a cap or closed at a deadline, by transport and reason."))
	c.conns = newOptCache(func(k connKey) attribute.Set {
		return attribute.NewSet(sipconv.AttrSIPTransport.String(k.transport), attrConnReason.String(k.reason))
	}, connKey{otherValue, otherValue})
	return err
}

// ConnClosed implements signaling.ConnMetrics.
func (m *Metrics) ConnClosed(transportName, reason string) {
	m.connsClosed.Add(context.Background(), 1, m.conns.get(connKey{transport: transport(transportName), reason: reason}).add...)
}
