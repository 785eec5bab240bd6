package signaling

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// rawCaller is a UDP caller on a raw socket: it sees every datagram sipsvc sends it,
// retransmissions included, and ACKs only when told to.
type rawCaller struct {
	t      *testing.T
	c      net.PacketConn
	dst    *net.UDPAddr
	callID string
}

func newRawCaller(t *testing.T, dst string) *rawCaller {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { c.Close() })
	ua, err := net.ResolveUDPAddr("udp", dst)
	must(t, err)
	return &rawCaller{t: t, c: c, dst: ua, callID: "rtx-" + strings.ReplaceAll(t.Name(), "/", "-")}
}

func (r *rawCaller) send(msg string) {
	r.t.Helper()
	if _, err := r.c.WriteTo([]byte(msg), r.dst); err != nil {
		r.t.Fatal(err)
	}
}

// invite sends an INVITE with an SDP offer for 6000.
func (r *rawCaller) invite() {
	la := r.c.LocalAddr().String()
	r.send("INVITE sip:6000@" + r.dst.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bKinv" + r.callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alicetag\r\nTo: <sip:6000@127.0.0.1>\r\n" +
		"Call-ID: " + r.callID + "\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@" + la + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(uint32(len(testSDP))) + "\r\n\r\n" + testSDP)
}

// reinvite sends a re-INVITE with CSeq seq in the dialog of the 2xx res.
func (r *rawCaller) reinvite(res string, seq uint32) {
	la := r.c.LocalAddr().String()
	r.send("INVITE sip:6000@" + r.dst.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bKre" + itoa(seq) + r.callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alicetag\r\nTo: " + headerLine(res, "To") + "\r\n" +
		"Call-ID: " + r.callID + "\r\nCSeq: " + itoa(seq) + " INVITE\r\nContact: <sip:alice@" + la + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(uint32(len(testSDP))) + "\r\n\r\n" + testSDP)
}

// ack acknowledges the 2xx res (its To tag and CSeq number) on a new branch (RFC 3261
// §17.1.1.3, §13.2.2.4).
func (r *rawCaller) ack(res string) {
	to := headerLine(res, "To")
	seq, _, _ := strings.Cut(headerLine(res, "CSeq"), " ")
	r.send("ACK sip:6000@" + r.dst.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + r.c.LocalAddr().String() + ";branch=z9hG4bKack" + r.callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alicetag\r\nTo: " + to + "\r\n" +
		"Call-ID: " + r.callID + "\r\nCSeq: " + seq + " ACK\r\nContent-Length: 0\r\n\r\n")
}

// ok answers a request sipsvc sent (a BYE) with 200.
func (r *rawCaller) ok(req string) {
	r.send("SIP/2.0 200 OK\r\nVia: " + headerLine(req, "Via") + "\r\nFrom: " + headerLine(req, "From") +
		"\r\nTo: " + headerLine(req, "To") + "\r\nCall-ID: " + headerLine(req, "Call-ID") +
		"\r\nCSeq: " + headerLine(req, "CSeq") + "\r\nContent-Length: 0\r\n\r\n")
}

// bye ends the call from the caller's side (after an ACK of the 2xx res).
func (r *rawCaller) bye(res string) {
	r.send("BYE sip:6000@" + r.dst.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + r.c.LocalAddr().String() + ";branch=z9hG4bKbye" + r.callID + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alicetag\r\nTo: " + headerLine(res, "To") + "\r\n" +
		"Call-ID: " + r.callID + "\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
}

// read returns the next message sipsvc sent within d, or "" at the deadline.
func (r *rawCaller) read(d time.Duration) string {
	buf := make([]byte, 65535)
	r.c.SetReadDeadline(time.Now().Add(d))
	n, _, err := r.c.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// count200s counts the 200s sipsvc sends within d.
func (r *rawCaller) count200s(d time.Duration) int {
	quiet, n := time.Now().Add(d), 0
	for time.Now().Before(quiet) {
		if m := r.read(time.Until(quiet)); strings.HasPrefix(m, "SIP/2.0 200") {
			n++
		}
	}
	return n
}

// headerLine returns the value of the first header named name in a raw message.
func headerLine(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// awaitOK reads until the first 200 to the INVITE and returns it with its arrival time.
func (r *rawCaller) awaitOK(within time.Duration) (string, time.Time) {
	r.t.Helper()
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		m := r.read(time.Until(end))
		if strings.HasPrefix(m, "SIP/2.0 200") && strings.Contains(headerLine(m, "CSeq"), "INVITE") {
			return m, time.Now()
		}
	}
	r.t.Fatalf("no 200 to the INVITE within %v", within)
	return "", time.Time{}
}

// TestRetransmit2xxUntilAck: RFC 3261 §13.3.1.4 over UDP. A caller that loses our 200 gets
// it again after T1, then 2*T1; its ACK stops the retransmissions. The 2xx to an inbound
// re-INVITE is retransmitted until its own ACK (CSeq of the re-INVITE) the same way.
func TestRetransmit2xxUntilAck(t *testing.T) {
	const t1 = 100 * time.Millisecond
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.T1, c.T2 = t1, 4*t1 },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newRawCaller(t, b.udp)
	alice.invite()
	first, t0 := alice.awaitOK(5 * time.Second) // "lost": not ACKed
	second, t1At := alice.awaitOK(2 * time.Second)
	third, t2At := alice.awaitOK(2 * time.Second)
	if headerLine(second, "To") != headerLine(first, "To") || headerLine(third, "CSeq") != headerLine(first, "CSeq") {
		t.Fatalf("retransmission differs from the 2xx:\n%s\n---\n%s", first, second)
	}
	// Timing on a loaded machine (read times, so measured from the first 200's): the first
	// copy comes after ~T1, the second ~3*T1 after the 200 (T1 then 2*T1: the doubling;
	// without it, 2*T1); both well under the 64*T1 give-up.
	if g := t1At.Sub(t0); g < t1/2 || g > 16*t1 {
		t.Errorf("first retransmission after %v, want ~T1 (%v)", g, t1)
	}
	if g := t2At.Sub(t0); g < 3*t1*4/5 || g > 20*t1 {
		t.Errorf("second retransmission %v after the 200, want ~3*T1 (%v)", g, 3*t1)
	}
	alice.ack(third)
	// A retransmission already in flight may still arrive; then none for several intervals.
	late := alice.count200s(6 * t1)
	if late > 1 {
		t.Errorf("%d retransmissions of the 200 after the ACK", late)
	}
	if e := b.rec.all(); hasKind(e, EventCallEnded) {
		t.Errorf("call ended although ACKed: %v", e)
	}
	// An inbound re-INVITE's 2xx is retransmitted the same way, and its ACK (CSeq 2) stops it.
	alice.reinvite(third, 2)
	re, _ := alice.awaitOK(5 * time.Second)
	if !strings.HasPrefix(headerLine(re, "CSeq"), "2 ") {
		t.Fatalf("200 to the re-INVITE has CSeq %q", headerLine(re, "CSeq"))
	}
	reAgain, _ := alice.awaitOK(2 * time.Second)
	if headerLine(reAgain, "CSeq") != headerLine(re, "CSeq") {
		t.Fatalf("retransmitted 200 has CSeq %q, want %q", headerLine(reAgain, "CSeq"), headerLine(re, "CSeq"))
	}
	alice.ack(reAgain)
	late = alice.count200s(6 * t1)
	if late > 1 {
		t.Errorf("%d retransmissions of the re-INVITE's 200 after its ACK", late)
	}
	alice.bye(third)
	if ended := b.rec.waitKind(t, EventCallEnded); ended.Outcome != OutcomeAnswered {
		t.Errorf("call_ended outcome %q, want %q", ended.Outcome, OutcomeAnswered)
	}
}

// TestRetransmit2xxNoAckEndsCall: RFC 3261 §13.3.1.4: with no ACK after 64*T1, sipsvc stops
// retransmitting, sends BYE to the caller and the call ends with the typed outcome failed.
func TestRetransmit2xxNoAckEndsCall(t *testing.T) {
	const t1 = 15 * time.Millisecond // 64*T1 = 960ms
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.T1, c.T2 = t1, 8*t1 },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newRawCaller(t, b.udp)
	alice.invite()
	_, t0 := alice.awaitOK(5 * time.Second)
	oks, bye := 1, ""
	end := time.Now().Add(10 * time.Second)
	for bye == "" && time.Now().Before(end) {
		m := alice.read(time.Until(end))
		switch {
		case strings.HasPrefix(m, "SIP/2.0 200"):
			oks++
		case strings.HasPrefix(m, "BYE "):
			bye = m
		}
	}
	if bye == "" {
		t.Fatalf("no BYE after 64*T1 without ACK (%d 200s seen)", oks)
	}
	alice.ok(bye)
	if g := time.Since(t0); g < 64*t1*3/4 {
		t.Errorf("BYE after %v, before 64*T1 (%v)", g, 64*t1)
	}
	// T1..T2 doubling over 64*T1: 15,30,60,120 then every 120ms → about 11 retransmissions.
	if oks < 5 {
		t.Errorf("%d copies of the 200 before giving up, want the T1-doubling schedule (≥5)", oks)
	}
	if headerLine(bye, "Call-ID") != alice.callID {
		t.Errorf("BYE for Call-ID %q", headerLine(bye, "Call-ID"))
	}
	ended := b.rec.waitKind(t, EventCallEnded)
	if ended.Outcome != OutcomeFailed || !strings.Contains(ended.Cause, causeNoAck) {
		t.Errorf("call_ended outcome %q cause %q, want %q and %q", ended.Outcome, ended.Cause, OutcomeFailed, causeNoAck)
	}
	for _, e := range b.rec.all() {
		if e.Kind == EventLegReleased && e.Leg == "A" && e.Outcome != OutcomeFailed {
			t.Errorf("leg_released A outcome %q, want failed (its 2xx was never ACKed)", e.Outcome)
		}
	}
	// The callee's leg is released too (BYE to B).
	bob.WaitRequest("BYE", 1, 3*time.Second)
}

func hasKind(evs []Event, k EventKind) bool {
	for _, e := range evs {
		if e.Kind == k {
			return true
		}
	}
	return false
}

// TestRetransmit2xxEndsWithCall: the retransmission of a 2xx that is never ACKed stops when
// the call ends for another reason (here the API releases it): the caller gets its BYE and
// then no further copy of the 200 (one already in flight aside), and no timer is left
// (goleak in TestMain).
func TestRetransmit2xxEndsWithCall(t *testing.T) {
	const t1 = 40 * time.Millisecond
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.T1, c.T2 = t1, 2*t1 },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newRawCaller(t, b.udp)
	alice.invite()
	alice.awaitOK(5 * time.Second)
	alice.awaitOK(2 * time.Second) // retransmitting: not ACKed
	calls := b.s.ListCalls(nil, CallFilter{})
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	released := make(chan error, 1)
	go func() { released <- b.s.ReleaseCall(context.Background(), calls[0].ID) }()
	bye := ""
	end := time.Now().Add(5 * time.Second)
	for bye == "" && time.Now().Before(end) {
		if m := alice.read(time.Until(end)); strings.HasPrefix(m, "BYE ") {
			bye = m
		}
	}
	if bye == "" {
		t.Fatal("no BYE to the caller after the release")
	}
	alice.ok(bye)
	if err := <-released; err != nil {
		t.Fatalf("ReleaseCall: %v", err)
	}
	late := alice.count200s(8 * t1) // four T2 intervals
	if late > 1 {
		t.Errorf("%d copies of the 200 after the call ended", late)
	}
}

// TestRetransmit2xxCappedPerLeg: a caller that sends re-INVITE after re-INVITE and never
// ACKs makes sipsvc hold at most maxRetxPerLeg retransmissions on its leg, not one per
// INVITE; the call stays up.
func TestRetransmit2xxCappedPerLeg(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.T1, c.T2 = time.Second, 4*time.Second },
		dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newRawCaller(t, b.udp)
	alice.invite()
	ok, _ := alice.awaitOK(5 * time.Second)
	const reinvites = 3 * maxRetxPerLeg
	for seq := uint32(2); seq < 2+reinvites; seq++ {
		alice.reinvite(ok, seq)
		for {
			res, _ := alice.awaitOK(5 * time.Second)
			if strings.HasPrefix(headerLine(res, "CSeq"), itoa(seq)+" ") {
				break
			}
		}
	}
	calls := b.s.ListCalls(nil, CallFilter{})
	if len(calls) != 1 {
		t.Fatalf("%d calls, want the call still up", len(calls))
	}
	c := b.s.callByID(calls[0].ID)
	c.mu.Lock()
	a := c.a
	c.mu.Unlock()
	a.mu.Lock()
	held := len(a.retx)
	a.mu.Unlock()
	if held == 0 || held > maxRetxPerLeg {
		t.Fatalf("leg A holds %d retransmissions after %d unACKed 2xx, want 1..%d", held, reinvites+1, maxRetxPerLeg)
	}
}
