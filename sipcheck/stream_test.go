package sipcheck

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamPair returns the two ends of a real loopback TCP connection, the server end wrapped
// by WrapListener, and the refusals it reports.
func streamPair(t *testing.T) (client, server net.Conn, refused func() []int) {
	t.Helper()
	var mu sync.Mutex
	var codes []int
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := WrapListener(ln, WireConfig{Server: "test", OnRefuse: func(_ string, code int) {
		mu.Lock()
		codes = append(codes, code)
		mu.Unlock()
	}})
	t.Cleanup(func() { _ = wl.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := wl.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server, func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), codes...)
	}
}

// readSegments reads what the wrapped end hands its reader until want bytes have arrived.
func readSegments(t *testing.T, c net.Conn, want int) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var segs []string
	got := 0
	buf := make([]byte, 65536)
	for got < want {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", got, want, err)
		}
		segs = append(segs, string(buf[:n]))
		got += n
	}
	return segs
}

// TestStreamFraming checks the TCP framing: a message split into single bytes arrives whole,
// a keep-alive ping arrives as its own read (sipgo answers it only then), and a refused
// request is answered on the connection and skipped while the next message passes (the
// connection stays open).
func TestStreamFraming(t *testing.T) {
	good := string(options("sip:a@example.com"))
	bad := "INVITE <sip:a@example.com> SIP/2.0\r\n" + hVia + "\r\n" + hFrom + "\r\n" + hTo + "\r\n" + hCall + "\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n"
	client, server, refused := streamPair(t)

	go func() {
		for i := 0; i < len(good); i++ { // one byte per write: TCP may deliver any split
			_, _ = client.Write([]byte{good[i]})
		}
		_, _ = client.Write([]byte("\r\n\r\n"))
		_, _ = client.Write([]byte(bad + good))
	}()
	segs := readSegments(t, server, 2*len(good)+4)
	if got := strings.Join(segs, ""); got != good+"\r\n\r\n"+good {
		t.Fatalf("reader got %q", got)
	}
	ping := false
	for _, s := range segs {
		if s == "\r\n\r\n" {
			ping = true
		}
	}
	if !ping {
		t.Errorf("the keep-alive ping was merged with a message: %q", segs)
	}
	if got := refused(); len(got) != 1 || got[0] != 400 {
		t.Errorf("refusals %v, want [400]", got)
	}
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	status, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || status != "SIP/2.0 400 Bad Request\r\n" {
		t.Errorf("answer to the refused request: %q, %v", status, err)
	}
}

// TestStreamPassThrough checks that a message without a Content-Length (RFC 3261 §18.3
// requires one on a stream) is handed through unchanged for sipgo to judge, and that a read
// error reaches the reader.
func TestStreamPassThrough(t *testing.T) {
	client, server, _ := streamPair(t)
	msg := "OPTIONS sip:a@example.com SIP/2.0\r\n" + hVia + "\r\n\r\n"
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(readSegments(t, server, len(msg)), ""); got != msg {
		t.Fatalf("reader got %q", got)
	}
	_ = client.Close()
	_ = server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(make([]byte, 10)); err != io.EOF {
		t.Errorf("read after close: %v, want EOF", err)
	}
}

// BenchmarkStreamFrame measures the TCP framing and request-line check of a typical INVITE
// (the bytes sipgo reads next pass through it once more, as one copy).
func BenchmarkStreamFrame(b *testing.B) {
	data := readFile(b, "invite.sip")
	c := &streamConn{}
	b.ReportAllocs()
	for b.Loop() {
		c.out = c.out[:0]
		c.feed(data)
		if len(c.out) != 1 || len(c.out[0]) != len(data) {
			b.Fatalf("framed %d segments", len(c.out))
		}
	}
}

// TestStatusLineOK pins which status lines the TCP framing hands on (RFC 4475 bigcode is not).
func TestStatusLineOK(t *testing.T) {
	for line, want := range map[string]bool{
		"SIP/2.0 200 OK": true,
		"SIP/2.0 180":    true,
		"SIP/2.0 699 x":  true,
		"SIP/2.0 4294967301 better not break the receiver": false,
		"SIP/2.0 099 low": false,
		"SIP/2.0 2000 OK": false,
		"SIP/2.0":         false,
	} {
		if got := statusLineOK([]byte(line)); got != want {
			t.Errorf("statusLineOK(%q) = %v, want %v", line, got, want)
		}
	}
}

// TestStreamConnNetConn: a framed connection exposes the connection it wraps, so that code
// looking for the *tls.Conn under a framed TLS connection (connlimit.TLSConn, which reads
// the peer certificate for trunk trust) can unwrap it.
func TestStreamConnNetConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w, ok := WrapConn(a, WireConfig{}).(interface{ NetConn() net.Conn })
	if !ok {
		t.Fatal("framed connection has no NetConn method")
	}
	if w.NetConn() != a {
		t.Fatalf("NetConn returned %v, want the wrapped connection", w.NetConn())
	}
}
