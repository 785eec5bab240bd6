package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startStunnelClient runs stunnel4 in TLS client mode: it accepts clear TCP on acceptPort and
// carries it over TLS to 127.0.0.1:tlsPort, verifying the server's certificate against caFile
// and its IP address (127.0.0.1). Debian's SIPp has no TLS; behind this it talks to sipsvc's
// TLS listener.
func startStunnelClient(t *testing.T, acceptPort, tlsPort int, caFile string) *proc {
	t.Helper()
	bin := requireTool(t, "stunnel4", "stunnel4", "stunnel")
	dir := t.TempDir()
	conf := fmt.Sprintf(`foreground = yes
pid =
debug = info
[sipp-tls-client]
client = yes
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
CAfile = %s
verifyChain = yes
checkIP = 127.0.0.1
sslVersionMin = TLSv1.2
`, acceptPort, tlsPort, caFile)
	cf := filepath.Join(dir, "stunnel.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "stunnel-client", dir, nil, bin, cf)
	if err := waitTCP(acceptPort, 10*time.Second); err != nil {
		t.Fatalf("stunnel client: %v\n%s", err, tail(p.log, 4000))
	}
	return p
}

// TestSIPpRegisterAndCallOverTLS: SIPp reaches sipsvc's TLS port through stunnel4 in client
// mode (stunnel verifies sipsvc's dev certificate against the dev CA). Over one TLS
// connection SIPp registers DNs with digest auth using sipsvc's default registrar settings
// (sipp/register_auth.xml: REGISTER, 401, REGISTER with MD5 digest, 200, unREGISTER); then a
// SIPp caller over TLS places calls to a plain SIPp phone on UDP (leg A TLS, leg B UDP).
// Every registration and call must succeed, and stunnel must report a verified certificate.
func TestSIPpRegisterAndCallOverTLS(t *testing.T) {
	const regs, nCalls = 20, 3
	users := readUsers(t, filepath.Join("sipp", "users.csv"))[:regs]
	uasPort := freePort(t)
	dns := []dnSpec{{Number: "6000", Contact: fmt.Sprintf("sip:6000@127.0.0.1:%d", uasPort)}}
	for _, u := range users {
		dns = append(dns, dnSpec{Number: u[0], Contact: "*", Password: u[1]})
	}
	svc := startSipsvc(t, svcOptions{DNs: dns})
	ca := filepath.Join(svc.dir, "data", "tls", "dev-ca.pem")
	front := freePort(t)
	stunnel := startStunnelClient(t, front, svc.tls, ca)

	reg := runUAC(t, "register-tls", 60*time.Second,
		"-sf", scenario(t, "register_auth.xml"), "-inf", scenario(t, "users.csv"), addr(front),
		"-t", "t1", "-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
		"-m", strconv.Itoa(regs), "-r", "20", "-l", strconv.Itoa(regs),
		"-recv_timeout", "10000", "-timeout", "45", "-timeout_error")
	if reg.code != 0 || reg.ok != regs {
		t.Errorf("stunnel log:\n%s", tail(stunnel.log, 3000))
	}
	expectCalls(t, "SIPp REGISTER with digest over TLS", reg, regs, svc)

	uas := startSIPp(t, "uas", "-sf", scenario(t, "uas.xml"), "-t", "u1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-s", "6000", "-m", strconv.Itoa(nCalls))
	waitSIPpListening(t, uas, "u1", uasPort)
	uac := runUAC(t, "uac-tls", 60*time.Second, sippCaller(t, addr(front), "t1", "6000", nCalls)...)
	expectCalls(t, "caller over TLS (SIPp UAC behind stunnel)", uac, nCalls, svc)
	expectCalls(t, "callee on UDP (SIPp UAS)", uas.wait(t, 20*time.Second), nCalls, svc)

	b, _ := os.ReadFile(stunnel.log)
	if !strings.Contains(string(b), "Certificate accepted") {
		t.Errorf("stunnel did not report a verified server certificate:\n%s", tail(stunnel.log, 3000))
	}
	// sipsvc saw TLS, not the TCP that SIPp writes in its Via: both the registrations and the
	// calls' leg A (debug log lines "registration added … transport=TLS", "call started …
	// transport=TLS").
	svcLog, _ := os.ReadFile(svc.log)
	for _, want := range []struct {
		msg string
		n   int
	}{{`msg="registration added"`, regs}, {`msg="call started"`, nCalls}} {
		got := 0
		for _, l := range strings.Split(string(svcLog), "\n") {
			if strings.Contains(l, want.msg) && strings.Contains(l, "transport=TLS") {
				got++
			}
		}
		if got != want.n {
			t.Errorf("sipsvc log: %d lines %s with transport=TLS, want %d\n%s", got, want.msg, want.n, tail(svc.log, 6000))
		}
	}
}
