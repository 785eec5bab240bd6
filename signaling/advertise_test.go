package signaling

import (
	"net"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestAdvertised: the order of choices for the advertised address (issue 12): Advertise for
// the transport, then Hostname, then a specific listener address, then the per-peer choice.
func TestAdvertised(t *testing.T) {
	lo := net.IPv4(127, 0, 0, 1)
	tests := []struct {
		name      string
		cfg       Config
		addr      net.Addr
		transport string
		wantHost  string
		wantPort  int
		wantAuto  bool
	}{
		{"advertise host", Config{Advertise: map[string]string{"udp": "203.0.113.7"}}, &net.UDPAddr{IP: net.IPv4zero, Port: 5060}, "UDP", "203.0.113.7", 5060, false},
		{"advertise host and port", Config{Advertise: map[string]string{"TLS": "sip.example.com:443"}}, &net.TCPAddr{IP: lo, Port: 5061}, "TLS", "sip.example.com", 443, false},
		{"advertise wins over hostname", Config{Hostname: "h.example.com", Advertise: map[string]string{"TCP": "203.0.113.8"}}, &net.TCPAddr{IP: lo, Port: 5060}, "TCP", "203.0.113.8", 5060, false},
		{"advertise of another transport ignored", Config{Advertise: map[string]string{"TCP": "203.0.113.8"}}, &net.UDPAddr{IP: lo, Port: 5060}, "UDP", "127.0.0.1", 5060, false},
		{"hostname over wildcard", Config{Hostname: "h.example.com"}, &net.UDPAddr{IP: net.IPv4zero, Port: 5060}, "UDP", "h.example.com", 5060, false},
		{"wildcard is per peer", Config{}, &net.UDPAddr{IP: net.IPv4zero, Port: 5062}, "UDP", defaultSource(), 5062, true},
		{"ipv6 wildcard is per peer", Config{}, &net.TCPAddr{IP: net.IPv6unspecified, Port: 5063}, "TCP", defaultSource(), 5063, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Directory = newMemDir()
			tt.cfg.Logger = testLogger()
			s, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.addListen(tt.transport, tt.addr)
			got := s.local(tt.transport)
			if got.host != tt.wantHost || got.port != tt.wantPort || got.auto != tt.wantAuto {
				t.Errorf("local(%s) = %s:%d auto=%v, want %s:%d auto=%v", tt.transport, got.host, got.port, got.auto, tt.wantHost, tt.wantPort, tt.wantAuto)
			}
		})
	}
}

// TestAdvertiseTowardPeer: with a wildcard listener, a request to a peer on loopback carries
// 127.0.0.1 in Via and Contact (the interface that reaches it), and a configured address is
// never rewritten.
func TestAdvertiseTowardPeer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		hostname string
		want     string
	}{
		{"wildcard", "", "127.0.0.1"},
		{"configured", "sip.example.com", "sip.example.com"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Directory: newMemDir(), Logger: testLogger(), Hostname: tt.hostname})
			if err != nil {
				t.Fatal(err)
			}
			s.addListen("UDP", &net.UDPAddr{IP: net.IPv4zero, Port: 5070})
			la := s.local("UDP")
			req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5080})
			req.AppendHeader(s.via("UDP"))
			req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "sipsvc", Host: la.host, Port: la.port}})
			s.prepare(req, "UDP", "127.0.0.1:5080")
			if h := req.Via().Host; h != tt.want {
				t.Errorf("Via host %q, want %q", h, tt.want)
			}
			if h := req.Contact().Address.Host; h != tt.want {
				t.Errorf("Contact host %q, want %q", h, tt.want)
			}
			u := s.advertiseURI(sip.Uri{Scheme: "sip", Host: la.host}, "UDP", "127.0.0.1:5080")
			if u.Host != tt.want {
				t.Errorf("advertiseURI host %q, want %q", u.Host, tt.want)
			}
		})
	}
}
