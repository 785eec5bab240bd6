package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// NewLogger returns a logger writing to w in cfg.Format ("json", or "text" for development;
// empty means text) at cfg.Level ("debug", "info", "warn", "error"; empty means info). Every
// record logged with a context that holds a valid span gets trace_id and span_id fields, so
// log with the *Context methods (InfoContext…) wherever a context exists.
func NewLogger(w io.Writer, cfg config.LogConfig) (*slog.Logger, error) {
	var level slog.Level
	switch cfg.Level {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch cfg.Format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", cfg.Format)
	}
	return slog.New(NewTraceHandler(h)), nil
}

// NewTraceHandler wraps h so that every record handled with a context holding a valid span
// context gets the trace_id and span_id attributes (hex, as shown by Jaeger).
func NewTraceHandler(h slog.Handler) slog.Handler {
	if th, ok := h.(*traceHandler); ok {
		return th
	}
	return &traceHandler{next: h}
}

// traceHandler adds trace_id and span_id from the context to each record.
type traceHandler struct {
	next slog.Handler
}

// Enabled implements slog.Handler.
func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			// r is our copy and the caller does not reuse it, so adding in place is safe.
			r.AddAttrs(
				slog.String(sipconv.LogTraceID, sc.TraceID().String()),
				slog.String(sipconv.LogSpanID, sc.SpanID().String()),
			)
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{next: h.next.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{next: h.next.WithGroup(name)}
}

// ErrorHandler returns an OpenTelemetry error handler that logs SDK errors (failed span
// exports, dropped spans) through log at warn level. It is not installed by Setup: main may
// install it with otel.SetErrorHandler, the only way the SDK reports export failures.
func ErrorHandler(log *slog.Logger) otel.ErrorHandler {
	return otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", sipconv.LogError, err.Error())
	})
}
