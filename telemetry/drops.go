package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

var _ signaling.ResponseDropCounter = (*Metrics)(nil)

// MetricResponsesDropped counts responses sipsvc did not send because the connection their
// request came on was gone, by transport and reason; docs/observability.md lists it.
const MetricResponsesDropped = "sipsvc.sip.responses.dropped"

// attrDropReason is the reason label of MetricResponsesDropped ("connection_gone").
const attrDropReason = attribute.Key("sipsvc.sip.drop.reason")

type dropKey struct{ transport, reason string }

func newDropSets() *optCache[dropKey] {
	return newOptCache(func(k dropKey) attribute.Set {
		return attribute.NewSet(sipconv.AttrSIPTransport.String(k.transport), attrDropReason.String(k.reason))
	}, dropKey{otherValue, otherValue})
}

// ResponseDropped implements signaling.ResponseDropCounter.
func (m *Metrics) ResponseDropped(transportName, reason string) {
	m.respDropped.Add(context.Background(), 1, m.drops.get(dropKey{transport: transport(transportName), reason: reason}).add...)
}
