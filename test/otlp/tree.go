package otlp

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// FromSDK converts spans recorded in process (tracetest.SpanRecorder.Ended(),
// tracetest.InMemoryExporter.GetSpans().Snapshots()) into Spans, so in-process and
// end-to-end tests share the same helpers (Named, Children, Tree…).
func FromSDK(in []sdktrace.ReadOnlySpan) []Span {
	out := make([]Span, 0, len(in))
	for _, s := range in {
		sp := Span{
			Name:       s.Name(),
			Kind:       strings.ToUpper(s.SpanKind().String()),
			TraceID:    s.SpanContext().TraceID().String(),
			SpanID:     s.SpanContext().SpanID().String(),
			Start:      s.StartTime(),
			End:        s.EndTime(),
			StatusCode: sdkStatus(s.Status().Code),
			Attributes: sdkAttrs(s.Attributes()),
			Scope:      s.InstrumentationScope().Name,
		}
		if p := s.Parent(); p.IsValid() {
			sp.ParentSpanID = p.SpanID().String()
		}
		sp.StatusMessage = s.Status().Description
		if s.Resource() != nil {
			sp.Resource = sdkAttrs(s.Resource().Attributes())
		}
		for _, e := range s.Events() {
			sp.Events = append(sp.Events, Event{Name: e.Name, Time: e.Time, Attributes: sdkAttrs(e.Attributes)})
		}
		for _, l := range s.Links() {
			sp.Links = append(sp.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String(), Attributes: sdkAttrs(l.Attributes)})
		}
		out = append(out, sp)
	}
	return out
}

func sdkStatus(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "OK"
	case codes.Error:
		return "ERROR"
	}
	return "UNSET"
}

func sdkAttrs(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		switch kv.Value.Type() {
		case attribute.BOOL:
			m[string(kv.Key)] = kv.Value.AsBool()
		case attribute.INT64:
			m[string(kv.Key)] = kv.Value.AsInt64()
		case attribute.FLOAT64:
			m[string(kv.Key)] = kv.Value.AsFloat64()
		case attribute.STRING:
			m[string(kv.Key)] = kv.Value.AsString()
		default:
			m[string(kv.Key)] = kv.Value.AsInterface()
		}
	}
	return m
}

// Tree renders the spans as an indented tree, one trace after the other, for exact
// comparisons in tests:
//
//	sipsvc.call INTERNAL
//	  sip.leg.inbound SERVER sip.leg=A sip.scheme=sips
//	    * sip.header.rewrite sip.header=Contact sip.header.after=… sip.rule=R8
//
// Each span line shows its name, kind, the attributes named in attrs that it has (in that
// order) and " ERROR" when its status is an error. Events follow their span, prefixed by
// "* ", with all their attributes sorted by key. Siblings are ordered by start time, then name.
// Spans whose parent is not among spans are roots.
func Tree(spans []Span, attrs ...string) string {
	byID := map[string]bool{}
	for _, s := range spans {
		byID[s.TraceID+s.SpanID] = true
	}
	children := map[string][]Span{}
	var roots []Span
	for _, s := range spans {
		if s.ParentSpanID == "" || !byID[s.TraceID+s.ParentSpanID] {
			roots = append(roots, s)
			continue
		}
		children[s.TraceID+s.ParentSpanID] = append(children[s.TraceID+s.ParentSpanID], s)
	}
	var b strings.Builder
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		ind := strings.Repeat("  ", depth)
		fmt.Fprintf(&b, "%s%s %s", ind, s.Name, s.Kind)
		for _, k := range attrs {
			if v, ok := s.Attributes[k]; ok {
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
		if s.StatusCode == "ERROR" {
			b.WriteString(" ERROR")
		}
		b.WriteByte('\n')
		for _, e := range s.Events {
			fmt.Fprintf(&b, "%s  * %s", ind, e.Name)
			keys := make([]string, 0, len(e.Attributes))
			for k := range e.Attributes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%v", k, e.Attributes[k])
			}
			b.WriteByte('\n')
		}
		kids := children[s.TraceID+s.SpanID]
		sortSpans(kids)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	sortSpans(roots)
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

func sortSpans(s []Span) {
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].Start.Equal(s[j].Start) {
			return s[i].Start.Before(s[j].Start)
		}
		return s[i].Name < s[j].Name
	})
}

// Duration is End minus Start.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }
