// Package telemetry builds sipsvc's OpenTelemetry tracer and meter providers, its Prometheus
// /metrics handler, its slog logger and the Metrics type that turns signaling events into
// OpenTelemetry instruments.
//
// main calls Setup once, hands Telemetry.TracerProvider and Telemetry.MeterProvider to the
// components that need them (never through the otel globals), serves Telemetry.MetricsHandler
// at /metrics and calls Telemetry.Shutdown on exit so the last spans are flushed. Tracing is
// off, at no cost, unless an OTLP endpoint is configured.
//
// The names of spans, attributes, events and log fields live in the leaf package
// github.com/sipsvc/sipsvc/telemetry/sipconv; docs/observability.md describes the model.
package telemetry
