// Package otlpe2e runs the sipsvc binary, built from this tree, with OTLP/gRPC trace export
// to a real receiver (test/otlp) and checks what arrives: the spans of one call with their
// attributes and rewrite events, the Prometheus counters at /metrics, and the trace ids in
// the JSON log.
package otlpe2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
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

	"github.com/sipsvc/sipsvc/internal/siptest"
)

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

// phone is a test phone (siptest.Phone): over UDP it listens and answers INVITEs (180, 200
// with SDP); over TLS it only places calls.
type phone struct{ *siptest.Phone }

// dialog is a call a phone placed and ACKed.
type dialog = siptest.UAC

func newPhone(t testing.TB, name, transport string, tlsConf *tls.Config) *phone {
	t.Helper()
	p := &phone{siptest.NewPhone(t, name, transport, siptest.Options{NoAllow: true, ClientTLS: tlsConf, DialOnly: transport != "UDP"})}
	return p
}

// call sends INVITE ruri to dest (with scheme for From and Contact), ACKs the 200.
func (p *phone) call(ruri, dest, scheme string) *dialog {
	p.T.Helper()
	return p.Call(dest, "", siptest.InviteOptions{
		RURI: ruri, From: scheme + ":" + p.Name + "@127.0.0.1", FromName: "Alice",
		Contact: scheme + ":" + p.Name + "@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port())),
	})
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
