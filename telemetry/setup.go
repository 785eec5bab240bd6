package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sipsvc/sipsvc/config"
)

// DefaultServiceName is the service.name used when neither OTEL_SERVICE_NAME, nor
// OTEL_RESOURCE_ATTRIBUTES, nor the config file names one.
const DefaultServiceName = "sipsvc"

// Protocols accepted for OTLP trace export.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Config is what Setup needs.
type Config struct {
	// Telemetry is the telemetry section of the config file. The OTEL_* environment variables
	// read through Getenv win over it.
	Telemetry config.TelemetryConfig
	// Getenv reads the environment; nil means os.Getenv. Tests pass a map lookup.
	Getenv func(string) string
	// Version is written as the service.version resource attribute when not empty.
	Version string
}

// Telemetry holds the providers built by Setup. Its fields are read-only after Setup.
type Telemetry struct {
	// TracerProvider creates tracers. It is a no-op provider when tracing is off.
	TracerProvider trace.TracerProvider
	// MeterProvider creates meters; its metrics are served by MetricsHandler.
	MeterProvider metric.MeterProvider
	// Propagator is W3C trace context plus baggage. main may install it with
	// otel.SetTextMapPropagator; otelgrpc and otelhttp use the global one by default.
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus text format for GET /metrics.
	MetricsHandler http.Handler
	// Tracing reports whether spans are exported (an OTLP endpoint is configured).
	Tracing bool
	// Endpoint and Protocol are the resolved OTLP trace endpoint and protocol ("" when off).
	Endpoint string
	Protocol string

	tp *sdktrace.TracerProvider // nil when tracing is off
	mp *sdkmetric.MeterProvider
}

// Propagator returns the propagator sipsvc uses everywhere: W3C traceparent/tracestate and
// W3C baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup builds the tracer provider (OTLP over gRPC or HTTP, or a no-op provider when no
// endpoint is configured), the meter provider with its Prometheus exporter on a private
// registry, and the /metrics handler. It starts no network connection: the OTLP gRPC client
// connects lazily. Call Shutdown on exit.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	res, err := newResource(ctx, cfg, getenv)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Propagator: Propagator()}

	if err := t.setupMetrics(res); err != nil {
		return nil, err
	}

	ex, err := resolveExport(cfg.Telemetry, getenv)
	if err != nil {
		return nil, errors.Join(err, t.mp.Shutdown(ctx))
	}
	if !ex.enabled {
		t.TracerProvider = noop.NewTracerProvider()
		return t, nil
	}
	sampler, err := newSampler(cfg.Telemetry, getenv)
	if err != nil {
		return nil, errors.Join(err, t.mp.Shutdown(ctx))
	}
	exp, err := newExporter(ctx, ex)
	if err != nil {
		return nil, errors.Join(err, t.mp.Shutdown(ctx))
	}
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	t.TracerProvider = t.tp
	t.Tracing = true
	t.Endpoint = ex.endpoint
	t.Protocol = ex.protocol
	return t, nil
}

// Shutdown flushes the spans still queued, stops the exporters and the meter provider. It
// honours ctx's deadline; after it the providers record nothing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown tracer provider: %w", err))
		}
	}
	if t.mp != nil {
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ForceFlush exports the spans queued so far without shutting down.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	if err := t.tp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}

func (t *Telemetry) setupMetrics(res *resource.Resource) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fmt.Errorf("register process collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return fmt.Errorf("prometheus exporter: %w", err)
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.MeterProvider = t.mp
	t.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return nil
}

// export is the resolved OTLP trace export configuration.
type export struct {
	enabled  bool
	protocol string
	// endpoint is what the exporter is given: host:port (gRPC without scheme) or a URL.
	endpoint string
	insecure bool
	headers  map[string]string
	timeout  time.Duration
	gzip     bool
}

// first returns the first non-empty value of the environment variables keys.
func first(getenv func(string) string, keys ...string) (string, string) {
	for _, k := range keys {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v, k
		}
	}
	return "", ""
}

func resolveExport(tc config.TelemetryConfig, getenv func(string) string) (export, error) {
	var ex export
	if b, _ := strconv.ParseBool(getenv("OTEL_SDK_DISABLED")); b {
		return ex, nil
	}
	if v, _ := first(getenv, "OTEL_TRACES_EXPORTER"); v != "" {
		switch v {
		case "none":
			return ex, nil
		case "otlp":
		default:
			return ex, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", v)
		}
	}

	ex.protocol = tc.OTLPProtocol
	if v, _ := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); v != "" {
		ex.protocol = v
	}
	if ex.protocol == "" {
		ex.protocol = ProtocolGRPC
	}
	if ex.protocol != ProtocolGRPC && ex.protocol != ProtocolHTTPProtobuf {
		return ex, fmt.Errorf("otlp protocol %q: want %s or %s", ex.protocol, ProtocolGRPC, ProtocolHTTPProtobuf)
	}

	ex.insecure = tc.Insecure
	if v, k := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return ex, fmt.Errorf("%s=%q: %w", k, v, err)
		}
		ex.insecure = b
	}

	raw, key := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if raw == "" {
		raw = strings.TrimSpace(tc.OTLPEndpoint)
		key = "telemetry.otlp_endpoint"
	}
	if raw == "" {
		return ex, nil // tracing off
	}
	ep, insecure, err := endpointFor(ex.protocol, raw, key == "OTEL_EXPORTER_OTLP_ENDPOINT", ex.insecure)
	if err != nil {
		return ex, fmt.Errorf("%s=%q: %w", key, raw, err)
	}
	ex.endpoint, ex.insecure = ep, insecure

	if v, k := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"); v != "" {
		h, err := parseKeyValues(v)
		if err != nil {
			return ex, fmt.Errorf("%s: %w", k, err)
		}
		ex.headers = h
	}
	if v, k := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return ex, fmt.Errorf("%s=%q: want a positive number of milliseconds", k, v)
		}
		ex.timeout = time.Duration(ms) * time.Millisecond
	}
	if v, k := first(getenv, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"); v != "" {
		switch v {
		case "gzip":
			ex.gzip = true
		case "none":
		default:
			return ex, fmt.Errorf("%s=%q: want gzip or none", k, v)
		}
	}
	ex.enabled = true
	return ex, nil
}

// endpointFor normalises an endpoint for the protocol. For gRPC the result is a URL when
// raw has a scheme (which then decides TLS), else host:port. For HTTP the result is always a
// full URL: a base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) gets /v1/traces appended, any other
// endpoint without a path gets /v1/traces, and one without scheme gets http or https by insecure.
func endpointFor(protocol, raw string, base, insecure bool) (string, bool, error) {
	hasScheme := strings.Contains(raw, "://")
	if protocol == ProtocolGRPC {
		if !hasScheme {
			if _, _, err := splitHostPort(raw); err != nil {
				return "", false, err
			}
			return raw, insecure, nil
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", false, fmt.Errorf("parse endpoint: %w", err)
		}
		switch u.Scheme {
		case "http":
			insecure = true
		case "https":
			insecure = false
		default:
			return "", false, fmt.Errorf("scheme %q: want http or https", u.Scheme)
		}
		if u.Host == "" {
			return "", false, errors.New("no host")
		}
		return u.Scheme + "://" + u.Host, insecure, nil
	}
	if !hasScheme {
		scheme := "https://"
		if insecure {
			scheme = "http://"
		}
		raw = scheme + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("parse endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", false, errors.New("no host")
	}
	switch {
	case base:
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	case u.Path == "" || u.Path == "/":
		u.Path = "/v1/traces"
	}
	return u.String(), u.Scheme == "http", nil
}

func splitHostPort(hp string) (string, string, error) {
	i := strings.LastIndexByte(hp, ':')
	if i <= 0 || i == len(hp)-1 {
		return "", "", fmt.Errorf("%q is not host:port", hp)
	}
	return hp[:i], hp[i+1:], nil
}

func newExporter(ctx context.Context, ex export) (sdktrace.SpanExporter, error) {
	switch ex.protocol {
	case ProtocolHTTPProtobuf:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(ex.endpoint)}
		if ex.headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(ex.headers))
		}
		if ex.timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(ex.timeout))
		}
		if ex.gzip {
			opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp http exporter %s: %w", ex.endpoint, err)
		}
		return exp, nil
	default:
		var opts []otlptracegrpc.Option
		if strings.Contains(ex.endpoint, "://") {
			opts = append(opts, otlptracegrpc.WithEndpointURL(ex.endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(ex.endpoint))
			if ex.insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		if ex.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(ex.headers))
		}
		if ex.timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(ex.timeout))
		}
		if ex.gzip {
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp grpc exporter %s: %w", ex.endpoint, err)
		}
		return exp, nil
	}
}

// newSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; without them it samples
// parent-based with the config file's ratio.
func newSampler(tc config.TelemetryConfig, getenv func(string) string) (sdktrace.Sampler, error) {
	name, _ := first(getenv, "OTEL_TRACES_SAMPLER")
	arg, _ := first(getenv, "OTEL_TRACES_SAMPLER_ARG")
	ratio := tc.SampleRatio
	if arg != "" && (name == "traceidratio" || name == "parentbased_traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0,1]", arg)
		}
		ratio = r
	} else if name == "traceidratio" || name == "parentbased_traceidratio" {
		ratio = 1 // the spec's default argument
	}
	switch name {
	case "":
		if ratio >= 1 {
			return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: unsupported sampler", name)
}

// newResource describes this process: service.name (OTEL_SERVICE_NAME, then
// OTEL_RESOURCE_ATTRIBUTES, then config, then "sipsvc"), service.version, host and SDK.
func newResource(ctx context.Context, cfg Config, getenv func(string) string) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	name := cfg.Telemetry.ServiceName
	if v := getenv("OTEL_RESOURCE_ATTRIBUTES"); strings.TrimSpace(v) != "" {
		kv, err := parseKeyValues(v)
		if err != nil {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
		}
		for k, v := range kv {
			if k == "service.name" {
				name = v
				continue
			}
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); v != "" {
		name = v
	}
	if name == "" {
		name = DefaultServiceName
	}
	attrs = append(attrs, attribute.String("service.name", name))
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// parseKeyValues parses the OTEL list format "k1=v1,k2=v2" with percent-encoded values.
func parseKeyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", item)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
		out[k] = dv
	}
	return out, nil
}
