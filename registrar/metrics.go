package registrar

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// MetricRefusals counts requests the registrar refused for a security reason, by
// AttrRefusal (docs/security.md, "Registration and digest").
const MetricRefusals = "sipsvc.registrar.refusals"

// AttrRefusal is the reason of a refusal, on the MetricRefusals counter and on the
// REGISTER span.
const AttrRefusal = attribute.Key("sipsvc.registrar.refusal")

// Refusal reasons, the values of AttrRefusal.
const (
	// RefusalBadCredentials: a wrong digest answer to a nonce we issued (403).
	RefusalBadCredentials = "bad_credentials"
	// RefusalBackoff: the (user, source IP) key is backing off after repeated failures (503).
	RefusalBackoff = "backoff"
	// RefusalNoPassword: a REGISTER for a self-registered DN without a password (403).
	RefusalNoPassword = "no_password"
	// RefusalTooManyContacts: more Contacts in one REGISTER than MaxContactsPerRegister (403).
	RefusalTooManyContacts = "too_many_contacts"
	// RefusalTooManyBindings: the DN would hold more than MaxBindingsPerDN bindings (403).
	RefusalTooManyBindings = "too_many_bindings"
	// RefusalURIMismatch: the digest uri is not the Request-URI (403).
	RefusalURIMismatch = "uri_mismatch"
)

// refusals is the MetricRefusals counter with one attribute set per reason, built once.
type refusals struct {
	counter metric.Int64Counter
}

func newRefusals(mp metric.MeterProvider) (refusals, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	c, err := mp.Meter(instrumentationName).Int64Counter(MetricRefusals,
		metric.WithDescription("Requests the registrar refused for a security reason, by reason."),
		metric.WithUnit("{request}"))
	if err != nil {
		return refusals{}, err
	}
	return refusals{counter: c}, nil
}

// refuse counts a refusal and marks the span of the request, when there is one.
func (r *Registrar) refuse(ctx context.Context, reason string) {
	r.refusals.counter.Add(ctx, 1, metric.WithAttributes(AttrRefusal.String(reason)))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(AttrRefusal.String(reason))
	}
}
