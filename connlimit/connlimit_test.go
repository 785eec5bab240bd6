package connlimit

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/internal/siptest"
)

// reasons collects OnClose reports.
type reasons struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *reasons) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *reasons) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// serve starts a Listener on 127.0.0.1:0 whose connections are read until error and then
// closed, as sipgo's reader does. It returns the listener and the address.
func serve(t *testing.T, cfg Config) (*Listener, *reasons) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &reasons{}
	cfg.OnClose = r.add
	l := NewListener(raw, cfg)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l, r
}

// closedWithin reports how long c took to be closed by the server (a read returns EOF or a
// reset), failing if it stays open past max.
func closedWithin(t *testing.T, c net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(max))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if isTimeout(err) {
			t.Fatalf("connection still open after %s", max)
		}
		return time.Since(start)
	}
}

func dial(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitConns(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for l.Conns() != want {
		if time.Now().After(deadline) {
			t.Fatalf("listener holds %d connections, want %d", l.Conns(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPerSourceCap: N+1 connections from one source; the last is closed at once and counted.
func TestPerSourceCap(t *testing.T) {
	const n = 4
	l, r := serve(t, Config{MaxPerSource: n, MaxConns: 100, IdleTimeout: time.Minute})
	for i := 0; i < n; i++ {
		dial(t, l)
	}
	waitConns(t, l, n)
	extra := dial(t, l)
	if d := closedWithin(t, extra, 2*time.Second); d > time.Second {
		t.Errorf("over-cap connection closed after %s, want at once", d)
	}
	if got := r.get(ReasonMaxPerSource); got != 1 {
		t.Errorf("max_per_source reports = %d, want 1", got)
	}
	if l.Conns() != n {
		t.Errorf("held = %d, want %d", l.Conns(), n)
	}
}

// TestTotalCapAndRelease: the total cap refuses the next connection; closing one frees a slot.
func TestTotalCapAndRelease(t *testing.T) {
	l, r := serve(t, Config{MaxConns: 2, MaxPerSource: 2, IdleTimeout: time.Minute})
	a := dial(t, l)
	dial(t, l)
	waitConns(t, l, 2)
	closedWithin(t, dial(t, l), 2*time.Second)
	if got := r.get(ReasonMaxConns) + r.get(ReasonMaxPerSource); got != 1 {
		t.Fatalf("cap reports = %d, want 1", got)
	}
	a.Close()
	waitConns(t, l, 1)
	c := dial(t, l)
	waitConns(t, l, 2)
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatalf("connection after release: %v", err)
	}
}

// TestSlowloris: half a message, then a byte every 50ms: closed at the message deadline even
// though the idle timeout is never reached.
func TestSlowloris(t *testing.T) {
	const msgTimeout = 400 * time.Millisecond
	l, r := serve(t, Config{MessageTimeout: msgTimeout, IdleTimeout: 10 * time.Second})
	c := dial(t, l)
	if _, err := c.Write([]byte("OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bK1\r\n")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
			}
		}
	}()
	d := closedWithin(t, c, 5*time.Second)
	if d < msgTimeout/2 || d > msgTimeout+time.Second {
		t.Errorf("slowloris closed after %s, want about %s", d, msgTimeout)
	}
	if got := r.get(ReasonMessageTimeout); got != 1 {
		t.Errorf("message_timeout reports = %d, want 1", got)
	}
}

// TestIdle: a connection that sent a whole message (with a body) and keep-alives, then
// nothing, is closed at the idle timeout, counted as idle and not as a slow message.
func TestIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	l, r := serve(t, Config{IdleTimeout: idle, MessageTimeout: 10 * time.Second})
	c := dial(t, l)
	msg := "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nl: 5\r\n\r\nhello"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	// Keep-alives keep it open past one idle period.
	for i := 0; i < 4; i++ {
		time.Sleep(idle / 3)
		if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatalf("keep-alive %d: %v", i, err)
		}
	}
	d := closedWithin(t, c, 5*time.Second)
	if d > idle+time.Second {
		t.Errorf("idle conn closed after %s, want about %s", d, idle)
	}
	if got := r.get(ReasonIdleTimeout); got != 1 {
		t.Errorf("idle_timeout reports = %d, want 1 (message_timeout %d)", got, r.get(ReasonMessageTimeout))
	}
}

// TestTLSHandshakeTimeout: a TCP client that never starts the TLS handshake is closed at the
// handshake deadline; a real TLS client on the same listener still gets through.
func TestTLSHandshakeTimeout(t *testing.T) {
	const hs = 300 * time.Millisecond
	l, r := serve(t, Config{TLS: siptest.ServerTLS(t), HandshakeTimeout: hs, IdleTimeout: 10 * time.Second})
	good, err := tls.Dial("tcp", l.Addr().String(), siptest.ClientTLS())
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer good.Close()
	silent := dial(t, l)
	d := closedWithin(t, silent, 5*time.Second)
	if d > hs+time.Second {
		t.Errorf("silent TLS client closed after %s, want about %s", d, hs)
	}
	if got := r.get(ReasonHandshakeTimeout); got != 1 {
		t.Errorf("handshake_timeout reports = %d, want 1", got)
	}
	if _, err := good.Write([]byte("\r\n\r\n")); err != nil {
		t.Errorf("handshaken client: %v", err)
	}
	waitConns(t, l, 1)
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults", Config{}.WithDefaults(), ""},
		{"negative total", Config{MaxConns: -1}, "max_conns -1: must not be negative"},
		{"per source above total", Config{MaxConns: 2, MaxPerSource: 3}, "max_conns_per_source 3: above max_conns 2"},
		{"negative idle", Config{IdleTimeout: -time.Second}, "idle_timeout -1s: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFramer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		mid    []bool // inMessage after each chunk
	}{
		{"keepalive only", []string{"\r\n\r\n", "\r\n"}, []bool{false, false}},
		{"whole message no body", []string{"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"}, []bool{false}},
		{"headers split", []string{"OPTIONS sip:a SIP/2.0\r\n", "Call-ID: x\r", "\n\r\n"}, []bool{true, true, false}},
		{"body split", []string{"MESSAGE sip:a SIP/2.0\r\nContent-Length: 4\r\n\r\nab", "cd"}, []bool{true, false}},
		{"compact l", []string{"MESSAGE sip:a SIP/2.0\r\nl: 2\r\n\r\n", "ab"}, []bool{true, false}},
		{"two messages one read", []string{"A\r\n\r\nB\r\nl: 1\r\n\r\n"}, []bool{true}},
		{"bad length means no body", []string{"A\r\nContent-Length: x\r\n\r\n"}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f framer
			for i, ch := range tc.chunks {
				f.feed([]byte(ch))
				if f.inMessage() != tc.mid[i] {
					t.Errorf("after chunk %d (%q): inMessage = %v, want %v", i, ch, f.inMessage(), tc.mid[i])
				}
			}
		})
	}
}

// TestLimiterSharedAcrossListeners: the caps of one Limiter count the connections of all
// its listeners (a TCP and a TLS listener share MaxConns).
func TestLimiterSharedAcrossListeners(t *testing.T) {
	lim := NewLimiter(Config{MaxConns: 2, MaxPerSource: 2, IdleTimeout: time.Minute})
	r := &reasons{}
	var ls []*Listener
	for i := 0; i < 2; i++ {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := lim.Wrap(raw, nil, r.add)
		ls = append(ls, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 512)
					for {
						if _, err := c.Read(buf); err != nil {
							return
						}
					}
				}()
			}
		}()
		t.Cleanup(func() { l.Close() })
	}
	dial(t, ls[0])
	dial(t, ls[0])
	waitConns(t, ls[0], 2)
	closedWithin(t, dial(t, ls[1]), 2*time.Second)
	if n := r.get(ReasonMaxConns) + r.get(ReasonMaxPerSource); n != 1 {
		t.Errorf("refusals on the second listener = %d, want 1", n)
	}
	if ls[1].Conns() != 2 {
		t.Errorf("held = %d, want 2", ls[1].Conns())
	}
}
