package interop

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// testHost is "another machine" for a test: a network namespace joined to this host by a veth
// pair. The host's end has hostAddr, the namespace's end peerAddr, both in 10.231.0.0/16,
// which is used for nothing else; traffic between them never leaves this machine.
type testHost struct {
	ns                 string
	hostAddr, peerAddr string
}

// newTestHost makes the namespace and the veth pair, and removes them in t.Cleanup. It needs
// root and iproute2 (.ci/run runs as root; `ip` is Debian's iproute2). slot picks the /30
// (10.231.0.4×slot) so that tests running at once do not collide; the names carry the pid.
func newTestHost(t *testing.T, slot int) *testHost {
	t.Helper()
	requireTool(t, "iproute2", "ip")
	if os.Geteuid() != 0 {
		t.Fatalf("a test host (network namespace) needs root; run the interop suite as root, as .ci/run does")
	}
	removeStaleTestHosts(t)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, slot)
	h := &testHost{
		ns:       "sipsvc-it-" + id,
		hostAddr: fmt.Sprintf("10.231.0.%d", 200+4*slot+1),
		peerAddr: fmt.Sprintf("10.231.0.%d", 200+4*slot+2),
	}
	hostIf, peerIf := "sit"+id+"h", "sit"+id+"p" // at most 15 characters
	ip := func(args ...string) {
		t.Helper()
		if out, code := runCmd(t, 10*time.Second, "ip", args...); code != 0 {
			t.Fatalf("ip %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
	}
	ip("netns", "add", h.ns)
	t.Cleanup(func() {
		// Deleting the namespace deletes its end of the pair, and with it the host's end.
		_, _ = runCmd(t, 10*time.Second, "ip", "netns", "del", h.ns)
	})
	ip("link", "add", hostIf, "type", "veth", "peer", "name", peerIf)
	ip("link", "set", peerIf, "netns", h.ns)
	ip("addr", "add", h.hostAddr+"/30", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", h.ns, "addr", "add", h.peerAddr+"/30", "dev", peerIf)
	ip("-n", h.ns, "link", "set", peerIf, "up")
	ip("-n", h.ns, "link", "set", "lo", "up")
	return h
}

// removeStaleTestHosts deletes the namespaces that an earlier, killed run of this suite left
// behind (named sipsvc-it-<pid>-<slot>, whose process is gone), so that their addresses do not
// linger on the host.
func removeStaleTestHosts(t *testing.T) {
	t.Helper()
	out, code := runCmd(t, 10*time.Second, "ip", "netns", "list")
	if code != 0 {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "sipsvc-it-")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // still running (another run of the suite)
		}
		if out, code := runCmd(t, 10*time.Second, "ip", "netns", "del", name); code != 0 {
			t.Logf("stale test host %s: ip netns del: %s", name, out)
		}
	}
}

// TestBaresipFromAnotherHost is the README's "call from a softphone on another machine" with
// the other machine played by a network namespace. sipsvc listens on the host's veth address as
// well as loopback and advertises it (sip.hostname), so its dev certificate names that address
// too. Phone 1000 runs in the namespace and registers over TLS, verifying sipsvc's certificate
// for the host's address; phone 1001 runs on the host and registers over UDP. 1000 dials 1001:
// its ACK and BYE go to the Contact that sipsvc advertised, so a wrong advertised address
// (loopback, unreachable from the other host) fails the call, and RTP crosses the veth pair.
func TestBaresipFromAnotherHost(t *testing.T) {
	requireTool(t, "baresip-core", "baresip")
	h := newTestHost(t, 0)
	svc := startSipsvc(t, svcOptions{DNs: baresipDNs, AlsoListen: h.hostAddr, Hostname: h.hostAddr})
	ca := devCA(t, svc)
	remote := startBaresip(t, svc, ca, phoneSpec{name: "1000-tls-remote", accounts: "accounts-tls", dn: "1000", password: baresipDNs[0].Password,
		sipPort: svc.tls, defaultPort: "5061", svcHost: h.hostAddr, local: h.peerAddr, netns: h.ns})
	local := startBaresip(t, svc, ca, phoneSpec{name: "1001-udp", accounts: "accounts-udp", dn: "1001", password: baresipDNs[1].Password,
		sipPort: svc.udp, defaultPort: "5060", svcHost: h.hostAddr, local: h.hostAddr})
	baresipCall(t, svc, remote, local, "TLS", "UDP")
}
