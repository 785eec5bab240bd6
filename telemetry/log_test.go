package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

func TestLoggerAddsTraceAndSpanID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), sipconv.SpanCall)
	sc := span.SpanContext()

	var buf bytes.Buffer
	log, err := NewLogger(&buf, config.LogConfig{Level: "info", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	callLog := log.With(sipconv.LogCall("c-7")).With(sipconv.LogLegAttrs("B1", "abc@host")...)
	callLog.InfoContext(ctx, "leg answered", sipconv.LogStatus, 200)
	log.Info("no context")
	log.DebugContext(ctx, "filtered out")
	span.End()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String(),
		"call_id": "c-7", "leg": "B1", "sip_call_id": "abc@host", "status": float64(200), "msg": "leg answered",
	} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("trace_id without a span: %v", second)
	}
	if ended := rec.Ended(); len(ended) != 1 || ended[0].SpanContext().TraceID().String() != first["trace_id"] {
		t.Errorf("log trace id does not match the recorded span")
	}
}

func TestLoggerText(t *testing.T) {
	rec := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(rec))
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()

	var buf bytes.Buffer
	log, err := NewLogger(&buf, config.LogConfig{Level: "debug", Format: "text"})
	if err != nil {
		t.Fatal(err)
	}
	log.DebugContext(ctx, "hello")
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "trace_id="+span.SpanContext().TraceID().String()) ||
		!strings.Contains(out, "span_id="+span.SpanContext().SpanID().String()) {
		t.Fatalf("text line: %s", out)
	}
}

func TestLoggerConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg     config.LogConfig
		wantErr bool
		level   slog.Level
	}{
		{cfg: config.LogConfig{}, level: slog.LevelInfo},
		{cfg: config.LogConfig{Level: "warn", Format: "json"}, level: slog.LevelWarn},
		{cfg: config.LogConfig{Level: "error", Format: "text"}, level: slog.LevelError},
		{cfg: config.LogConfig{Level: "loud"}, wantErr: true},
		{cfg: config.LogConfig{Format: "xml"}, wantErr: true},
	} {
		log, err := NewLogger(&bytes.Buffer{}, tc.cfg)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%+v: want an error", tc.cfg)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !log.Enabled(context.Background(), tc.level) || log.Enabled(context.Background(), tc.level-1) {
			t.Errorf("%+v: wrong level", tc.cfg)
		}
	}
}

func TestTraceHandlerGroup(t *testing.T) {
	var buf bytes.Buffer
	h := NewTraceHandler(slog.NewJSONHandler(&buf, nil))
	if NewTraceHandler(h) != h {
		t.Error("double wrap")
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	slog.New(h).WithGroup("g").InfoContext(ctx, "m", "k", 1)
	if !strings.Contains(buf.String(), `"g":{"k":1,"trace_id":"`) {
		t.Fatalf("got %s", buf.String())
	}
}

func BenchmarkLoggerWithSpan(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	log, _ := NewLogger(discard{}, config.LogConfig{Format: "json"})
	b.ReportAllocs()
	for b.Loop() {
		log.InfoContext(ctx, "x", "k", 1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestErrorHandler(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, config.LogConfig{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	ErrorHandler(log).Handle(errors.New("export failed: connection refused"))
	if !strings.Contains(buf.String(), `"error":"export failed: connection refused"`) || !strings.Contains(buf.String(), `"level":"WARN"`) {
		t.Fatalf("got %s", buf.String())
	}
}
