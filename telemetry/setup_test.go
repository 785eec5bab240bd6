package telemetry

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/test/otlp"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSetupWithoutEndpointIsNoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.TelemetryConfig
		env  map[string]string
	}{
		{name: "defaults", cfg: config.Default().Telemetry},
		{name: "sdk disabled", cfg: config.TelemetryConfig{OTLPEndpoint: "localhost:4317"}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317", "OTEL_TRACES_EXPORTER": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tel, err := Setup(context.Background(), Config{Telemetry: tc.cfg, Getenv: envOf(tc.env)})
			if err != nil {
				t.Fatal(err)
			}
			if tel.Tracing || tel.tp != nil {
				t.Fatal("tracing on without endpoint")
			}
			if _, ok := tel.TracerProvider.(noop.TracerProvider); !ok {
				t.Fatalf("TracerProvider is %T, want noop.TracerProvider", tel.TracerProvider)
			}
			_, span := tel.TracerProvider.Tracer("x").Start(context.Background(), "s")
			if span.IsRecording() || span.SpanContext().IsValid() {
				t.Fatal("noop span records")
			}
			span.End()
			if tel.MetricsHandler == nil || tel.MeterProvider == nil {
				t.Fatal("metrics must be on without tracing")
			}
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNoopPassesTraceContext: with tracing off, an incoming trace context still reaches
// children (so a downstream service joins the caller's trace).
func TestNoopPassesTraceContext(t *testing.T) {
	tel, err := Setup(context.Background(), Config{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	_, span := tel.TracerProvider.Tracer("x").Start(ctx, "s")
	if span.SpanContext().TraceID() != parent.TraceID() {
		t.Fatalf("trace id lost: %v", span.SpanContext())
	}
}

func TestNoopStartAllocs(t *testing.T) {
	tel, err := Setup(context.Background(), Config{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.TracerProvider.Tracer("x")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_, s := tr.Start(ctx, "s")
		s.End()
	})
	if allocs > 1 {
		t.Fatalf("noop Start+End allocates %v times", allocs)
	}
}

func TestResolveExport(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          config.TelemetryConfig
		env          map[string]string
		wantOn       bool
		wantProtocol string
		wantEndpoint string
		wantInsecure bool
		wantErr      bool
	}{
		{name: "off", cfg: config.TelemetryConfig{OTLPProtocol: "grpc"}},
		{name: "config grpc", cfg: config.TelemetryConfig{OTLPEndpoint: "collector:4317", OTLPProtocol: "grpc", Insecure: true},
			wantOn: true, wantProtocol: "grpc", wantEndpoint: "collector:4317", wantInsecure: true},
		{name: "config grpc tls", cfg: config.TelemetryConfig{OTLPEndpoint: "collector:4317"},
			wantOn: true, wantProtocol: "grpc", wantEndpoint: "collector:4317"},
		{name: "env over config", cfg: config.TelemetryConfig{OTLPEndpoint: "collector:4317", OTLPProtocol: "grpc"},
			env:    map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:14317"},
			wantOn: true, wantProtocol: "grpc", wantEndpoint: "http://localhost:14317", wantInsecure: true},
		{name: "traces endpoint over generic", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:4317"},
			wantOn: true, wantProtocol: "grpc", wantEndpoint: "https://b:4317"},
		{name: "env protocol over config", cfg: config.TelemetryConfig{OTLPProtocol: "grpc"},
			env:    map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			wantOn: true, wantProtocol: "http/protobuf", wantEndpoint: "http://localhost:4318/v1/traces", wantInsecure: true},
		{name: "http base with path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://o.example/otlp/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			wantOn: true, wantProtocol: "http/protobuf", wantEndpoint: "https://o.example/otlp/v1/traces"},
		{name: "http traces endpoint as is", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:4318/custom", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			wantOn: true, wantProtocol: "http/protobuf", wantEndpoint: "http://h:4318/custom", wantInsecure: true},
		{name: "http config without scheme", cfg: config.TelemetryConfig{OTLPEndpoint: "h:4318", OTLPProtocol: "http/protobuf", Insecure: true},
			wantOn: true, wantProtocol: "http/protobuf", wantEndpoint: "http://h:4318/v1/traces", wantInsecure: true},
		{name: "env insecure", cfg: config.TelemetryConfig{OTLPEndpoint: "h:4317"}, env: map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"},
			wantOn: true, wantProtocol: "grpc", wantEndpoint: "h:4317", wantInsecure: true},
		{name: "bad protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
		{name: "bad scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://h:4317"}, wantErr: true},
		{name: "no port", cfg: config.TelemetryConfig{OTLPEndpoint: "collector"}, wantErr: true},
		{name: "bad headers", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, wantErr: true},
		{name: "bad timeout", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := resolveExport(tc.cfg, envOf(tc.env))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", ex)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ex.enabled != tc.wantOn {
				t.Fatalf("enabled = %v", ex.enabled)
			}
			if !tc.wantOn {
				return
			}
			if ex.protocol != tc.wantProtocol || ex.endpoint != tc.wantEndpoint || ex.insecure != tc.wantInsecure {
				t.Fatalf("got %s %s insecure=%v, want %s %s insecure=%v", ex.protocol, ex.endpoint, ex.insecure,
					tc.wantProtocol, tc.wantEndpoint, tc.wantInsecure)
			}
		})
	}
}

func TestSampler(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ratio float64
		env   map[string]string
		want  string
	}{
		{name: "config ratio 1", ratio: 1, want: "ParentBased{root:AlwaysOnSampler,"},
		{name: "config ratio", ratio: 0.25, want: "ParentBased{root:TraceIDRatioBased{0.25},"},
		{name: "config ratio 0", ratio: 0, want: "ParentBased{root:TraceIDRatioBased{0},"},
		{name: "env over config", ratio: 0.25, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, want: "TraceIDRatioBased{0.5}"},
		{name: "env parentbased ratio", ratio: 1, env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, want: "ParentBased{root:TraceIDRatioBased{0.1},"},
		{name: "env always_off", ratio: 1, env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, want: "AlwaysOffSampler"},
		{name: "env ratio without arg", ratio: 0.3, env: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio"}, want: "TraceIDRatioBased{1}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSampler(config.TelemetryConfig{SampleRatio: tc.ratio}, envOf(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Description(); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
				t.Fatalf("sampler %q, want prefix %q", got, tc.want)
			}
		})
	}
	for _, bad := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
	} {
		if _, err := newSampler(config.TelemetryConfig{SampleRatio: 1}, envOf(bad)); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

// TestSamplerRatioApplies checks that the ratio really drops root spans.
func TestSamplerRatioApplies(t *testing.T) {
	s, err := newSampler(config.TelemetryConfig{SampleRatio: 0.25}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("x")
	sampled := 0
	const n = 4000
	for range n {
		_, span := tr.Start(context.Background(), "s")
		if span.SpanContext().IsSampled() {
			sampled++
		}
		span.End()
	}
	if sampled < n/4-200 || sampled > n/4+200 {
		t.Fatalf("sampled %d of %d at ratio 0.25", sampled, n)
	}
	// A sampled remote parent wins over the ratio.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{0xff, 0xff}, SpanID: [8]byte{1}, TraceFlags: trace.FlagsSampled, Remote: true})
	for range 100 {
		_, span := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
		if !span.SpanContext().IsSampled() {
			t.Fatal("child of a sampled parent not sampled")
		}
		span.End()
	}
}

func TestSetupErrors(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"protocol": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
		"sampler":  {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_TRACES_SAMPLER": "nope"},
		"resource": {"OTEL_RESOURCE_ATTRIBUTES": "broken"},
		"exporter": {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Setup(context.Background(), Config{Getenv: envOf(env)}); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestShutdownFlushes: spans ended just before Shutdown reach the receiver when Shutdown
// returns, long before the batch processor's 5 s schedule.
func TestShutdownFlushes(t *testing.T) {
	rcv := otlp.NewReceiver(t)
	ctx := context.Background()
	tel, err := Setup(ctx, Config{
		Telemetry: config.TelemetryConfig{OTLPEndpoint: rcv.Addr(), OTLPProtocol: "grpc", Insecure: true, SampleRatio: 1},
		Getenv:    envOf(map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,service.name=from-attrs"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Tracing || tel.Protocol != ProtocolGRPC || tel.Endpoint != rcv.Addr() {
		t.Fatalf("tracing %v %s %s", tel.Tracing, tel.Protocol, tel.Endpoint)
	}
	tr := tel.TracerProvider.Tracer("t")
	for i := range 10 {
		_, s := tr.Start(ctx, "last-words")
		if i == 9 {
			s.SetName("very-last")
		}
		s.End()
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	spans := rcv.Spans()
	if len(spans) != 10 {
		t.Fatalf("received %d spans after Shutdown, want 10", len(spans))
	}
	if len(otlp.Named(spans, "very-last")) != 1 {
		t.Fatal("last span missing")
	}
	res := spans[0].Resource
	if res["service.name"] != "from-attrs" || res["deployment.environment.name"] != "test" {
		t.Fatalf("resource %v", res)
	}
	// After Shutdown nothing is recorded, and a second Shutdown does not hang.
	_, s := tr.Start(ctx, "after")
	s.End()
	_ = tel.Shutdown(sctx)
}

func TestServiceNameOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  string
		env  map[string]string
		want string
	}{
		{name: "default", want: "sipsvc"},
		{name: "config", cfg: "cfg", want: "cfg"},
		{name: "resource attrs over config", cfg: "cfg", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=ra"}, want: "ra"},
		{name: "service name over all", cfg: "cfg", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=ra", "OTEL_SERVICE_NAME": "sn"}, want: "sn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := newResource(context.Background(), Config{Telemetry: config.TelemetryConfig{ServiceName: tc.cfg}}, envOf(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			v, ok := res.Set().Value("service.name")
			if !ok || v.AsString() != tc.want {
				t.Fatalf("service.name = %v, want %s", v.AsString(), tc.want)
			}
		})
	}
}
