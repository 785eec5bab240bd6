package telemetry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// Interface guards.
var (
	_ signaling.Metrics  = (*Metrics)(nil)
	_ signaling.Observer = (*Metrics)(nil)
)

// Instrument names (OpenTelemetry); docs/observability.md lists their Prometheus names.
const (
	MetricCallsActive         = "sipsvc.calls.active"
	MetricCallsAttempts       = "sipsvc.calls.attempts"
	MetricCallsEnded          = "sipsvc.calls.ended"
	MetricLegs                = "sipsvc.legs"
	MetricHeaderRewrites      = "sipsvc.header.rewrites"
	MetricRegistrationsActive = "sipsvc.registrations.active"
	MetricRoutingDuration     = "sipsvc.routing.duration"
	MetricRoutingDecisions    = "sipsvc.routing.decisions"
	MetricRoutingFallbacks    = "sipsvc.routing.fallbacks"
	MetricMessagesReceived    = "sipsvc.sip.messages.received"
	MetricMessagesSent        = "sipsvc.sip.messages.sent"
	MetricTLSHandshakes       = "sipsvc.tls.handshakes"
)

// Metric attribute keys that are not in sipconv (they name metric labels only).
const (
	attrTLSDirection = attribute.Key("sipsvc.tls.direction")
	attrTLSResult    = attribute.Key("sipsvc.tls.result")
)

// RoutingBuckets are the bucket boundaries, in seconds, of the routing duration histogram.
var RoutingBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// maxSeries bounds the distinct attribute sets of one instrument; beyond it values are
// recorded with the instrument's "other" set.
const maxSeries = 256

// otherValue replaces label values that are unknown or over the cardinality bound.
const otherValue = "other"

// Metrics records sipsvc's metrics. It implements signaling.Metrics (the SIP hot path) and
// signaling.Observer (call, leg, rewrite, registration and routing events). All methods are
// safe for concurrent use, never block and, once an attribute combination has been seen, do
// not allocate.
type Metrics struct {
	callsActive     metric.Int64UpDownCounter
	callsAttempts   metric.Int64Counter
	callsEnded      metric.Int64Counter
	legs            metric.Int64Counter
	rewrites        metric.Int64Counter
	regsActive      metric.Int64UpDownCounter
	routingDuration metric.Float64Histogram
	routingDecide   metric.Int64Counter
	routingFallback metric.Int64Counter
	msgIn           metric.Int64Counter
	msgOut          metric.Int64Counter
	tlsHandshakes   metric.Int64Counter
	refused         metric.Int64Counter // admission.go
	respDropped     metric.Int64Counter // drops.go

	noAttrs measureOpts

	ended     *optCache[endedKey]
	legSets   *optCache[legKey]
	rewrite   *optCache[rewriteKey]
	routing   *optCache[string]
	fallbacks *optCache[string]
	messages  *optCache[msgKey]
	tls       *optCache[tlsKey]
	drops     *optCache[dropKey]

	connMetrics // connection refusals (conns.go)
	flowMetrics // gone RFC 5626 outbound flows (flows.go)
}

type legKey struct {
	scheme, transport, rule string
	secure                  bool
}

type rewriteKey struct{ header, rule string }

type endedKey struct{ outcome, direction string }

type msgKey struct {
	method, transport string
	status            int
}

type tlsKey struct{ direction, result string }

// NewMetrics creates the instruments on a meter of mp. Use Telemetry.MeterProvider, or a
// noop.MeterProvider to record nothing.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter(sipconv.InstrumentationName)
	m := &Metrics{noAttrs: newMeasureOpts(*attribute.EmptySet())}
	var errs []error
	i64 := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	ud := func(name, unit, desc string) metric.Int64UpDownCounter {
		c, err := meter.Int64UpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	m.callsActive = ud(MetricCallsActive, "{call}", "Calls in progress.")
	m.callsAttempts = i64(MetricCallsAttempts, "{call}", "Calls started (inbound INVITEs and MakeCall).")
	m.callsEnded = i64(MetricCallsEnded, "{call}", "Calls ended, by outcome and direction.")
	m.legs = i64(MetricLegs, "{leg}", "Legs whose scheme was decided, by scheme, transport, secure flag and rule id (docs/sips.md).")
	m.rewrites = i64(MetricHeaderRewrites, "{rewrite}", "Headers rewritten, by header and rule id (docs/sips.md).")
	m.regsActive = ud(MetricRegistrationsActive, "{registration}", "Registration bindings in force.")
	m.routingDecide = i64(MetricRoutingDecisions, "{decision}", "Routing decisions, by outcome.")
	m.routingFallback = i64(MetricRoutingFallbacks, "{fallback}", "Routing fallbacks after a routing service failure, by error type.")
	m.msgIn = i64(MetricMessagesReceived, "{message}", "SIP messages received, by method, status (responses) and transport.")
	m.msgOut = i64(MetricMessagesSent, "{message}", "SIP messages sent, by method, status (responses) and transport.")
	m.tlsHandshakes = i64(MetricTLSHandshakes, "{handshake}", "TLS handshakes on SIP connections, by direction and result.")
	m.refused = i64(MetricCallsRefused, "{call}", "Calls refused at admission or ended by a cap, by reason.")
	m.respDropped = i64(MetricResponsesDropped, "{response}", "Responses not sent because their request's connection was gone, by transport and reason.")
	m.drops = newDropSets()
	h, err := meter.Float64Histogram(MetricRoutingDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to reach a routing decision, by outcome."),
		metric.WithExplicitBucketBoundaries(RoutingBuckets...))
	errs = append(errs, err)
	m.routingDuration = h
	errs = append(errs, m.initConns(meter))
	errs = append(errs, m.initFlows(meter))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("create sipsvc instruments: %w", err)
		}
	}

	m.ended = newOptCache(func(k endedKey) attribute.Set {
		return attribute.NewSet(sipconv.AttrCallOutcome.String(k.outcome), sipconv.AttrCallDirection.String(k.direction))
	}, endedKey{otherValue, otherValue})
	m.legSets = newOptCache(func(k legKey) attribute.Set {
		return attribute.NewSet(
			sipconv.AttrSIPScheme.String(k.scheme),
			sipconv.AttrSIPTransport.String(k.transport),
			sipconv.AttrSIPSecure.Bool(k.secure),
			sipconv.AttrSIPSchemeRule.String(k.rule))
	}, legKey{otherValue, otherValue, otherValue, false})
	m.rewrite = newOptCache(func(k rewriteKey) attribute.Set {
		return attribute.NewSet(sipconv.AttrSIPHeader.String(k.header), sipconv.AttrSIPRule.String(k.rule))
	}, rewriteKey{otherValue, otherValue})
	m.routing = newOptCache(func(o string) attribute.Set {
		return attribute.NewSet(sipconv.AttrRoutingOutcome.String(o))
	}, otherValue)
	m.fallbacks = newOptCache(func(o string) attribute.Set {
		return attribute.NewSet(sipconv.AttrErrorType.String(o))
	}, otherValue)
	m.messages = newOptCache(func(k msgKey) attribute.Set {
		if k.status == 0 {
			return attribute.NewSet(sipconv.AttrSIPMethod.String(k.method), sipconv.AttrSIPTransport.String(k.transport))
		}
		return attribute.NewSet(sipconv.AttrSIPMethod.String(k.method), sipconv.AttrSIPStatusCode.Int(k.status),
			sipconv.AttrSIPTransport.String(k.transport))
	}, msgKey{method: "_OTHER", transport: otherValue})
	m.tls = newOptCache(func(k tlsKey) attribute.Set {
		return attribute.NewSet(attrTLSDirection.String(k.direction), attrTLSResult.String(k.result))
	}, tlsKey{otherValue, otherValue})

	// Pre-build the common sets so the hot path finds them.
	for _, o := range []string{sipconv.OutcomeAnswered, sipconv.OutcomeBusy, sipconv.OutcomeNoAnswer,
		sipconv.OutcomeCancelled, sipconv.OutcomeRejected, sipconv.OutcomeUnavailable, sipconv.OutcomeFailed} {
		for _, d := range []string{sipconv.DirectionInbound, sipconv.DirectionOutbound} {
			m.ended.get(endedKey{o, d})
		}
	}
	for _, o := range []string{"routed", "rejected", "error", "timeout", "fallback_dns", "builtin", "unavailable"} {
		m.routing.get(o)
	}
	for _, meth := range sipMethods {
		for _, tr := range sipTransports {
			m.messages.get(msgKey{method: meth, transport: tr})
		}
	}
	return m, nil
}

// Observe implements signaling.Observer.
func (m *Metrics) Observe(ctx context.Context, ev signaling.Event) {
	switch ev.Kind {
	case signaling.EventCallCreated:
		m.callsActive.Add(ctx, 1, m.noAttrs.add...)
		m.callsAttempts.Add(ctx, 1, m.noAttrs.add...)
	case signaling.EventCallEnded:
		m.callsActive.Add(ctx, -1, m.noAttrs.add...)
		m.callsEnded.Add(ctx, 1, m.ended.get(endedKey{callOutcome(ev), direction(ev.Direction)}).add...)
	case signaling.EventLegSchemeDecided:
		if d := ev.Decision; d != nil {
			k := legKey{scheme: schemeLabel(d.Scheme), transport: transport(d.Transport), rule: d.Rule, secure: d.Secure}
			m.legs.Add(ctx, 1, m.legSets.get(k).add...)
		}
	case signaling.EventHeaderRewritten:
		if r := ev.Rewrite; r != nil {
			m.rewrites.Add(ctx, 1, m.rewrite.get(rewriteKey{header: r.Header, rule: r.Rule}).add...)
		}
	case signaling.EventRegistrationAdded:
		m.regsActive.Add(ctx, 1, m.noAttrs.add...)
	case signaling.EventRegistrationRemoved:
		m.regsActive.Add(ctx, -1, m.noAttrs.add...)
	case signaling.EventRoutingFallback:
		m.routingFallback.Add(ctx, 1, m.fallbacks.get(fallbackType(ev.FallbackReason)).add...)
	}
}

// MessageIn implements signaling.Metrics.
func (m *Metrics) MessageIn(method string, status int, transportName string) {
	m.msgIn.Add(context.Background(), 1, m.messages.get(messageKey(method, status, transportName)).add...)
}

// MessageOut implements signaling.Metrics.
func (m *Metrics) MessageOut(method string, status int, transportName string) {
	m.msgOut.Add(context.Background(), 1, m.messages.get(messageKey(method, status, transportName)).add...)
}

// TLSHandshake implements signaling.Metrics.
func (m *Metrics) TLSHandshake(direction, result string) {
	m.tlsHandshakes.Add(context.Background(), 1, m.tls.get(tlsKey{direction: direction, result: result}).add...)
}

// RoutingDone implements signaling.Metrics.
func (m *Metrics) RoutingDone(d time.Duration, outcome string) {
	o := m.routing.get(outcome)
	ctx := context.Background()
	m.routingDuration.Record(ctx, d.Seconds(), o.rec...)
	m.routingDecide.Add(ctx, 1, o.add...)
}

// callOutcome is a call_ended event's typed Outcome when it is one of the sipconv.Outcome*
// values; an event without one (an Observer fed by hand) falls back to its final status
// (0 means answered and later released). The free-text Cause is never read.
func callOutcome(ev signaling.Event) string {
	switch o := string(ev.Outcome); o {
	case sipconv.OutcomeAnswered, sipconv.OutcomeBusy, sipconv.OutcomeNoAnswer, sipconv.OutcomeCancelled,
		sipconv.OutcomeRejected, sipconv.OutcomeUnavailable, sipconv.OutcomeFailed:
		return o
	case "":
		if o := sipconv.OutcomeForStatus(ev.Status); o != "" {
			return o
		}
	}
	return otherValue
}

// direction keeps the two known call directions as label values; others become "other".
func direction(d string) string {
	switch d {
	case sipconv.DirectionInbound, sipconv.DirectionOutbound:
		return d
	}
	return otherValue
}

// fallbackType is a routing_fallback event's typed FallbackReason as a label value.
func fallbackType(reason string) string {
	switch reason {
	case signaling.FallbackTimeout, signaling.FallbackError:
		return reason
	}
	return otherValue
}

// sipMethods are the methods kept as label values; others become "_OTHER".
var sipMethods = []string{"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "SUBSCRIBE",
	"NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}

// sipTransports are the transports kept as label values; others become "other".
var sipTransports = []string{"UDP", "TCP", "TLS", "WS", "WSS"}

func messageKey(method string, status int, transportName string) msgKey {
	k := msgKey{method: "_OTHER", transport: transport(transportName)}
	// Return the canonical constant so the cache key never retains a caller's buffer.
	up := strings.ToUpper(method)
	for _, s := range sipMethods {
		if up == s {
			k.method = s
			break
		}
	}
	if status >= 100 && status <= 699 {
		k.status = status
	}
	return k
}

func transport(t string) string {
	up := strings.ToUpper(t)
	for _, s := range sipTransports {
		if up == s {
			return s
		}
	}
	return otherValue
}

func schemeLabel(scheme string) string {
	switch strings.ToLower(scheme) {
	case "sips":
		return "sips"
	case "sip":
		return "sip"
	}
	return otherValue
}

// measureOpts holds the ready-made option slices for one attribute set, so recording needs
// no allocation (a variadic call with a fresh slice would allocate).
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMeasureOpts(set attribute.Set) measureOpts {
	o := metric.WithAttributeSet(set)
	return measureOpts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// optCache maps a label key to its pre-built options. Reads are lock-free (an atomically
// published, never mutated map); a new key copies the map under mu. At most maxSeries keys
// are kept; further keys share the options built for other.
type optCache[K comparable] struct {
	m     atomic.Pointer[map[K]measureOpts]
	build func(K) attribute.Set
	other measureOpts

	mu sync.Mutex // serialises writers of m
}

func newOptCache[K comparable](build func(K) attribute.Set, other K) *optCache[K] {
	c := &optCache[K]{build: build, other: newMeasureOpts(build(other))}
	empty := map[K]measureOpts{}
	c.m.Store(&empty)
	return c
}

func (c *optCache[K]) get(k K) measureOpts {
	if o, ok := (*c.m.Load())[k]; ok {
		return o
	}
	return c.insert(k)
}

func (c *optCache[K]) insert(k K) measureOpts {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.m.Load()
	if o, ok := cur[k]; ok {
		return o
	}
	if len(cur) >= maxSeries {
		return c.other
	}
	next := make(map[K]measureOpts, len(cur)+1)
	for kk, v := range cur {
		next[kk] = v
	}
	o := newMeasureOpts(c.build(k))
	next[k] = o
	c.m.Store(&next)
	return o
}
