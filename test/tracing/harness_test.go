// Package tracing holds in-process tests of the traces that cross package boundaries: the
// routing call (service.NewRoutingClient → a test routing.v1 server) and the API request
// span that a MakeCall call hangs under (service.NewAPI). Spans are recorded with the SDK's
// span recorder and compared with docs/observability.md.
package tracing

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

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

// phone is a sipgo UDP phone on loopback that answers every INVITE (180, then 200 with SDP).
type phone struct {
	t    testing.TB
	name string
	addr string
	cli  *sipgo.Client

	mu       sync.Mutex
	received []*sip.Request
}

func newPhone(t testing.TB, name string) *phone {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{t: t, name: name}
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(quiet))
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		ring := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
		ring.To().Params.Add("tag", name+"tag")
		_ = tx.Respond(ring)
		time.Sleep(20 * time.Millisecond)
		ok := sip.NewResponseFromRequest(req, 200, "OK", []byte(testSDP))
		ok.To().Params.Add("tag", name+"tag")
		ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: name, Host: "127.0.0.1", Port: p.port()}})
		ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(ok)
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { p.record(req) })
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = c.LocalAddr().String()
	go srv.ServeUDP(c)
	t.Cleanup(func() { c.Close(); ua.Close() })
	return p
}

func (p *phone) record(req *sip.Request) {
	p.mu.Lock()
	p.received = append(p.received, req)
	p.mu.Unlock()
}

func (p *phone) port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

func (p *phone) contact(user string) string { return fmt.Sprintf("sip:%s@%s", user, p.addr) }

// waitRequest waits for a request with the given method.
func (p *phone) waitRequest(method sip.RequestMethod, within time.Duration) *sip.Request {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		p.mu.Lock()
		for _, r := range p.received {
			if r.Method == method {
				p.mu.Unlock()
				return r
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %s within %v", p.name, method, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var noop = func(*sipgo.Client, *sip.Request) error { return nil }

// call places a call to user@b2bua, ACKs the 200 and returns the dialog.
type dialog struct {
	p   *phone
	inv *sip.Request
	ok  *sip.Response
}

func (p *phone) call(b2bua, user string) *dialog {
	p.t.Helper()
	var ruri sip.Uri
	if err := sip.ParseUri(fmt.Sprintf("sip:%s@%s", user, b2bua), &ruri); err != nil {
		p.t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: p.name, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + p.name)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: p.name, Host: "127.0.0.1", Port: p.port()}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(testSDP))
	req.SetTransport("UDP")
	req.SetDestination(b2bua)
	tx, err := p.cli.TransactionRequest(context.Background(), req, noop)
	if err != nil {
		p.t.Fatalf("%s INVITE: %v", p.name, err)
	}
	defer tx.Terminate()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if res.StatusCode != 200 {
				p.t.Fatalf("%s INVITE → %d", p.name, res.StatusCode)
			}
			d := &dialog{p: p, inv: req, ok: res}
			if err := p.cli.WriteRequest(d.inDialog(sip.ACK, 1), noop); err != nil {
				p.t.Fatalf("ACK: %v", err)
			}
			return d
		case <-tx.Done():
			p.t.Fatalf("%s INVITE: %v", p.name, tx.Err())
		case <-timeout:
			p.t.Fatalf("%s INVITE: no final response", p.name)
		}
	}
}

func (d *dialog) inDialog(method sip.RequestMethod, seq uint32) *sip.Request {
	req := sip.NewRequest(method, *d.ok.Contact().Address.Clone())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: d.p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	req.AppendHeader(sip.HeaderClone(d.inv.From()))
	req.AppendHeader(sip.HeaderClone(d.ok.To()))
	req.AppendHeader(sip.HeaderClone(d.inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport("UDP")
	req.SetDestination(d.inv.Destination())
	return req
}

// bye hangs up and returns the BYE's final status.
func (d *dialog) bye() int {
	d.p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := d.p.cli.Do(ctx, d.inDialog(sip.BYE, 2), noop)
	if err != nil {
		d.p.t.Fatalf("BYE: %v", err)
	}
	return res.StatusCode
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
