package signaling

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

func TestCancelBeforeAnswer(t *testing.T) {
	for _, tp := range []string{"UDP", "TCP", "TLS"} {
		t.Run(tp, func(t *testing.T) {
			bob := newPhone(t, "bob", tp)
			bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
				tx.OnCancel(func(r *sip.Request) { bob.Record(r) })
				bob.Ring(req, tx)
				<-tx.Done()
			})

			b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
			alice := newPhone(t, "alice", tp)
			call := alice.invite(b, "6000", inviteOpts{})
			call.WaitProvisional(180, 3*time.Second)
			if res := call.Cancel(); res.StatusCode != 200 {
				t.Fatalf("CANCEL → %d", res.StatusCode)
			}
			if res := call.Wait(5 * time.Second); res.StatusCode != 487 {
				t.Fatalf("INVITE final %d, want 487", res.StatusCode)
			}
			bob.WaitRequest(sip.CANCEL, 1, 3*time.Second)
			b.rec.waitKind(t, EventCallEnded)
		})
	}
}

func TestByeFromCallee(t *testing.T) {
	bob := newPhone(t, "bob", "TCP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "TCP")
	call := alice.invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if code := byeFromPhone(t, bob, inv); code != 200 {
		t.Fatalf("BYE from B → %d", code)
	}
	bye := alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	// RFC 3261 §18.2.2, R33/P7: toward a peer that connected over TCP, sipsvc reuses that
	// connection, so the BYE comes from sipsvc's listening port, not a new ephemeral one.
	if bye.Source() != b.tcp {
		t.Errorf("BYE to A came from %s, want the A connection to %s", bye.Source(), b.tcp)
	}
	ended := b.rec.waitKind(t, EventCallEnded)
	if !strings.Contains(ended.Cause, "bye from B1") {
		t.Errorf("cause %q", ended.Cause)
	}
}

func TestReinviteAndInDialogRelay(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	held := strings.Replace(testSDP, "a=sendrecv", "a=sendonly", 1)
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.OK(req, tx, []byte(strings.Replace(testSDP, "a=sendrecv", "a=recvonly", 1)))
	})

	res := call.Request(sip.INVITE, []byte(held))
	if res.StatusCode != 200 || !strings.Contains(string(res.Body()), "a=recvonly") {
		t.Fatalf("re-INVITE → %d %q", res.StatusCode, res.Body())
	}
	call.Ack()
	var reinv *sip.Request
	deadline := time.Now().Add(2 * time.Second)
	for reinv == nil && time.Now().Before(deadline) {
		n := 0
		for _, r := range bob.Received() {
			if r.Method == sip.INVITE {
				n++
				if n == 2 {
					reinv = r
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if reinv == nil || string(reinv.Body()) != held {
		t.Fatalf("B did not get the re-INVITE with the new SDP")
	}
	b.rec.waitKind(t, EventLegHeld)
	for _, m := range []sip.RequestMethod{sip.INFO, sip.UPDATE, sip.NOTIFY} {
		var hdrs []sip.Header
		if m == sip.NOTIFY {
			hdrs = append(hdrs, sip.NewHeader("Event", "talk"), sip.NewHeader("Subscription-State", "active"))
		}
		if res := call.Request(m, []byte("body-"+string(m)), hdrs...); res.StatusCode != 200 {
			t.Errorf("%s → %d", m, res.StatusCode)
		}
		got := bob.WaitRequest(m, 1, 2*time.Second)
		if string(got.Body()) != "body-"+string(m) {
			t.Errorf("%s body %q", m, got.Body())
		}
		if m == sip.NOTIFY && hdr(got, "Event") != "talk" {
			t.Errorf("NOTIFY Event not relayed")
		}
	}
	call.Request(sip.BYE, nil)
}

func TestCalleeBusy486(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
	})

	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	res := newPhone(t, "alice", "UDP").invite(b, "6000", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 486 {
		t.Fatalf("got %d, want 486", res.StatusCode)
	}
	if !strings.Contains(hdr(res, "Reason"), "cause=486") {
		t.Errorf("Reason %q", hdr(res, "Reason"))
	}
}

func TestRingTimeoutCancelsB(t *testing.T) {
	bob := newPhone(t, "bob", "TCP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.OnCancel(func(r *sip.Request) { bob.Record(r) })
		bob.Ring(req, tx)
		<-tx.Done()
	})

	b := startB2BUA(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond }, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	res := newPhone(t, "alice", "TCP").invite(b, "6000", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 408 || !strings.Contains(hdr(res, "Reason"), "ring timeout") {
		t.Fatalf("got %d %q, want 408 with Reason ring timeout", res.StatusCode, hdr(res, "Reason"))
	}
	bob.WaitRequest(sip.CANCEL, 1, 2*time.Second)
}

func TestUnknownDN404(t *testing.T) {
	b := startB2BUA(t, nil)
	if res := newPhone(t, "alice", "UDP").invite(b, "9999", inviteOpts{}).Wait(5 * time.Second); res.StatusCode != 404 {
		t.Fatalf("got %d", res.StatusCode)
	}
}

func TestTargetUnreachable(t *testing.T) {
	// A closed TCP port: connection refused.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	// A TLS peer whose certificate is not trusted: handshake failure.
	bad := newPhone(t, "bad", "TLS")
	b := startB2BUA(t, func(c *Config) { c.ClientTLS = &tls.Config{MinVersion: tls.VersionTLS12} },
		dn.DN{Number: "7000", Type: dn.TypeExtension, Contact: "sip:7000@" + dead + ";transport=tcp"},
		dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: "sips:5000@" + bad.Addr},
		dn.DN{Number: "5001", Type: dn.TypeExtension, Contact: "sips:5001@" + bad.Addr, InsecureSkipVerify: true})
	alice := newPhone(t, "alice", "UDP")
	for _, tc := range []struct{ number, reason string }{{"7000", "refused"}, {"5000", "TLS handshake"}} {
		res := alice.invite(b, tc.number, inviteOpts{}).Wait(10 * time.Second)
		if res.StatusCode != 503 || !strings.Contains(hdr(res, "Reason"), tc.reason) {
			t.Errorf("%s: got %d Reason %q, want 503 with %q", tc.number, res.StatusCode, hdr(res, "Reason"), tc.reason)
		}
	}
	// insecure_skip_verify on the DN lets the same peer through (labs only).
	res := alice.invite(b, "5001", inviteOpts{}).Wait(10 * time.Second)
	if res.StatusCode != 200 {
		t.Errorf("insecure_skip_verify DN: got %d", res.StatusCode)
	}
}

func TestMaxForwardsZero483(t *testing.T) {
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "sip:6000@127.0.0.1:9"})
	res := rawUDP(t, b.udp, inviteRaw(b.udp, "Max-Forwards: 0\r\n"))
	if !strings.HasPrefix(res, "SIP/2.0 483") {
		t.Fatalf("got %q", firstLine(res))
	}
}

func TestSessionIntervalTooSmall422(t *testing.T) {
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "sip:6000@127.0.0.1:9"})
	res := rawUDP(t, b.udp, inviteRaw(b.udp, "Max-Forwards: 70\r\nSession-Expires: 30\r\n"))
	if !strings.HasPrefix(res, "SIP/2.0 422") || !strings.Contains(res, "Min-SE: 90") {
		t.Fatalf("got %q", res)
	}
}

func TestSessionTimerExpiryEndsCall(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.MinSE = time.Second }, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{headers: []sip.Header{sip.NewHeader("Supported", "timer"), sip.NewHeader("Session-Expires", "2;refresher=uac")}})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 || hdr(res, "Session-Expires") != "2;refresher=uac" || !strings.Contains(hdr(res, "Require"), "timer") {
		t.Fatalf("got %d Session-Expires %q Require %q", res.StatusCode, hdr(res, "Session-Expires"), hdr(res, "Require"))
	}
	call.Ack()
	// No refresh from alice: sipsvc ends the call on both legs (RFC 4028 §10).
	alice.WaitRequest(sip.BYE, 1, 4*time.Second)
	bob.WaitRequest(sip.BYE, 1, 4*time.Second)
	ended := b.rec.waitKind(t, EventCallEnded)
	if !strings.Contains(ended.Cause, "session timer expired") {
		t.Errorf("cause %q", ended.Cause)
	}
}

func TestSessionRefreshKeepsCall(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.MinSE = time.Second }, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{headers: []sip.Header{sip.NewHeader("Supported", "timer"), sip.NewHeader("Session-Expires", "2;refresher=uac")}})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	for i := 0; i < 3; i++ {
		time.Sleep(800 * time.Millisecond)
		if res := call.Request(sip.UPDATE, nil, sip.NewHeader("Session-Expires", "2;refresher=uac")); res.StatusCode != 200 {
			t.Fatalf("refresh %d → %d", i, res.StatusCode)
		}
	}
	if alice.Count(sip.BYE) != 0 {
		t.Fatalf("call ended although refreshed")
	}
	call.Request(sip.BYE, nil)
}

func TestOptions(t *testing.T) {
	b := startB2BUA(t, nil)
	res := rawUDP(t, b.udp, "OPTIONS sip:sipsvc@"+b.udp+" SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:sipsvc@127.0.0.1>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	for _, want := range []string{"SIP/2.0 200", "Allow: INVITE", "Supported:", "Accept: application/sdp"} {
		if !strings.Contains(res, want) {
			t.Errorf("OPTIONS response lacks %q:\n%s", want, res)
		}
	}
}

// TestMalformedInputKeepsServing sends garbage and broken requests, then checks the
// service still answers.
func TestMalformedInputKeepsServing(t *testing.T) {
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "sip:6000@127.0.0.1:9"})
	c, err := net.Dial("udp", b.udp)
	must(t, err)
	defer c.Close()
	for _, junk := range []string{"\x00\x01garbage", "INVITE\r\n\r\n", "NOTSIP / HTTP/1.1\r\n\r\n", strings.Repeat("A", 4000)} {
		_, _ = c.Write([]byte(junk))
	}
	// Missing From: 400.
	noFrom := "INVITE sip:6000@" + b.udp + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbad1\r\nTo: <sip:6000@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if res := rawUDP(t, b.udp, noFrom); !strings.HasPrefix(res, "SIP/2.0 400") {
		t.Errorf("missing From → %q", firstLine(res))
	}
	// Unsupported URI scheme: 416 (R18).
	if res := rawUDP(t, b.udp, strings.Replace(inviteRaw(b.udp, "Max-Forwards: 70\r\n"), "INVITE sip:6000@"+b.udp, "INVITE tel:+15551234", 1)); !strings.HasPrefix(res, "SIP/2.0 416") {
		t.Errorf("tel: R-URI → %q", firstLine(res))
	}
	// CSeq method mismatch: 400.
	if res := rawUDP(t, b.udp, strings.Replace(inviteRaw(b.udp, "Max-Forwards: 70\r\n"), "CSeq: 1 INVITE", "CSeq: 1 BYE", 1)); !strings.HasPrefix(res, "SIP/2.0 400") {
		t.Errorf("CSeq mismatch → %q", firstLine(res))
	}
	// A broken TCP stream closes that connection only.
	tc, err := net.Dial("tcp", b.tcp)
	must(t, err)
	_, _ = tc.Write([]byte("INVITE sip:x@y SIP/2.0\r\nContent-Length: abc\r\n\r\n"))
	tc.Close()
	res := rawUDP(t, b.udp, "OPTIONS sip:sipsvc@"+b.udp+" SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt2\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:sipsvc@127.0.0.1>\r\nCall-ID: opt2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	if !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("service stopped answering after malformed input: %q", firstLine(res))
	}
}

// TestR33_KeepaliveAndRegisteredFlow: a device keeps a TLS flow open (double-CRLF ping →
// CRLF pong), and a call to its binding arrives down that very connection.
func TestR33_DeliverOverRegisteredTLSFlow(t *testing.T) {
	b := startB2BUA(t, nil, dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*"})
	conn, err := tls.Dial("tcp", b.tlsA, clientTLS())
	must(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("\r\n\r\n"))
	must(t, err)
	pong := make([]byte, 2)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(pong); err != nil || string(pong) != "\r\n" {
		t.Fatalf("keepalive pong: %q %v", pong, err)
	}
	// The binding a sips REGISTER over this connection would leave (T4): no transport param.
	b.dir.mu.Lock()
	b.dir.bindings["7789"] = []dn.Binding{{Number: "7789", Contact: "sips:7789@127.0.0.1:5999", Secure: true, Transport: "TLS", Source: conn.LocalAddr().String(), Expires: time.Now().Add(time.Hour)}}
	b.dir.mu.Unlock()
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "7789", inviteOpts{})
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, err := readSIP(bufio.NewReader(conn))
	if err != nil {
		t.Fatalf("no INVITE on the registered TLS flow: %v", err)
	}
	if !strings.HasPrefix(msg, "INVITE sips:7789@127.0.0.1:5999 SIP/2.0") || !strings.Contains(msg, "Via: SIP/2.0/TLS") {
		t.Fatalf("T4/R8: %s", firstLine(msg))
	}
	_ = call
}

func inviteRaw(dst, extra string) string {
	return "INVITE sip:6000@" + dst + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK" + sip.GenerateTagN(8) + "\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:6000@127.0.0.1>\r\nCall-ID: " + sip.GenerateTagN(10) + "\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:5999>\r\n" + extra + "Content-Length: 0\r\n\r\n"
}

// rawUDP sends one datagram and returns the first non-100 response.
func rawUDP(t *testing.T, dst, msg string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	defer c.Close()
	ua, _ := net.ResolveUDPAddr("udp", dst)
	msg = strings.ReplaceAll(msg, "127.0.0.1:5999", c.LocalAddr().String())
	if _, err := c.WriteTo([]byte(msg), ua); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		s := string(buf[:n])
		if !strings.HasPrefix(s, "SIP/2.0 100") {
			return s
		}
	}
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// readSIP reads one SIP message (headers and body) from a stream.
func readSIP(r *bufio.Reader) (string, error) {
	var b strings.Builder
	cl := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" && b.Len() == 0 {
			continue
		}
		b.WriteString(line)
		if strings.HasPrefix(strings.ToLower(line), "content-length:") {
			fmt.Sscan(strings.TrimSpace(line[len("content-length:"):]), &cl)
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, cl)
	if _, err := r.Read(body); err != nil && cl > 0 {
		return b.String(), err
	}
	b.Write(body)
	return b.String(), nil
}

// TestDrainRefusesNewCallsKeepsCurrentOnes: during a graceful shutdown a call in progress
// goes on and ends normally, a new call gets 503 with Retry-After.
func TestDrainRefusesNewCallsKeepsCurrentOnes(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	done := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- b.s.Drain(ctx)
	}()
	time.Sleep(150 * time.Millisecond)
	res := newPhone(t, "carol", "UDP").invite(b, "6000", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 503 || hdr(res, "Retry-After") == "" {
		t.Fatalf("new call while draining: %d, want 503 with Retry-After", res.StatusCode)
	}
	select {
	case n := <-done:
		t.Fatalf("Drain returned (%d left) while a call was up", n)
	default:
	}
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE during drain → %d", res.StatusCode)
	}
	if n := <-done; n != 0 {
		t.Fatalf("Drain left %d calls", n)
	}
}
