package interop

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSvwarInviteFindsNoDN (issue 10): SIPVicious `svwar -m INVITE` scans a range of
// numbers as an anonymous caller. sipsvc answers every number the same 407 challenge
// whether a DN exists (with a password, or a trunk) or not, so svwar reports no
// extension, and nothing rings while it scans: the DNs' contact, a UDP socket of the
// test, receives no packet.
func TestSvwarInviteFindsNoDN(t *testing.T) {
	svwar := requireTool(t, "sipvicious", "svwar", "sipvicious_svwar")
	phone, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	var rang atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := phone.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "INVITE ") {
				rang.Add(1)
			}
		}
	}()
	contact := "sip:%s@" + phone.LocalAddr().String()
	svc := startSipsvc(t, svcOptions{DNs: []dnSpec{
		{Number: "2000", Contact: fmt.Sprintf(contact, "2000"), Password: "secret-2000"},
		{Number: "2001", Contact: fmt.Sprintf(contact, "2001"), Password: "secret-2001"},
		{Number: "2002", Type: "trunk", Contact: fmt.Sprintf(contact, "2002")},
		{Number: "2003", Type: "voip_service", Contact: fmt.Sprintf(contact, "2003")},
	}})

	out, code := runCmd(t, 120*time.Second, svwar, "--force", "-m", "INVITE", "-e2000-2010", "-p", strconv.Itoa(svc.udp), "127.0.0.1")
	t.Logf("svwar (exit %d):\n%s", code, out)
	for _, n := range []string{"2000", "2001", "2002", "2003"} {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "| "+n) || strings.HasPrefix(strings.TrimSpace(line), n+" ") {
				t.Errorf("svwar found DN %s: %q", n, line)
			}
		}
	}
	if !strings.Contains(strings.ToLower(out), "found nothing") && !strings.Contains(strings.ToLower(out), "no extension") {
		t.Errorf("svwar did not report that it found nothing")
	}
	time.Sleep(300 * time.Millisecond)
	if n := rang.Load(); n != 0 {
		t.Errorf("%d INVITEs reached a DN's contact during the scan", n)
	}
}
