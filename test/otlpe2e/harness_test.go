// Package otlpe2e runs the sipsvc binary, built from this tree, with OTLP/gRPC trace export
// to a real receiver (test/otlp) and checks what arrives: the spans of one call with their
// attributes and rewrite events, the Prometheus counters at /metrics, and the trace ids in
// the JSON log.
package otlpe2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// buildSipsvc builds ./cmd/sipsvc into dir.
func buildSipsvc(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "sipsvc")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/sipsvc/sipsvc/cmd/sipsvc").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/sipsvc: %v\n%s", err, out)
	}
	return bin
}

var (
	portMu sync.Mutex
	taken  = map[int]bool{}
)

// freePort returns a loopback port free for both TCP and UDP right now.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		l.Close()
		if err != nil || taken[p] {
			continue
		}
		u.Close()
		taken[p] = true
		return p
	}
	t.Fatal("no free port")
	return 0
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// proc is the sipsvc subprocess; its stderr (the log) goes to a file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{log: filepath.Join(dir, "sipsvc.log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and waits up to d for the process to exit.
func (p *proc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("sipsvc did not exit within %v of SIGTERM\n%s", d, p.tail(4000))
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logLines returns the JSON log records.
func (p *proc) logLines(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, p *proc, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if p.exited() {
			t.Fatalf("sipsvc exited at start-up: %v\n%s", p.err, p.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v (%v)\n%s", url, d, err, p.tail(4000))
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// waitTCP waits until something accepts TCP connections on a.
func waitTCP(t *testing.T, a string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s: %v", a, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// phone is a sipgo phone on loopback: over UDP it listens and answers INVITEs (180, 200
// with SDP); over TLS it only places calls.
type phone struct {
	t         testing.TB
	name      string
	transport string
	addr      string
	cli       *sipgo.Client

	mu       sync.Mutex
	received []*sip.Request
}

func newPhone(t testing.TB, name, transport string, tlsConf *tls.Config) *phone {
	t.Helper()
	opts := []sipgo.UserAgentOption{sipgo.WithUserAgent(name),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet))}
	if tlsConf != nil {
		opts = append(opts, sipgo.WithUserAgenTLSConfig(tlsConf))
	}
	ua, err := sipgo.NewUA(opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{t: t, name: name, transport: transport}
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(quiet))
	t.Cleanup(func() { ua.Close() })
	if transport != "UDP" {
		p.addr = "127.0.0.1:5999" // placeholder for Contact; the phone hangs up itself
		return p
	}
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
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
	t.Cleanup(func() { c.Close() })
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

var prebuilt = func(*sipgo.Client, *sip.Request) error { return nil }

type dialog struct {
	p   *phone
	inv *sip.Request
	ok  *sip.Response
}

// call sends INVITE ruri to dest (with scheme for From and Contact), ACKs the 200.
func (p *phone) call(ruriStr, dest, scheme string) *dialog {
	p.t.Helper()
	var ruri sip.Uri
	if err := sip.ParseUri(ruriStr, &ruri); err != nil {
		p.t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.transport, Host: "127.0.0.1", Port: p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	from := &sip.FromHeader{DisplayName: "Alice", Address: sip.Uri{Scheme: scheme, User: p.name, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + p.name)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: scheme, User: p.name, Host: "127.0.0.1", Port: p.port()}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(testSDP))
	req.SetTransport(p.transport)
	req.SetDestination(dest)
	tx, err := p.cli.TransactionRequest(context.Background(), req, prebuilt)
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
				p.t.Fatalf("%s INVITE → %d %s", p.name, res.StatusCode, res.Reason)
			}
			d := &dialog{p: p, inv: req, ok: res}
			if err := p.cli.WriteRequest(d.inDialog(sip.ACK, 1), prebuilt); err != nil {
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
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: d.p.transport, Host: "127.0.0.1", Port: d.p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	req.AppendHeader(sip.HeaderClone(d.inv.From()))
	req.AppendHeader(sip.HeaderClone(d.ok.To()))
	req.AppendHeader(sip.HeaderClone(d.inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(d.p.transport)
	req.SetDestination(d.inv.Destination())
	return req
}

func (d *dialog) bye() int {
	d.p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := d.p.cli.Do(ctx, d.inDialog(sip.BYE, 2), prebuilt)
	if err != nil {
		d.p.t.Fatalf("BYE: %v", err)
	}
	return res.StatusCode
}

// metrics scrapes a Prometheus text page into "name{sorted labels}" → value.
type metrics map[string]float64

func scrape(t *testing.T, url string) (metrics, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("scrape %s: %d\n%s", url, res.StatusCode, b)
	}
	m := metrics{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, string(b)
}

// sum adds the series of metric name whose labels include every label in want
// (`k="v"` strings).
func (m metrics) sum(name string, want ...string) (float64, bool) {
	total, found := 0.0, false
	for k, v := range m {
		n, labels, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(labels, w) {
				ok = false
			}
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

func fmtLabels(l []string) string { return "{" + strings.Join(l, ",") + "}" }
