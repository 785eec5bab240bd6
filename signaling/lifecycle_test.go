package signaling

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// failingListener is a listener whose Accept fails at once with err: the way a listener
// breaks (an fd limit, a closed socket) without waiting for one to.
type failingListener struct {
	net.Listener
	err error
}

func (f failingListener) Accept() (net.Conn, error) { return nil, f.err }

func newServer(t *testing.T, mut func(*Config)) *Server {
	t.Helper()
	cfg := Config{Directory: newMemDir(), Logger: testLogger(), Hostname: "127.0.0.1"}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServeValidatesFirst: a bad listener set is refused before any listener is served: the
// UDP socket given alongside is still ours (nobody reads it) and the server never got ready.
func TestServeValidatesFirst(t *testing.T) {
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	for _, tc := range []struct {
		name string
		l    Listeners
		want string
	}{
		{"none", Listeners{}, "no listeners"},
		{"TLS without ServerTLS", Listeners{UDP: []net.PacketConn{u}, TLS: []net.Listener{tl}}, "TLS listener without Config.ServerTLS"},
		{"nil TCP listener", Listeners{UDP: []net.PacketConn{u}, TCP: []net.Listener{nil}}, "TCP listener 0 is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, nil)
			err := s.Serve(context.Background(), tc.l)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Serve = %v, want %q", err, tc.want)
			}
			if s.Ready() != ErrNotServing {
				t.Errorf("Ready = %v after a refused Serve", s.Ready())
			}
		})
	}
	// Nobody else reads u: a datagram we send to it is ours to read.
	if _, err := u.WriteTo([]byte("x"), u.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = u.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 8)
	if n, _, err := u.ReadFrom(buf); err != nil || string(buf[:n]) != "x" {
		t.Errorf("UDP socket was served by a refused Serve: read %q, %v", buf[:n], err)
	}
}

// TestServeReturnsEveryListenerError: two listeners that fail: Serve stops and its error
// names both.
func TestServeReturnsEveryListenerError(t *testing.T) {
	var ls []net.Listener
	for _, msg := range []string{"accept A broke", "accept B broke"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, failingListener{Listener: l, err: errors.New(msg)})
	}
	s := newServer(t, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), Listeners{TCP: ls}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve = nil, want both listener errors")
		}
		for _, want := range []string{"accept A broke", "accept B broke"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Serve error %q does not name %q", err, want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listeners failed")
	}
	if err := s.Serve(context.Background(), Listeners{TCP: ls}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("second Serve = %v, want ErrServerClosed", err)
	}
}

// TestShutdownParallelWithinDeadline: calls whose callee never answers BYE are all ended
// (each callee gets its BYE) within Shutdown's deadline: in parallel, not one after another.
// No new call is taken once shutdown has begun.
func TestShutdownParallelWithinDeadline(t *testing.T) {
	const calls = 4
	bob := newPhone(t, "bob", "UDP")
	bob.Handle(sip.BYE, func(*sip.Request, sip.ServerTransaction) {}) // never answers
	b := startB2BUA(t, nil, ext("2000", bob))
	alice := newPhone(t, "alice", "UDP")
	for i := 0; i < calls; i++ {
		c := alice.invite(b, "2000", inviteOpts{})
		if res := c.Wait(5 * time.Second); res.StatusCode != 200 {
			t.Fatalf("call %d: final %d", i, res.StatusCode)
		}
		c.Ack()
	}
	const deadline = 800 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := b.s.Shutdown(ctx)
	took := time.Since(start)
	if took > deadline+700*time.Millisecond {
		t.Errorf("Shutdown took %s, deadline %s", took, deadline)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v", err)
	}
	ended := map[string]bool{} // UDP retransmits a BYE: count calls, not requests
	for _, r := range bob.Requests(sip.BYE) {
		ended[r.CallID().Value()] = true
	}
	if len(ended) != calls {
		t.Errorf("callee got BYEs for %d calls within the deadline, want %d (calls ended in parallel)", len(ended), calls)
	}
	if b.s.enter() {
		t.Error("enter() admitted a call goroutine after shutdown began")
	}
	if b.s.Ready() != ErrNotServing {
		t.Errorf("Ready = %v during shutdown", b.s.Ready())
	}
}

// TestShutdownBeforeServe: Shutdown first makes Serve refuse to start.
func TestShutdownBeforeServe(t *testing.T) {
	s := newServer(t, nil)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := s.Serve(context.Background(), Listeners{UDP: []net.PacketConn{u}}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
}
