// Package tracing holds in-process tests of the traces that cross package boundaries: the
// routing call (service.NewRoutingClient → a test routing.v1 server) and the API request
// span that a MakeCall call hangs under (service.NewAPI). Spans are recorded with the SDK's
// span recorder and compared with docs/observability.md.
package tracing

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/siptest"
	"github.com/sipsvc/sipsvc/signaling"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

var quiet = siptest.Quiet

// sink records spans in memory.
type sink struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
}

func newSink(t testing.TB) *sink {
	s := &sink{rec: tracetest.NewSpanRecorder()}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.rec))
	t.Cleanup(func() { _ = s.tp.Shutdown(context.Background()) })
	return s
}

// wait waits until a sipsvc.call span ended and every started span ended, plus cond.
func (s *sink) wait(t testing.TB, cond func([]otlp.Span) bool) []otlp.Span {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ended := s.rec.Ended()
		spans := otlp.FromSDK(ended)
		if len(otlp.Named(spans, sc.SpanCall)) > 0 && len(ended) == len(s.rec.Started()) && (cond == nil || cond(spans)) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans not complete (%d of %d ended):\n%s", len(ended), len(s.rec.Started()), otlp.Tree(spans, "sip.leg"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSignaling runs a B2BUA on a loopback UDP port.
func startSignaling(t *testing.T, cfg signaling.Config) (*signaling.Server, string) {
	t.Helper()
	cfg.Hostname = "127.0.0.1"
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	cfg.RingTimeout = 5 * time.Second
	s, err := signaling.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, signaling.Listeners{UDP: []net.PacketConn{u}}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("signaling did not stop")
		}
	})
	return s, u.LocalAddr().String()
}

// memDir is a signaling.Directory in memory.
type memDir map[string]dn.DN

func (m memDir) Lookup(_ context.Context, n string) (dn.DN, error) {
	if d, ok := m[n]; ok {
		return d, nil
	}
	return dn.DN{}, fmt.Errorf("lookup %s: %w", n, dn.ErrNotFound)
}

func (m memDir) Bindings(context.Context, string) ([]dn.Binding, error) { return nil, nil }

// phone is a UDP test phone (siptest.Phone) that answers every INVITE (180, then 200 with SDP).
type phone struct{ *siptest.Phone }

// dialog is a call a phone placed and ACKed.
type dialog = siptest.UAC

func newPhone(t testing.TB, name string) *phone {
	t.Helper()
	p := &phone{siptest.NewPhone(t, name, "UDP", siptest.Options{NoAllow: true})}
	return p
}

// call places a call to user@b2bua, ACKs the 200 and returns the dialog.
func (p *phone) call(b2bua, user string) *dialog {
	p.T.Helper()
	return p.Call(b2bua, user, siptest.InviteOptions{})
}

// only returns the single span named name (with kind, when kind is not "").
func only(t *testing.T, spans []otlp.Span, name, kind string) otlp.Span {
	t.Helper()
	var out []otlp.Span
	for _, s := range otlp.Named(spans, name) {
		if kind == "" || s.Kind == kind {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d spans %s %s, want 1; spans:\n%s", len(out), name, kind, otlp.Tree(spans, "sip.leg", "rpc.method"))
	}
	return out[0]
}

// ancestors returns the names of s's ancestors, nearest first.
func ancestors(spans []otlp.Span, s otlp.Span) []string {
	byID := map[string]otlp.Span{}
	for _, x := range spans {
		byID[x.SpanID] = x
	}
	var out []string
	for p, ok := byID[s.ParentSpanID]; ok; p, ok = byID[p.ParentSpanID] {
		out = append(out, p.Name+" "+p.Kind)
	}
	return out
}
