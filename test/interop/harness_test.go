// Package interop runs sipsvc, built from this tree, against real third-party SIP peers:
// SIPp (Debian sip-tester), sipsak, and stunnel4 as the TLS front of a SIPp "sips phone".
// See docs/interop.md. The tools are required: a missing one fails the suite (.ci/run
// installs them), it never skips.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/devcert"
)

// binDir holds the sipsvc binary built once by TestMain.
var (
	binDir   string
	binPath  string
	buildErr error
	buildLog []byte
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		binDir, err = os.MkdirTemp("", "sipsvc-interop-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 1
		}
		defer os.RemoveAll(binDir)
		binPath = filepath.Join(binDir, "sipsvc")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/sipsvc/sipsvc/cmd/sipsvc")
		buildLog, buildErr = cmd.CombinedOutput()
		return m.Run()
	}()
	os.Exit(code)
}

// sipsvcBinary returns the path of the sipsvc binary built from this tree.
func sipsvcBinary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("go build ./cmd/sipsvc: %v\n%s", buildErr, buildLog)
	}
	return binPath
}

// requireTool returns the path of the first of names found in PATH, or fails the test:
// the interop suite must not pass silently on a machine without its peers.
func requireTool(t *testing.T, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found in PATH: install the Debian package %s (.ci/run does: apt-get install -y %s)", strings.Join(names, " or "), pkg, pkg)
	return ""
}

// scenario returns the absolute path of a file in test/interop/sipp.
func scenario(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("sipp", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	return p
}

var (
	portMu     sync.Mutex // guards portsTaken and portRand
	portsTaken = map[int]bool{}
	portRand   = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
)

// freePort returns a loopback port that is free for both UDP and TCP right now, never the
// same twice in this process. It is drawn from 20000–31999, below Linux's ephemeral range
// (32768–60999): a port the kernel hands out for :0 or for an outgoing connection of a
// concurrently running test could be taken again between our check and the peer's bind.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i < 200; i++ {
		p := 20000 + portRand.IntN(12000)
		if portsTaken[p] {
			continue
		}
		l, err := net.Listen("tcp", addr(p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr(p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsTaken[p] = true
		return p
	}
	t.Fatal("free port: no port in 20000-31999 free for both UDP and TCP")
	return 0
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// waitTCP waits until something accepts TCP connections on port.
func waitTCP(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on tcp %s after %s: %w", addr(port), d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUDP waits until something has bound UDP port (binding it ourselves fails).
func waitUDP(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.ListenPacket("udp", addr(port))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil
			}
			return err
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing bound udp %s after %s", addr(port), d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail returns the last n bytes of a file, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%s: %v)", path, err)
	}
	if len(b) > n {
		b = append([]byte("…"), b[len(b)-n:]...)
	}
	return string(b)
}

// proc is a background subprocess whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs name with args in dir, output to dir/<label>.log, and kills it in t.Cleanup.
func start(t *testing.T, label, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, label+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", label, err)
	}
	p := &proc{name: label, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop sends SIGTERM, then SIGKILL after 3 s, to the process (and its process group).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// exited reports whether the process has ended, with its error.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// sipsvc is a running sipsvc subprocess.
type sipsvc struct {
	*proc
	dir           string
	udp, tcp, tls int
	http          int // REST API port
}

// dnSpec is one DN of the test config, written as a YAML flow mapping.
type dnSpec struct {
	Number, Type, Contact, Password string
	InsecureSkipVerify              bool
	// AllowAnonymous writes allow_anonymous: true (set anyway on extensions without a password).
	AllowAnonymous bool
}

// svcOptions are the parts of the config a test chooses.
type svcOptions struct {
	DNs    []dnSpec
	CAFile string // tls.ca_file: trusts the far end's test CA
	Extra  string // appended YAML (top-level keys)
	// AlsoListen adds an IP address on which sipsvc listens too, on the same ports as on
	// 127.0.0.1 (a test host's address in a network namespace), and Hostname sets sip.hostname.
	AlsoListen, Hostname string
}

// startSipsvc writes a config with fresh loopback ports, starts the binary and waits until it
// answers an OPTIONS on UDP (it opens all its listeners before it serves any). If a port was
// taken in the meantime it tries again with new ports.
func startSipsvc(t *testing.T, o svcOptions) *sipsvc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, retry := trySipsvc(t, o)
		if s != nil {
			return s
		}
		if !retry || attempt == 3 {
			t.Fatal("sipsvc did not start")
		}
	}
}

func trySipsvc(t *testing.T, o svcOptions) (*sipsvc, bool) {
	t.Helper()
	bin := sipsvcBinary(t)
	dir := t.TempDir()
	s := &sipsvc{dir: dir, udp: freePort(t), tcp: freePort(t), tls: freePort(t)}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %q\n", filepath.Join(dir, "data"))
	listen := func(port int) string {
		l := fmt.Sprintf("%q", addr(port))
		if o.AlsoListen != "" {
			l += fmt.Sprintf(", %q", net.JoinHostPort(o.AlsoListen, strconv.Itoa(port)))
		}
		return l
	}
	fmt.Fprintf(&b, "sip:\n  udp: [%s]\n  tcp: [%s]\n  tls: [%s]\n  ring_timeout: 10s\n", listen(s.udp), listen(s.tcp), listen(s.tls))
	if o.Hostname != "" {
		fmt.Fprintf(&b, "  hostname: %q\n", o.Hostname)
	}
	s.http = freePort(t)
	fmt.Fprintf(&b, "api:\n  grpc_addr: %q\n  http_addr: %q\n", addr(freePort(t)), addr(s.http))
	if o.CAFile != "" {
		fmt.Fprintf(&b, "tls:\n  ca_file: %q\n", o.CAFile)
	}
	b.WriteString("log:\n  level: debug\n")
	b.WriteString("dns:\n")
	for _, d := range o.DNs {
		typ := d.Type
		if typ == "" {
			typ = "extension"
		}
		fmt.Fprintf(&b, "  - {number: %q, type: %s, contact: %q", d.Number, typ, d.Contact)
		if d.Password != "" {
			fmt.Fprintf(&b, ", password: %q", d.Password)
		}
		if d.InsecureSkipVerify {
			b.WriteString(", insecure_skip_verify: true")
		}
		if d.AllowAnonymous || (d.Password == "" && typ == "extension") {
			// The lab phones take calls from SIPp callers that do not authenticate:
			// sipsvc refuses anonymous callers unless the DN allows them (docs/security.md).
			b.WriteString(", allow_anonymous: true")
		}
		b.WriteString("}\n")
	}
	b.WriteString(o.Extra)
	cfg := filepath.Join(dir, "sipsvc.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s.proc = start(t, "sipsvc", dir, nil, bin, "--config", cfg)
	err := pingOptions(s.udp, 15*time.Second, s.done)
	if done, perr := s.exited(); done {
		log := tail(s.log, 8000)
		if strings.Contains(log, "address already in use") {
			t.Logf("sipsvc could not bind (a port was taken meanwhile), retrying with new ports:\n%s", log)
			return nil, true
		}
		t.Fatalf("sipsvc exited at start-up (%v)\nconfig:\n%s\nlog:\n%s", perr, b.String(), log)
	}
	if err != nil {
		t.Fatalf("sipsvc not ready: %v\nlog:\n%s", err, tail(s.log, 8000))
	}
	t.Logf("sipsvc up: udp %d tcp %d tls %d, config %s", s.udp, s.tcp, s.tls, cfg)
	return s, false
}

// pingOptions sends OPTIONS over UDP to port until a SIP response comes back, the process
// ends (done closes) or d passes.
func pingOptions(port int, d time.Duration, done <-chan struct{}) error {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	deadline := time.Now().Add(d)
	buf := make([]byte, 4096)
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case <-done:
			return errors.New("process ended")
		default:
		}
		msg := fmt.Sprintf("OPTIONS sip:ping@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ready-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:ready@%s>;tag=ready%d\r\nTo: <sip:ping@%s>\r\nCall-ID: ready-%d@%s\r\n"+
			"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", addr(port), local, i, local, i, addr(port), i, local)
		if _, err := c.WriteTo([]byte(msg), dst); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := c.ReadFrom(buf)
		if err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
	}
	return fmt.Errorf("no answer to OPTIONS on udp %s within %s", addr(port), d)
}

// sippResult is the outcome of one SIPp run.
type sippResult struct {
	code       int
	ok, failed int
	dir        string
	out        string
}

// report is attached to failure messages: SIPp's errors and screen, and the sipsvc log.
func (r sippResult) report(svc *sipsvc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sipp exit %d, successful %d, failed %d\n", r.code, r.ok, r.failed)
	for _, pat := range []string{"*_errors.log", "*_screen.log"} {
		ms, _ := filepath.Glob(filepath.Join(r.dir, pat))
		for _, m := range ms {
			fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(m), tail(m, 4000))
		}
	}
	if r.out != "" {
		fmt.Fprintf(&b, "--- sipp output\n%s\n", tail(r.out, 2000))
	}
	if svc != nil {
		fmt.Fprintf(&b, "--- sipsvc log\n%s\n", tail(svc.log, 8000))
	}
	return b.String()
}

// sipp is a SIPp run in its own directory (its logs land there).
type sipp struct {
	*proc
	dir string
}

// startSIPp starts SIPp with args plus the tracing flags the harness reads.
func startSIPp(t *testing.T, label string, args ...string) *sipp {
	t.Helper()
	bin := requireTool(t, "sip-tester", "sipp")
	dir := t.TempDir()
	full := append([]string{"-nostdin", "-trace_err", "-trace_screen"}, args...)
	return &sipp{proc: start(t, label, dir, nil, bin, full...), dir: dir}
}

// wait waits for SIPp to finish (at most d) and reads its exit code and call counters.
func (s *sipp) wait(t *testing.T, d time.Duration) sippResult {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.stop()
		t.Logf("%s: killed after %s", s.name, d)
	}
	r := sippResult{code: -1, dir: s.dir, out: s.log}
	var ee *exec.ExitError
	switch {
	case s.err == nil:
		r.code = 0
	case errors.As(s.err, &ee):
		r.code = ee.ExitCode()
	}
	r.ok, r.failed = screenCounts(s.dir)
	return r
}

var counterRE = regexp.MustCompile(`^\s*(Successful|Failed) call\s*\|\s*\d+\s*\|\s*(\d+)`)

// screenCounts reads the cumulative Successful/Failed call counters from the last screen
// SIPp dumped (-trace_screen writes it at exit).
func screenCounts(dir string) (ok, failed int) {
	ms, _ := filepath.Glob(filepath.Join(dir, "*_screen.log"))
	ok, failed = -1, -1
	for _, m := range ms {
		f, err := os.Open(m)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if mm := counterRE.FindStringSubmatch(sc.Text()); mm != nil {
				n, _ := strconv.Atoi(mm[2])
				if mm[1] == "Successful" {
					ok = n
				} else {
					failed = n
				}
			}
		}
		f.Close()
	}
	return ok, failed
}

// runUAC runs a SIPp caller to completion.
func runUAC(t *testing.T, label string, d time.Duration, args ...string) sippResult {
	t.Helper()
	return startSIPp(t, label, args...).wait(t, d)
}

// expectCalls asserts that a SIPp run exited 0 with exactly n successful calls and none failed.
func expectCalls(t *testing.T, who string, r sippResult, n int, svc *sipsvc) {
	t.Helper()
	if r.code != 0 || r.ok != n || r.failed != 0 {
		t.Fatalf("%s: want exit 0 with %d successful calls and 0 failed\n%s", who, n, r.report(svc))
	}
}

// testPKI writes a CA and a server certificate for 127.0.0.1 into dir.
func testPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	p, err := devcert.Generate("sipsvc interop peer", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{caFile: p.CAPEM, certFile: p.CertPEM, keyFile: p.KeyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// startStunnel runs stunnel4 in TLS server mode on acceptPort, passing clear text to
// 127.0.0.1:connectPort.
func startStunnel(t *testing.T, acceptPort, connectPort int, certFile, keyFile string) *proc {
	t.Helper()
	bin := requireTool(t, "stunnel4", "stunnel4", "stunnel")
	dir := t.TempDir()
	conf := fmt.Sprintf(`foreground = yes
pid =
debug = info
[sips-phone]
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
cert = %s
key = %s
sslVersionMin = TLSv1.2
`, acceptPort, connectPort, certFile, keyFile)
	cf := filepath.Join(dir, "stunnel.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "stunnel", dir, nil, bin, cf)
	if err := waitTCP(acceptPort, 10*time.Second); err != nil {
		t.Fatalf("stunnel: %v\n%s", err, tail(p.log, 4000))
	}
	return p
}

// runCmd runs a short command and returns its combined output and exit code.
func runCmd(t *testing.T, d time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), code
}
