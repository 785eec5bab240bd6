package signaling

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// Issue 12 runs on the project's own test hosts: a network namespace joined to this host by
// a veth pair, made and removed by the test. Traffic goes only to loopback and to that
// namespace.

const (
	netnsPeerEnv    = "SIPSVC_NETNS_PEER" // set in the re-executed test binary that plays the peer
	netnsCallerPort = 5061                // in the namespace: nobody else's ports
	netnsCalleePort = 5062
)

// testHosts is a namespace and the addresses of both ends of its veth pair.
type testHosts struct {
	ns     string
	hostIP string // this side
	peerIP string // inside ns
}

// newTestHosts makes a namespace and veth pair with a /30 in 10.231.0.0/16, unique per run
// (several runs may share the machine), and removes both at cleanup, also on failure. It
// fails the test, never skips, when it cannot: CI runs it as root.
func newTestHosts(t *testing.T) testHosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for ip netns (CI runs this test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) not installed: %v", err)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(rnd[:])
	h := testHosts{ns: "sipsvc-" + id}
	hostIf, peerIf := "vsh"+id, "vsp"+id
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	must := func(args ...string) {
		t.Helper()
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	must("netns", "add", h.ns)
	t.Cleanup(func() { _ = run("netns", "del", h.ns) }) // takes the veth pair with it
	must("link", "add", hostIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { _ = run("link", "del", hostIf) })
	must("link", "set", peerIf, "netns", h.ns)
	// A /30 no other run uses: try a few subnets until the address is free. 10.231.0.0/24
	// is left to tests that take the plain 10.231.0.1/.2.
	for i := 0; ; i++ {
		sub := int(rnd[0])<<8 | int(rnd[1]) + i
		third, fourth := 1+(sub>>6)%254, (sub&0x3f)<<2
		h.hostIP, h.peerIP = fmt.Sprintf("10.231.%d.%d", third, fourth+1), fmt.Sprintf("10.231.%d.%d", third, fourth+2)
		if err := run("addr", "add", h.hostIP+"/30", "dev", hostIf); err == nil {
			break
		} else if i == 16 {
			t.Fatal(err)
		}
	}
	must("link", "set", hostIf, "up")
	must("-n", h.ns, "addr", "add", h.peerIP+"/30", "dev", peerIf)
	must("-n", h.ns, "link", "set", peerIf, "up")
	must("-n", h.ns, "link", "set", "lo", "up")
	return h
}

// netnsResult is what the peer saw, printed as one JSON line.
type netnsResult struct {
	InviteVia     string `json:"invite_via"`     // top Via host of the INVITE to the callee
	InviteContact string `json:"invite_contact"` // Contact host of that INVITE
	OKContact     string `json:"ok_contact"`     // Contact host:port of the 200 OK to the caller
	ByeStatus     int    `json:"bye_status"`     // our in-dialog BYE's final status
	CalleeBye     bool   `json:"callee_bye"`     // the callee got the B2BUA's BYE
	Err           string `json:"err,omitempty"`
}

// TestAdvertisedAddressFromAnotherHost (issue 12): sipsvc listens on 0.0.0.0; a caller and a
// callee in another network namespace (another host) see 10.231.x.1 — the address that
// reaches them — in Via and Contact, never 127.0.0.1, and the caller's BYE, sent to the
// Contact it was given, reaches sipsvc.
func TestAdvertisedAddressFromAnotherHost(t *testing.T) {
	if os.Getenv(netnsPeerEnv) != "" {
		t.Skip("peer process")
	}
	h := newTestHosts(t)
	calleeContact := fmt.Sprintf("sip:2000@%s:%d", h.peerIP, netnsCalleePort)
	dir := newMemDir(dn.DN{Number: "2000", Type: dn.TypeExtension, Contact: calleeContact})
	s, err := New(Config{Directory: dir, Logger: testLogger(), RingTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, Listeners{UDP: []net.PacketConn{u}}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	port := u.LocalAddr().(*net.UDPAddr).Port

	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	cmd := exec.CommandContext(pctx, "ip", "netns", "exec", h.ns, os.Args[0], "-test.run=^TestNetnsPeer$", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsPeerEnv+"="+net.JoinHostPort(h.hostIP, strconv.Itoa(port)), "SIPSVC_NETNS_ME="+h.peerIP)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("peer in %s: %v\nstdout: %s\nstderr: %s", h.ns, err, stdout.String(), stderr.String())
	}
	var res netnsResult
	found := false
	for _, line := range strings.Split(stdout.String(), "\n") {
		if j, ok := strings.CutPrefix(line, "NETNS_RESULT "); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("peer printed no result:\n%s\n%s", stdout.String(), stderr.String())
	}
	if res.Err != "" {
		t.Fatalf("peer: %s", res.Err)
	}
	if res.InviteVia != h.hostIP {
		t.Errorf("INVITE to the callee: Via host %q, want %s", res.InviteVia, h.hostIP)
	}
	if res.InviteContact != h.hostIP {
		t.Errorf("INVITE to the callee: Contact host %q, want %s", res.InviteContact, h.hostIP)
	}
	if want := net.JoinHostPort(h.hostIP, strconv.Itoa(port)); res.OKContact != want {
		t.Errorf("200 OK to the caller: Contact %q, want %s", res.OKContact, want)
	}
	if res.ByeStatus != 200 {
		t.Errorf("caller's BYE to the advertised Contact: %d, want 200", res.ByeStatus)
	}
	if !res.CalleeBye {
		t.Error("callee got no BYE from the B2BUA")
	}
}

// TestNetnsPeer is the caller and the callee of TestAdvertisedAddressFromAnotherHost, run
// inside the namespace by the re-executed test binary; it does nothing otherwise.
func TestNetnsPeer(t *testing.T) {
	svc := os.Getenv(netnsPeerEnv)
	if svc == "" {
		t.Skip("helper: runs only inside the namespace, as the peer of TestAdvertisedAddressFromAnotherHost")
	}
	res := netnsPeer(svc, os.Getenv("SIPSVC_NETNS_ME"))
	b, _ := json.Marshal(res)
	fmt.Printf("NETNS_RESULT %s\n", b)
}

func netnsPeer(svc, me string) (res netnsResult) {
	fail := func(format string, a ...any) netnsResult {
		res.Err = fmt.Sprintf(format, a...)
		return res
	}
	caller, err := net.ListenPacket("udp4", net.JoinHostPort(me, strconv.Itoa(netnsCallerPort)))
	if err != nil {
		return fail("caller listen: %v", err)
	}
	defer caller.Close()
	callee, err := net.ListenPacket("udp4", net.JoinHostPort(me, strconv.Itoa(netnsCalleePort)))
	if err != nil {
		return fail("callee listen: %v", err)
	}
	defer callee.Close()
	svcAddr, err := net.ResolveUDPAddr("udp4", svc)
	if err != nil {
		return fail("%v", err)
	}
	tmpl, err := os.ReadFile("testdata/netns_invite.sip")
	if err != nil {
		return fail("%v", err)
	}
	meAddr := net.JoinHostPort(me, strconv.Itoa(netnsCallerPort))
	inv := strings.NewReplacer("{{SVC}}", svc, "{{ME}}", meAddr, "{{LEN}}", strconv.Itoa(len(testSDP)), "{{SDP}}", testSDP).Replace(string(tmpl))
	if _, err := caller.WriteTo([]byte(inv), svcAddr); err != nil {
		return fail("send INVITE: %v", err)
	}
	// The callee answers the B2BUA's INVITE and BYE; it runs until the caller is done.
	calleeDone := make(chan struct{})
	stop := make(chan struct{})
	var cmu sync.Mutex // guards calleeRes
	var calleeRes struct {
		via, contact string
		bye          bool
	}
	go func() {
		defer close(calleeDone)
		buf := make([]byte, 65535)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = callee.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, from, err := callee.ReadFrom(buf)
			if err != nil {
				continue
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			req, ok := msg.(*sip.Request)
			if !ok || req.IsAck() {
				continue
			}
			resp := sip.NewResponseFromRequest(req, 200, "OK", nil)
			cmu.Lock()
			switch req.Method {
			case sip.INVITE:
				if calleeRes.via == "" {
					calleeRes.via = req.Via().Host
					if c := req.Contact(); c != nil {
						calleeRes.contact = c.Address.Host
					}
				}
				resp.To().Params.Add("tag", "bobtag")
				resp.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: me, Port: netnsCalleePort}})
				resp.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
				resp.SetBody([]byte(testSDP))
			case sip.BYE:
				calleeRes.bye = true
			}
			cmu.Unlock()
			_, _ = callee.WriteTo([]byte(resp.String()), from)
		}
	}()
	defer func() {
		close(stop)
		<-calleeDone
		cmu.Lock()
		defer cmu.Unlock()
		res.InviteVia, res.InviteContact, res.CalleeBye = calleeRes.via, calleeRes.contact, calleeRes.bye
	}()

	read := func(want sip.RequestMethod, within time.Duration) (*sip.Response, error) {
		buf := make([]byte, 65535)
		deadline := time.Now().Add(within)
		for {
			_ = caller.SetReadDeadline(deadline)
			n, _, err := caller.ReadFrom(buf)
			if err != nil {
				return nil, err
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			if r, ok := msg.(*sip.Response); ok && r.CSeq().MethodName == want && r.StatusCode >= 200 {
				return r, nil
			}
		}
	}
	ok, err := read(sip.INVITE, 10*time.Second)
	if err != nil {
		return fail("no final answer to INVITE: %v", err)
	}
	if ok.StatusCode != 200 || ok.Contact() == nil {
		return fail("INVITE answered %d, contact %v", ok.StatusCode, ok.Contact())
	}
	ct := ok.Contact().Address
	res.OKContact = net.JoinHostPort(ct.Host, strconv.Itoa(ct.Port))
	dst, err := net.ResolveUDPAddr("udp4", res.OKContact)
	if err != nil {
		return fail("200 OK Contact %q: %v", res.OKContact, err)
	}
	toTag, _ := ok.To().Params.Get("tag")
	inDialog := func(method sip.RequestMethod, cseq int, branch string) string {
		return fmt.Sprintf("%s sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\n"+
			"From: \"Alice\" <sip:alice@%s>;tag=alicetag\r\nTo: <sip:2000@%s>;tag=%s\r\nCall-ID: netns-call-1@%s\r\n"+
			"CSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			method, res.OKContact, meAddr, branch, meAddr, svc, toTag, meAddr, cseq, method)
	}
	if _, err := caller.WriteTo([]byte(inDialog(sip.ACK, 1, "z9hG4bKnetnsack")), dst); err != nil {
		return fail("send ACK: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := caller.WriteTo([]byte(inDialog(sip.BYE, 2, "z9hG4bKnetnsbye")), dst); err != nil {
		return fail("send BYE: %v", err)
	}
	bye, err := read(sip.BYE, 5*time.Second)
	if err != nil {
		return fail("no answer to BYE sent to %s: %v", dst, err)
	}
	res.ByeStatus = bye.StatusCode
	// Give the B2BUA's BYE to the callee time to arrive.
	for i := 0; i < 50; i++ {
		cmu.Lock()
		seen := calleeRes.bye
		cmu.Unlock()
		if seen {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return res
}
