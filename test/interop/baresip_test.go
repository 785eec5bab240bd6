package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file runs baresip (Debian baresip-core), a softphone, against sipsvc with the
// configuration that README.md's "Call from a softphone on another machine" shows:
// test/interop/testdata/baresip/{config,accounts-udp,accounts-tls}. The test fills in the same
// placeholders a user does (SIPSVC_HOST, SIPSVC_CA_FILE, DN, PASSWORD) and moves the ports to
// free loopback ones; nothing else in the files changes, so a config that stops working with
// sipsvc fails this test.

// baresipTemplate reads a file of testdata/baresip.
func baresipTemplate(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "baresip", name))
	if err != nil {
		t.Fatalf("baresip template: %v", err)
	}
	return string(b)
}

// baresipPhone is one running baresip with its ctrl_tcp control connection.
type baresipPhone struct {
	*proc
	name   string
	events chan map[string]any
	conn   net.Conn
	// seen holds the events read while waiting for something else, oldest first: baresip may
	// send an event (CALL_CLOSED) before the response to the command that caused it.
	seen []map[string]any
}

// phoneSpec says how one baresip registers.
type phoneSpec struct {
	name, accounts, dn, password string
	sipPort                      int    // sipsvc's port for this phone's transport
	defaultPort                  string // the port the accounts file names ("5060" or "5061")
	svcHost                      string // sipsvc's address as the phone sees it; default 127.0.0.1
	local                        string // the phone's own address (SIP, RTP, ctrl_tcp); default 127.0.0.1
	netns                        string // run baresip in this network namespace ("another host")
}

// startBaresip writes a config directory from the templates and starts baresip on it.
func startBaresip(t *testing.T, svc *sipsvc, caFile string, sp phoneSpec) *baresipPhone {
	t.Helper()
	bin := requireTool(t, "baresip-core", "baresip")
	dir := t.TempDir()
	if sp.svcHost == "" {
		sp.svcHost = "127.0.0.1"
	}
	if sp.local == "" {
		sp.local = "127.0.0.1"
	}
	listen := net.JoinHostPort(sp.local, strconv.Itoa(freePort(t)))
	ctrl := net.JoinHostPort(sp.local, strconv.Itoa(freePort(t)))

	cfg := baresipTemplate(t, "config")
	for old, repl := range map[string]string{
		"SIPSVC_CA_FILE":         caFile,
		"0.0.0.0:5062":           listen,
		"127.0.0.1:4444":         ctrl,
		"module\t\t\tstdio.so\n": "", // the console needs a terminal; the test drives ctrl_tcp
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("testdata/baresip/config no longer contains %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	// Keep RTP on the test's addresses: by default baresip puts the host's first non-loopback
	// address in its SDP.
	cfg += "net_interface\t\t" + sp.local + "\n"
	acc := baresipTemplate(t, sp.accounts)
	for old, repl := range map[string]string{
		"SIPSVC_HOST:" + sp.defaultPort: net.JoinHostPort(sp.svcHost, strconv.Itoa(sp.sipPort)),
		"<sip:DN@":                      "<sip:" + sp.dn + "@",
		"auth_pass=PASSWORD":            "auth_pass=" + sp.password,
	} {
		if !strings.Contains(acc, old) {
			t.Fatalf("testdata/baresip/%s no longer contains %q", sp.accounts, old)
		}
		acc = strings.ReplaceAll(acc, old, repl)
	}
	for name, body := range map[string]string{"config": cfg, "accounts": acc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name, args := bin, []string{"-f", dir}
	if sp.netns != "" {
		name, args = "ip", append([]string{"netns", "exec", sp.netns, bin}, args...)
	}
	p := &baresipPhone{proc: start(t, "baresip-"+sp.name, dir, nil, name, args...), name: sp.name, events: make(chan map[string]any, 256)}
	var c net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if c, err = net.DialTimeout("tcp", ctrl, 200*time.Millisecond); err == nil {
			break
		}
		if done, _ := p.exited(); done || time.Now().After(deadline) {
			t.Fatalf("baresip %s: ctrl_tcp %s: %v\n%s", sp.name, ctrl, err, tail(p.log, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.conn = c
	t.Cleanup(func() { c.Close() })
	go p.readEvents(bufio.NewReader(c))
	return p
}

// readEvents parses ctrl_tcp's netstrings ("len:json,") into p.events until the connection ends.
func (p *baresipPhone) readEvents(r *bufio.Reader) {
	defer close(p.events)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil || buf[n] != ',' {
			return
		}
		var m map[string]any
		if json.Unmarshal(buf[:n], &m) == nil {
			p.events <- m
		}
	}
}

// command sends a ctrl_tcp command and waits for its response.
func (p *baresipPhone) command(t *testing.T, cmd, params string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": cmd})
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(b), b); err != nil {
		t.Fatalf("baresip %s: %s: %v", p.name, cmd, err)
	}
	m := p.waitFor(t, "response to "+cmd, 5*time.Second, func(m map[string]any) bool {
		return m["response"] == true && m["token"] == cmd
	})
	if m["ok"] != true {
		t.Fatalf("baresip %s: %s %q failed: %v\n%s", p.name, cmd, params, m, tail(p.log, 4000))
	}
}

// waitEvent waits for a ctrl_tcp event of the given type (e.g. CALL_ESTABLISHED).
func (p *baresipPhone) waitEvent(t *testing.T, typ string, d time.Duration) map[string]any {
	t.Helper()
	return p.waitFor(t, "event "+typ, d, func(m map[string]any) bool { return m["event"] == true && m["type"] == typ })
}

func (p *baresipPhone) waitFor(t *testing.T, what string, d time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for i, m := range p.seen {
		if match(m) {
			p.seen = append(p.seen[:i], p.seen[i+1:]...)
			return m
		}
	}
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-p.events:
			if !ok {
				t.Fatalf("baresip %s: control connection closed while waiting for %s\n%s", p.name, what, tail(p.log, 4000))
			}
			if match(m) {
				return m
			}
			p.seen = append(p.seen, m)
		case <-timeout:
			t.Fatalf("baresip %s: no %s within %s\n%s", p.name, what, d, tail(p.log, 4000))
		}
	}
}

// rtpPackets waits for the statistics baresip prints when a call ends (rtp_stats yes) and
// returns the audio packets sent and received.
var rtpStatsRE = regexp.MustCompile(`(?m)^packets:\s+(\d+)\s+(\d+)`)

func (p *baresipPhone) rtpPackets(t *testing.T) (tx, rx int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(p.log)
		if m := rtpStatsRE.FindSubmatch(b); m != nil {
			tx, _ = strconv.Atoi(string(m[1]))
			rx, _ = strconv.Atoi(string(m[2]))
			return tx, rx
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: no RTP statistics in its log after the call\n%s", p.name, tail(p.log, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLine returns the last line of a log file that contains substr, or "".
func logLine(path, substr string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

// waitLogLine waits up to within for a line of the log at path that contains substr, and
// returns the last such line ("" if none came).
func waitLogLine(path, substr string, within time.Duration) string {
	deadline := time.Now().Add(within)
	for {
		l := logLine(path, substr)
		if l != "" || time.Now().After(deadline) {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiGet reads a REST resource of sipsvc into v.
func apiGet(t *testing.T, svc *sipsvc, path string, v any) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr(svc.http) + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

type apiRegistrations struct {
	Registrations []struct {
		DN        string `json:"dn"`
		Contact   string `json:"contact"`
		Transport string `json:"transport"`
		UserAgent string `json:"user_agent"`
	} `json:"registrations"`
}

type apiCalls struct {
	Calls []struct {
		CallID string `json:"call_id"`
		State  string `json:"state"`
		Caller string `json:"caller"`
		Dialed string `json:"dialed"`
		Legs   []struct {
			LegID    string `json:"leg_id"`
			DN       string `json:"dn"`
			State    string `json:"state"`
			Decision struct {
				Scheme, Transport, Rule string
			} `json:"decision"`
		} `json:"legs"`
	} `json:"calls"`
}

// waitRegistered polls the Directory API until dn has a binding over transport.
func waitRegistered(t *testing.T, svc *sipsvc, dn, transport string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r apiRegistrations
		apiGet(t, svc, "/v1/dns/"+dn+"/registrations", &r)
		for _, b := range r.Registrations {
			if b.Transport == transport && strings.HasPrefix(b.UserAgent, "baresip") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("DN %s: no baresip registration over %s in the API: %+v\n--- sipsvc log\n%s", dn, transport, r, tail(svc.log, 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBaresipUDPCallsTLS: baresip 1000 registers over UDP and baresip 1001 over TLS (trusting
// sipsvc's dev CA), with sipsvc's default registrar settings (MD5 digest); the API lists both
// registrations; 1000 dials "1001", 1001 answers, the API shows the call talking with leg B over
// TLS (R32: a binding made over TLS is called over TLS), RTP flows both ways, 1000 hangs up and
// the call leaves the API.
func TestBaresipUDPCallsTLS(t *testing.T) {
	requireTool(t, "baresip-core", "baresip")
	svc := startSipsvc(t, svcOptions{DNs: baresipDNs})
	ca := devCA(t, svc)
	caller := startBaresip(t, svc, ca, phoneSpec{name: "1000-udp", accounts: "accounts-udp", dn: "1000", password: baresipDNs[0].Password, sipPort: svc.udp, defaultPort: "5060"})
	callee := startBaresip(t, svc, ca, phoneSpec{name: "1001-tls", accounts: "accounts-tls", dn: "1001", password: baresipDNs[1].Password, sipPort: svc.tls, defaultPort: "5061"})
	baresipCall(t, svc, caller, callee, "UDP", "TLS")
}

// baresipDNs are the two self-registered DNs of the baresip tests, with their own passwords
// (the example DNs of the embedded defaults are not used).
var baresipDNs = []dnSpec{
	{Number: "1000", Contact: "*", Password: "alice-interop-pw"},
	{Number: "1001", Contact: "*", Password: "bob-interop-pw"},
}

// devCA returns the path of the dev CA that sipsvc generated in its data directory.
func devCA(t *testing.T, svc *sipsvc) string {
	t.Helper()
	ca := filepath.Join(svc.dir, "data", "tls", "dev-ca.pem")
	if _, err := os.Stat(ca); err != nil {
		t.Fatalf("sipsvc's dev CA: %v", err)
	}
	return ca
}

// baresipCall waits until both phones are registered over their transports (checked through
// the API), has caller (DN 1000) dial 1001 and callee accept, checks the call in the API while
// it is talking, lets audio flow, has the caller hang up, and checks that RTP flowed both ways
// and that the call has left the API.
func baresipCall(t *testing.T, svc *sipsvc, caller, callee *baresipPhone, callerTransport, calleeTransport string) {
	t.Helper()
	waitRegistered(t, svc, "1000", callerTransport)
	waitRegistered(t, svc, "1001", calleeTransport)

	caller.command(t, "dial", "1001")
	callee.waitEvent(t, "CALL_INCOMING", 10*time.Second)
	callee.command(t, "accept", "")
	caller.waitEvent(t, "CALL_ESTABLISHED", 10*time.Second)
	callee.waitEvent(t, "CALL_ESTABLISHED", 10*time.Second)

	var calls apiCalls
	apiGet(t, svc, "/v1/calls", &calls)
	if len(calls.Calls) != 1 {
		t.Fatalf("API: want 1 call while talking, got %+v", calls)
	}
	c := calls.Calls[0]
	if c.State != "CALL_STATE_TALKING" || c.Caller != "1000" || c.Dialed != "1001" || len(c.Legs) != 2 {
		t.Fatalf("API: want a talking call 1000 → 1001 with two legs, got %+v", c)
	}
	a, b := c.Legs[0], c.Legs[1]
	if a.Decision.Transport != callerTransport || a.Decision.Scheme != "sip" || b.DN != "1001" || b.Decision.Transport != calleeTransport {
		t.Fatalf("API: want leg A sip/%s and leg B to 1001 over %s, got A %+v B %+v", callerTransport, calleeTransport, a, b)
	}

	time.Sleep(2 * time.Second) // let some audio flow
	caller.command(t, "hangup", "")
	caller.waitEvent(t, "CALL_CLOSED", 5*time.Second)
	// The caller's BYE goes to the Contact sipsvc gave it; sipsvc must get it at once and pass
	// it on (a Contact the caller cannot reach shows up here as a late, timed-out teardown).
	callee.waitEvent(t, "CALL_CLOSED", 3*time.Second)
	// sipsvc logs "call ended" once leg B's 200 to its BYE is in, which can be after the
	// callee reports CALL_CLOSED (it does on the BYE): wait for the line, do not race it.
	if l := waitLogLine(svc.log, `msg="call ended"`, 5*time.Second); !strings.Contains(l, `cause="bye from A"`) {
		t.Fatalf("sipsvc: want the call ended by the caller's BYE (cause \"bye from A\"), got %q\n--- sipsvc log\n%s", l, tail(svc.log, 8000))
	}

	for _, p := range []*baresipPhone{caller, callee} {
		tx, rx := p.rtpPackets(t)
		t.Logf("baresip %s: RTP packets sent %d, received %d", p.name, tx, rx)
		// 20 ms packets for 2 s or more: 100 each way; ask for half of that, for a loaded machine.
		if tx < 50 || rx < 50 {
			t.Errorf("baresip %s: want audio both ways (≥ 50 RTP packets), got sent %d received %d", p.name, tx, rx)
		}
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		calls = apiCalls{} // an empty list comes back as {}: no "calls" field to overwrite
		apiGet(t, svc, "/v1/calls", &calls)
		if len(calls.Calls) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("API: the call is still listed after both phones hung up: %+v\n--- sipsvc log\n%s", calls, tail(svc.log, 12000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadmeSoftphoneWalkthrough keeps README.md's "Call from a softphone on another machine"
// and testdata/baresip in step: every file the README copies exists, and every placeholder its
// sed commands fill in is still in those files (the baresip tests fill in the same ones).
func TestReadmeSoftphoneWalkthrough(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Call from a softphone on another machine")
	if start < 0 {
		t.Fatal(`README.md has no section "Call from a softphone on another machine"`)
	}
	section := readme[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	for file, placeholders := range map[string][]string{
		"config":       {"SIPSVC_CA_FILE"},
		"accounts-tls": {"SIPSVC_HOST:5061", "<sip:DN@", "auth_pass=PASSWORD"},
		"accounts-udp": {"SIPSVC_HOST:5060", "<sip:DN@", "auth_pass=PASSWORD"},
	} {
		if !strings.Contains(section, "test/interop/testdata/baresip/"+file) {
			t.Errorf("README's softphone section does not mention test/interop/testdata/baresip/%s", file)
		}
		body := baresipTemplate(t, file)
		for _, p := range placeholders {
			if !strings.Contains(body, p) {
				t.Errorf("testdata/baresip/%s lacks the placeholder %q", file, p)
			}
			// The README's sed expressions name the placeholder without the port.
			name := strings.TrimSuffix(strings.TrimSuffix(p, ":5060"), ":5061")
			if !strings.Contains(section, name) {
				t.Errorf("README's softphone section does not fill in %q", name)
			}
		}
	}
	for _, cmd := range []string{"/dial 2001", "/accept", "/hangup", "/v1/calls", "/registrations"} {
		if !strings.Contains(section, cmd) {
			t.Errorf("README's softphone section lost %q", cmd)
		}
	}
}
