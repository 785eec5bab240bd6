// Package otlp is a real OTLP trace receiver for tests: it implements the OpenTelemetry
// collector's TraceService over gRPC (and the /v1/traces endpoint of OTLP/HTTP), keeps every
// span it receives, and lets a test wait for spans by name and read their attributes, events
// and parents.
//
//	rcv := otlp.NewReceiver(t)                          // gRPC on 127.0.0.1:0
//	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.Endpoint()} // http://127.0.0.1:port
//	… run sipsvc with env …
//	span := rcv.RequireSpan(t, "sipsvc.call", 5*time.Second)
//	if span.Str("sip.leg") != "A" { … }
//
// For OTLP/HTTP, serve Receiver.HTTPHandler with httptest.NewServer and point
// OTEL_EXPORTER_OTLP_ENDPOINT at the server's URL with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf.
//
// In-process tests that record spans with the SDK (tracetest.SpanRecorder) convert them with
// FromSDK and use the same helpers; Tree renders a span tree with chosen attributes and all
// events, for exact comparisons.
package otlp

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Receiver collects the spans exported to it. Its methods are safe for concurrent use.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer

	lis  net.Listener
	srv  *grpc.Server
	done chan struct{} // closed when Serve returned

	mu      sync.Mutex // guards spans, exports and changed
	spans   []Span
	exports int
	changed chan struct{} // closed and replaced whenever spans are added
}

var _ collectortrace.TraceServiceServer = (*Receiver)(nil)

// Start starts a receiver with an OTLP/gRPC server on 127.0.0.1:0. Call Stop when done.
func Start() (*Receiver, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("otlp receiver listen: %w", err)
	}
	r := &Receiver{lis: lis, srv: grpc.NewServer(), done: make(chan struct{}), changed: make(chan struct{})}
	collectortrace.RegisterTraceServiceServer(r.srv, r)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(lis) // returns when Stop is called
	}()
	return r, nil
}

// NewReceiver starts a receiver and stops it when the test ends; it fails the test if the
// receiver cannot start.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	r, err := Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// Addr is the gRPC listen address, host:port.
func (r *Receiver) Addr() string { return r.lis.Addr().String() }

// Endpoint is the gRPC endpoint as a plain-text URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
func (r *Receiver) Endpoint() string { return "http://" + r.Addr() }

// Env returns the environment (KEY=value) that makes a sipsvc process export its spans to
// this receiver over plain-text gRPC, in small batches every 50 ms so a test sees them while
// the process runs. Append it to os.Environ() for exec.Cmd.Env.
func (r *Receiver) Env() []string {
	return []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint(),
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_BSP_SCHEDULE_DELAY=50",
	}
}

// Stop stops the gRPC server and waits for it. Spans received stay readable.
func (r *Receiver) Stop() {
	r.srv.Stop()
	<-r.done
}

// Export implements the collector's TraceService.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// HTTPHandler serves OTLP/HTTP trace export (POST /v1/traces, protobuf or JSON, optionally
// gzip-compressed) into the same receiver.
func (r *Receiver) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		isJSON := req.Header.Get("Content-Type") == "application/json"
		if isJSON {
			err = protojson.Unmarshal(b, &msg)
		} else {
			err = proto.Unmarshal(b, &msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(&msg)
		var out []byte
		if isJSON {
			out, err = protojson.Marshal(&collectortrace.ExportTraceServiceResponse{})
		} else {
			out, err = proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(out)
	})
	return mux
}

func (r *Receiver) add(req *collectortrace.ExportTraceServiceRequest) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := ss.GetScope().GetName()
			for _, s := range ss.GetSpans() {
				got = append(got, convert(s, res, scope))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exports++
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Exports is the number of export requests received (gRPC and HTTP).
func (r *Receiver) Exports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exports
}

// Spans returns a copy of every span received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Reset forgets the spans received so far.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = nil
}

// WaitFor waits until cond holds for the spans received so far and returns them, or returns
// ctx's error with the spans seen last.
func (r *Receiver) WaitFor(ctx context.Context, cond func([]Span) bool) ([]Span, error) {
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		ch := r.changed
		r.mu.Unlock()
		if cond(spans) {
			return spans, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return spans, fmt.Errorf("wait for spans (have %d): %w", len(spans), ctx.Err())
		}
	}
}

// WaitForSpan waits for the first span named name.
func (r *Receiver) WaitForSpan(ctx context.Context, name string) (Span, error) {
	spans, err := r.WaitFor(ctx, func(s []Span) bool { return len(Named(s, name)) > 0 })
	if err != nil {
		return Span{}, fmt.Errorf("span %q: %w (received: %v)", name, err, names(spans))
	}
	return Named(spans, name)[0], nil
}

// RequireSpan waits up to timeout for a span named name and fails the test without one.
func (r *Receiver) RequireSpan(tb testing.TB, name string, timeout time.Duration) Span {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := r.WaitForSpan(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Span is one received span with its values decoded.
type Span struct {
	Name string
	// Kind is INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER or UNSPECIFIED.
	Kind string
	// TraceID, SpanID and ParentSpanID are lower-case hex; ParentSpanID is "" for a root.
	TraceID, SpanID, ParentSpanID string
	Start, End                    time.Time
	// StatusCode is UNSET, OK or ERROR.
	StatusCode    string
	StatusMessage string
	// Attributes holds string, bool, int64, float64, []byte, []any and map[string]any values.
	Attributes map[string]any
	Events     []Event
	Links      []Link
	// Resource holds the resource attributes (service.name…); Scope is the tracer name.
	Resource map[string]any
	Scope    string
}

// Event is one span event.
type Event struct {
	Name       string
	Time       time.Time
	Attributes map[string]any
}

// Link is one span link.
type Link struct {
	TraceID, SpanID string
	Attributes      map[string]any
}

// Attr returns the attribute key and whether it is set.
func (s Span) Attr(key string) (any, bool) { v, ok := s.Attributes[key]; return v, ok }

// Str returns a string attribute, or "" when it is missing or not a string.
func (s Span) Str(key string) string { v, _ := s.Attributes[key].(string); return v }

// Int returns an integer attribute, or 0.
func (s Span) Int(key string) int64 { v, _ := s.Attributes[key].(int64); return v }

// Bool returns a boolean attribute, or false.
func (s Span) Bool(key string) bool { v, _ := s.Attributes[key].(bool); return v }

// EventsNamed returns the span's events called name, in order.
func (s Span) EventsNamed(name string) []Event {
	var out []Event
	for _, e := range s.Events {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// Str returns a string attribute of the event, or "".
func (e Event) Str(key string) string { v, _ := e.Attributes[key].(string); return v }

// Named returns the spans called name.
func Named(spans []Span, name string) []Span {
	var out []Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Children returns the spans whose parent is parent.
func Children(spans []Span, parent Span) []Span {
	var out []Span
	for _, s := range spans {
		if s.TraceID == parent.TraceID && s.ParentSpanID == parent.SpanID && s.ParentSpanID != "" {
			out = append(out, s)
		}
	}
	return out
}

// Trace returns the spans of one trace.
func Trace(spans []Span, traceID string) []Span {
	var out []Span
	for _, s := range spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

func names(spans []Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

func convert(s *tracepb.Span, res map[string]any, scope string) Span {
	out := Span{
		Name:          s.GetName(),
		Kind:          kindName(s.GetKind()),
		TraceID:       hex.EncodeToString(s.GetTraceId()),
		SpanID:        hex.EncodeToString(s.GetSpanId()),
		ParentSpanID:  hex.EncodeToString(s.GetParentSpanId()),
		Start:         time.Unix(0, int64(s.GetStartTimeUnixNano())),
		End:           time.Unix(0, int64(s.GetEndTimeUnixNano())),
		StatusCode:    statusName(s.GetStatus().GetCode()),
		StatusMessage: s.GetStatus().GetMessage(),
		Attributes:    attrs(s.GetAttributes()),
		Resource:      res,
		Scope:         scope,
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, Event{Name: e.GetName(), Time: time.Unix(0, int64(e.GetTimeUnixNano())), Attributes: attrs(e.GetAttributes())})
	}
	for _, l := range s.GetLinks() {
		out.Links = append(out.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId()), Attributes: attrs(l.GetAttributes())})
	}
	return out
}

func kindName(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "INTERNAL"
	case tracepb.Span_SPAN_KIND_SERVER:
		return "SERVER"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "CLIENT"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "PRODUCER"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "CONSUMER"
	}
	return "UNSPECIFIED"
}

func statusName(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "OK"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "ERROR"
	}
	return "UNSET"
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		var out []any
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, value(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrs(x.KvlistValue.GetValues())
	}
	return nil
}
