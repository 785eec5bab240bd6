package signaling

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/connlimit"
)

// serverClosed waits until the server closes c (a read ends in EOF or a reset) and returns
// how long that took; it fails when c is still open after max.
func serverClosed(t *testing.T, c net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(max))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %s", max)
			}
			return time.Since(start)
		}
	}
}

// TestConnLimits (issue 10): the TCP and TLS listeners of a running Server cap connections
// per source and close a slowloris, a TLS client that never handshakes and an idle
// connection at their deadlines; each is counted by reason and the server keeps serving.
func TestConnLimits(t *testing.T) {
	const (
		perSource = 3
		deadline  = 300 * time.Millisecond
		slack     = time.Second
	)
	m := newConnMetrics()
	b := startB2BUA(t, func(c *Config) {
		c.Metrics = m
		c.Conn = connlimit.Config{MaxPerSource: perSource, HandshakeTimeout: deadline, IdleTimeout: deadline, MessageTimeout: deadline}
	})
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		must(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("N+1 from one source", func(t *testing.T) {
		var held []net.Conn
		for i := 0; i < perSource; i++ {
			c := dial(b.tcp)
			_, err := c.Write([]byte("\r\n\r\n")) // keep-alive: answered, so it is accepted
			must(t, err)
			held = append(held, c)
		}
		for _, c := range held {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(make([]byte, 2)); err != nil {
				t.Fatalf("connection within the cap: %v", err)
			}
		}
		if d := serverClosed(t, dial(b.tcp), 2*time.Second); d > deadline {
			t.Errorf("connection over the cap closed after %s, want at once", d)
		}
		if n := m.get(m.closed, "TCP/"+connlimit.ReasonMaxPerSource); n != 1 {
			t.Errorf("TCP/max_per_source = %d, want 1", n)
		}
		for _, c := range held {
			c.Close()
		}
	})
	waitFree := func() {
		// The closed connections' slots free as the server sees them close.
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		name, addr, reason, send string
	}{
		{"slowloris", b.tcp, "TCP/" + connlimit.ReasonMessageTimeout, "OPTIONS sip:sipsvc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bKslow\r\n"},
		{"TLS never handshakes", b.tlsA, "TLS/" + connlimit.ReasonHandshakeTimeout, ""},
		{"idle", b.tcp, "TCP/" + connlimit.ReasonIdleTimeout, "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitFree()
			c := dial(tc.addr)
			if tc.send != "" {
				_, err := c.Write([]byte(tc.send))
				must(t, err)
			}
			if d := serverClosed(t, c, deadline+2*slack); d > deadline+slack {
				t.Errorf("closed after %s, deadline %s", d, deadline)
			}
			if n := m.get(m.closed, tc.reason); n != 1 {
				t.Errorf("%s = %d, want 1", tc.reason, n)
			}
		})
	}

	t.Run("still serving", func(t *testing.T) {
		waitFree()
		c := dial(b.tcp)
		_, err := c.Write([]byte("OPTIONS sip:sipsvc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bKok\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:sipsvc@127.0.0.1>\r\nCall-ID: connlimit-ok\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
			t.Fatalf("OPTIONS over TCP after the refusals: %q %v", line, err)
		}
	})
}
