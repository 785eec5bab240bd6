package signaling

// In-process span tests: the exact span tree docs/observability.md ("Span model") promises
// for one call, recorded with the SDK's span recorder. Where the tree differs from the doc
// the assertion stays and fails: the doc is the contract.

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

// spanSink records every span of a B2BUA in memory, and the attributes each span was
// started with (what a sampler sees).
type spanSink struct {
	rec     *tracetest.SpanRecorder
	tp      *sdktrace.TracerProvider
	sampler *startSampler
}

// startSampler is the SDK default sampler (parent based, always on) that also keeps the
// attributes given to tracer.Start.
type startSampler struct {
	next sdktrace.Sampler
	mu   sync.Mutex
	seen []startedSpan
}

type startedSpan struct {
	name  string
	attrs map[string]attribute.Value
}

func (s *startSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	m := map[string]attribute.Value{}
	for _, kv := range p.Attributes {
		m[string(kv.Key)] = kv.Value
	}
	s.mu.Lock()
	s.seen = append(s.seen, startedSpan{p.Name, m})
	s.mu.Unlock()
	return s.next.ShouldSample(p)
}

func (s *startSampler) Description() string { return "startSampler" }

// startAttrs returns the start attributes of the spans called name.
func (s *startSampler) startAttrs(name string) []map[string]attribute.Value {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]attribute.Value
	for _, st := range s.seen {
		if st.name == name {
			out = append(out, st.attrs)
		}
	}
	return out
}

func newSpanSink(t testing.TB) *spanSink {
	t.Helper()
	s := &spanSink{rec: tracetest.NewSpanRecorder(), sampler: &startSampler{next: sdktrace.ParentBased(sdktrace.AlwaysSample())}}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.rec), sdktrace.WithSampler(s.sampler))
	t.Cleanup(func() { _ = s.tp.Shutdown(context.Background()) })
	return s
}

// tracedB2BUA starts a B2BUA whose TracerProvider records into a new spanSink.
func tracedB2BUA(t *testing.T, mut func(*Config), ds ...dn.DN) (*b2bua, *spanSink) {
	t.Helper()
	sink := newSpanSink(t)
	b := startB2BUA(t, func(c *Config) {
		c.TracerProvider = sink.tp
		if mut != nil {
			mut(c)
		}
	}, ds...)
	return b, sink
}

// wait waits until calls sipsvc.call spans have ended and every started span has ended
// (in-dialog transactions end after the call span), then returns all spans.
func (s *spanSink) wait(t testing.TB, calls int) []otlp.Span {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ended := s.rec.Ended()
		n := 0
		for _, e := range ended {
			if e.Name() == sc.SpanCall {
				n++
			}
		}
		if n >= calls && len(ended) == len(s.rec.Started()) {
			// Give a span started right after the last end (a late transaction) a moment.
			time.Sleep(100 * time.Millisecond)
			if len(s.rec.Ended()) == len(ended) && len(s.rec.Started()) == len(ended) {
				return otlp.FromSDK(ended)
			}
			continue
		}
		if time.Now().After(deadline) {
			spans := otlp.FromSDK(ended)
			t.Fatalf("%d %s spans ended (want %d), %d of %d spans ended; tree so far:\n%s", n, sc.SpanCall, calls, len(ended), len(s.rec.Started()), otlp.Tree(spans, treeAttrs...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// treeAttrs are the span attributes shown in the compared trees: the ones whose values do
// not depend on ports, Call-IDs or ids.
var treeAttrs = []string{
	string(sc.AttrCallOrigin), string(sc.AttrSIPCaller), string(sc.AttrSIPDialed), string(sc.AttrCallOutcome),
	string(sc.AttrSIPLeg), string(sc.AttrSIPMethod), string(sc.AttrSIPScheme), string(sc.AttrSIPTransport),
	string(sc.AttrSIPSecure), string(sc.AttrSIPSchemeReason), string(sc.AttrSIPSchemeRule), string(sc.AttrSIPDN),
	string(sc.AttrSIPStatusCode), string(sc.AttrRoutingSource), string(sc.AttrRoutingOutcome), string(sc.AttrRoutingTargets),
	string(sc.AttrSIPTraceparentIn), string(sc.AttrSIPTraceparentOut),
}

// tree renders spans (sip.ack events left out: their place among the other events is not
// specified; ackEvents checks them) with addresses replaced by names.
func spanTree(spans []otlp.Span, names map[string]string) string {
	cp := make([]otlp.Span, len(spans))
	for i, s := range spans {
		cp[i] = s
		cp[i].Events = nil
		for _, e := range s.Events {
			if e.Name != sc.EventACK {
				cp[i].Events = append(cp[i].Events, e)
			}
		}
	}
	var pairs []string
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		pairs = append(pairs, k, names[k])
	}
	return strings.NewReplacer(pairs...).Replace(otlp.Tree(cp, treeAttrs...))
}

// compareSpanTree fails with both trees and the lines that differ.
func compareSpanTree(t *testing.T, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	in := func(l string, set []string) bool {
		for _, s := range set {
			if s == l {
				return true
			}
		}
		return false
	}
	var d strings.Builder
	for _, l := range wl {
		if !in(l, gl) {
			fmt.Fprintf(&d, "- %s\n", l)
		}
	}
	for _, l := range gl {
		if !in(l, wl) {
			fmt.Fprintf(&d, "+ %s\n", l)
		}
	}
	t.Errorf("span tree differs from docs/observability.md\n--- got:\n%s\n--- want:\n%s\n--- lines missing (-) / unexpected (+):\n%s", got, want, d.String())
}

// attrPresent marks an attribute that must be set, whatever its value.
type attrPresentValue struct{}

var attrPresent = attrPresentValue{}

// checkSpanAttrs reports every attribute of want that span lacks or has with another value.
func checkSpanAttrs(t *testing.T, what string, s otlp.Span, want map[string]any) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := s.Attributes[k]
		if !ok {
			t.Errorf("%s (%s %s): attribute %s missing (docs/observability.md, Attributes)", what, s.Name, s.Kind, k)
			continue
		}
		w := want[k]
		if _, any := w.(attrPresentValue); any {
			continue
		}
		if i, isInt := w.(int); isInt {
			w = int64(i)
		}
		if v != w {
			t.Errorf("%s (%s %s): %s = %v (%T), want %v (%T)", what, s.Name, s.Kind, k, v, v, w, w)
		}
	}
}

// one returns the single span matching name and leg (leg "" matches any).
func spanOne(t *testing.T, spans []otlp.Span, name, leg string) otlp.Span {
	t.Helper()
	var out []otlp.Span
	for _, s := range otlp.Named(spans, name) {
		if leg == "" || s.Str(string(sc.AttrSIPLeg)) == leg {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d spans %s with sip.leg=%q, want 1; tree:\n%s", len(out), name, leg, otlp.Tree(spans, treeAttrs...))
	}
	return out[0]
}

// find returns the spans matching name, kind and leg.
func spansFind(spans []otlp.Span, name, kind, leg string) []otlp.Span {
	var out []otlp.Span
	for _, s := range otlp.Named(spans, name) {
		if s.Kind == kind && (leg == "" || s.Str(string(sc.AttrSIPLeg)) == leg) {
			out = append(out, s)
		}
	}
	return out
}

func splitAddrPort(t testing.TB, addr string) (string, int64) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, int64(n)
}

// commonChecks are the rules every call's spans follow: one trace, every span carries the
// call id, legs and the route are children of the call span, the call span ends last,
// attributes known at start are given to Start.
func commonChecks(t *testing.T, spans []otlp.Span, sink *spanSink) otlp.Span {
	t.Helper()
	call := spanOne(t, spans, sc.SpanCall, "")
	if call.Kind != "INTERNAL" {
		t.Errorf("%s kind %s, want INTERNAL", sc.SpanCall, call.Kind)
	}
	id := call.Str(string(sc.AttrCallID))
	if id == "" {
		t.Errorf("%s lacks %s", sc.SpanCall, sc.AttrCallID)
	}
	for _, s := range spans {
		if s.TraceID != call.TraceID {
			t.Errorf("span %s in trace %s, call in %s: one call is one trace", s.Name, s.TraceID, call.TraceID)
		}
		if s.Scope != "github.com/sipsvc/sipsvc/signaling" {
			continue
		}
		if got := s.Str(string(sc.AttrCallID)); got != id {
			t.Errorf("span %s (%s) has sipsvc.call.id %q, want %q: every span of a call carries it", s.Name, s.Str("sip.leg"), got, id)
		}
		if s.Name == sc.SpanLegInbound || s.Name == sc.SpanLegOutbound || s.Name == sc.SpanRoute {
			if s.ParentSpanID != call.SpanID {
				t.Errorf("span %s (%s) parent %s, want the call span %s", s.Name, s.Str("sip.leg"), s.ParentSpanID, call.SpanID)
			}
			if s.End.After(call.End) {
				t.Errorf("span %s (%s) ends after the call span: the call span ends when the last leg ended", s.Name, s.Str("sip.leg"))
			}
		}
	}
	// Attributes known at start go in trace.WithAttributes at Start, so samplers see them.
	for _, name := range []string{sc.SpanLegInbound, sc.SpanLegOutbound} {
		for _, at := range sink.sampler.startAttrs(name) {
			for _, k := range []attribute.Key{sc.AttrSIPMethod, sc.AttrSIPCallID, sc.AttrSIPLeg, sc.AttrSIPTransport, sc.AttrNetworkPeerAddress} {
				if _, ok := at[string(k)]; !ok {
					t.Errorf("%s started without %s (attributes known at start go in trace.WithAttributes at Start)", name, k)
				}
			}
		}
	}
	for _, at := range sink.sampler.startAttrs(sc.TransactionSpanName("BYE")) {
		for _, k := range []attribute.Key{sc.AttrSIPMethod, sc.AttrSIPCallID, sc.AttrSIPLeg} {
			if _, ok := at[string(k)]; !ok {
				t.Errorf("sip.transaction BYE started without %s", k)
			}
		}
	}
	return call
}

// legAttrs are the attributes docs/observability.md lists for every leg span.
func legAttrs(leg, sipCallID, ruri, transport string, peer, local, server string, t *testing.T) map[string]any {
	ph, pp := splitAddrPort(t, peer)
	lh, lp := splitAddrPort(t, local)
	sh, sp := splitAddrPort(t, server)
	return map[string]any{
		"sip.leg":               leg,
		"sip.method":            "INVITE",
		"sip.call_id":           sipCallID,
		"sip.request_uri":       ruri,
		"sip.transport":         transport,
		"network.transport":     sc.NetworkTransport(transport),
		"network.peer.address":  ph,
		"network.peer.port":     pp,
		"network.local.address": lh,
		"network.local.port":    lp,
		"server.address":        sh,
		"server.port":           sp,
		"sip.status_code":       200,
		"sip.cause":             attrPresent,
	}
}

// txAttrs are the attributes docs/observability.md lists for a transaction span.
func txAttrs(leg, method, sipCallID, transport string, peer string, t *testing.T) map[string]any {
	m := map[string]any{
		"sip.leg":           leg,
		"sip.method":        method,
		"sip.call_id":       sipCallID,
		"sip.status_code":   200,
		"sip.transport":     transport,
		"network.transport": sc.NetworkTransport(transport),
		"sip.request_uri":   attrPresent,
	}
	if peer != "" {
		ph, _ := splitAddrPort(t, peer)
		m["network.peer.address"] = ph
	}
	m["network.peer.port"] = attrPresent
	return m
}

// ackEvents checks that ACKs are events on the leg span (they get no span of their own).
func ackEvents(t *testing.T, spans []otlp.Span, legs ...string) {
	t.Helper()
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "sip.transaction ACK") {
			t.Errorf("ACK got a span %q: ACK and CANCEL are events (sip.ack) on the leg span", s.Name)
		}
	}
	for _, leg := range legs {
		var l []otlp.Span
		l = append(l, spansFind(spans, sc.SpanLegInbound, "SERVER", leg)...)
		l = append(l, spansFind(spans, sc.SpanLegOutbound, "CLIENT", leg)...)
		if len(l) != 1 {
			t.Errorf("leg %s: %d leg spans", leg, len(l))
			continue
		}
		if len(l[0].EventsNamed(sc.EventACK)) == 0 {
			t.Errorf("leg %s span (%s) has no %s event for the ACK of the 2xx (docs: ACK and CANCEL … add them as events sip.ack to the leg span)", leg, l[0].Name, sc.EventACK)
		}
	}
}

// byeLink checks the relayed BYE: a CLIENT span under the far leg with a link to the
// SERVER span of the BYE received.
func byeLink(t *testing.T, spans []otlp.Span, fromLeg, toLeg string) {
	t.Helper()
	srv := spansFind(spans, sc.TransactionSpanName("BYE"), "SERVER", fromLeg)
	cli := spansFind(spans, sc.TransactionSpanName("BYE"), "CLIENT", toLeg)
	if len(srv) != 1 {
		t.Errorf("%d sip.transaction BYE SERVER spans on leg %s, want 1", len(srv), fromLeg)
	}
	if len(cli) != 1 {
		t.Errorf("%d sip.transaction BYE CLIENT spans on leg %s, want 1 (the BYE sipsvc relays on leg %s: docs 'A relayed in-dialog request … gives two spans')", len(cli), toLeg, toLeg)
	}
	if len(srv) != 1 || len(cli) != 1 {
		return
	}
	if len(cli[0].Links) != 1 || cli[0].Links[0].SpanID != srv[0].SpanID || cli[0].Links[0].TraceID != srv[0].TraceID {
		t.Errorf("relayed BYE CLIENT span links %+v, want one link to the SERVER span %s", cli[0].Links, srv[0].SpanID)
	}
}
