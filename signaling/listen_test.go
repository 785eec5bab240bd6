package signaling

import (
	"net"
	"sync"
	"testing"
)

// TestLocal checks the advertised address per transport, the fallback order (TLS, TCP, UDP)
// and that the first listener of a transport is the advertised one.
func TestLocal(t *testing.T) {
	lo := net.IPv4(127, 0, 0, 1)
	tests := []struct {
		name      string
		hostname  string
		listen    func(s *Server)
		transport string
		wantHost  string
		wantPort  int
	}{
		{"none", "", func(*Server) {}, "UDP", "127.0.0.1", 5060},
		{"exact", "", func(s *Server) {
			s.addListen("UDP", &net.UDPAddr{IP: lo, Port: 5070})
			s.addListen("TLS", &net.TCPAddr{IP: lo, Port: 5071})
		}, "udp", "127.0.0.1", 5070},
		{"fallback prefers TLS", "", func(s *Server) {
			s.addListen("UDP", &net.UDPAddr{IP: lo, Port: 5070})
			s.addListen("TLS", &net.TCPAddr{IP: lo, Port: 5071})
		}, "TCP", "127.0.0.1", 5071},
		{"fallback to UDP", "", func(s *Server) { s.addListen("UDP", &net.UDPAddr{IP: lo, Port: 5070}) }, "TLS", "127.0.0.1", 5070},
		{"first listener wins", "", func(s *Server) {
			s.addListen("TCP", &net.TCPAddr{IP: lo, Port: 5080})
			s.addListen("TCP", &net.TCPAddr{IP: lo, Port: 5081})
		}, "TCP", "127.0.0.1", 5080},
		// Issue 12: a wildcard listener advertises the default interface's address, never
		// loopback (unless that is all there is); requests to a peer get the address that
		// reaches it (TestAdvertiseTowardPeer).
		{"wildcard advertises the default interface", "", func(s *Server) { s.addListen("UDP", &net.UDPAddr{IP: net.IPv4zero, Port: 5090}) }, "UDP", defaultSource(), 5090},
		{"configured hostname", "sip.example.com", func(s *Server) { s.addListen("UDP", &net.UDPAddr{IP: lo, Port: 5060}) }, "UDP", "sip.example.com", 5060},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Directory: newMemDir(), Hostname: tt.hostname, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			tt.listen(s)
			if got := s.local(tt.transport); got.host != tt.wantHost || got.port != tt.wantPort {
				t.Errorf("local(%s) = %s:%d, want %s:%d", tt.transport, got.host, got.port, tt.wantHost, tt.wantPort)
			}
		})
	}
}

// TestLocalConcurrent reads the listen addresses while they are added: go test -race
// reports a data race if local ever reads what addListen writes.
func TestLocalConcurrent(t *testing.T) {
	s, err := New(Config{Directory: newMemDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lo := net.IPv4(127, 0, 0, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				_ = s.local("UDP")
				_ = s.via("TCP")
			}
		})
	}
	for i, tp := range []string{"UDP", "TCP", "TLS"} {
		s.addListen(tp, &net.TCPAddr{IP: lo, Port: 5060 + i})
	}
	wg.Wait()
	if got := s.local("TLS"); got.port != 5062 {
		t.Errorf("local(TLS) port %d, want 5062", got.port)
	}
}
