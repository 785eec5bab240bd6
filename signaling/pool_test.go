package signaling

import (
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// connMetrics counts TLS handshakes and connection refusals (Metrics and ConnMetrics).
type connMetrics struct {
	mu         sync.Mutex
	handshakes map[string]int // direction/result
	closed     map[string]int // transport/reason
}

func newConnMetrics() *connMetrics {
	return &connMetrics{handshakes: map[string]int{}, closed: map[string]int{}}
}

func (m *connMetrics) MessageIn(string, int, string)     {}
func (m *connMetrics) MessageOut(string, int, string)    {}
func (m *connMetrics) RoutingDone(time.Duration, string) {}
func (m *connMetrics) TLSHandshake(direction, result string) {
	m.add(m.handshakes, direction+"/"+result)
}
func (m *connMetrics) ConnClosed(transport, reason string) { m.add(m.closed, transport+"/"+reason) }

func (m *connMetrics) add(into map[string]int, k string) {
	m.mu.Lock()
	into[k]++
	m.mu.Unlock()
}

func (m *connMetrics) get(from map[string]int, k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return from[k]
}

// TestColdStartTLSSingleFlight (issue 11, Connections): 200 calls at once, cold, TLS on both
// legs (one caller connection, as SIPp's l1): exactly one TLS connection is dialled to the
// callee (the others wait for it) and no call fails, for a verifying DN and for an
// insecure_skip_verify one (before single flight, the latter dialled once per call and a cold
// SIPp run at 300 calls/s lost 804 of 1,500 calls, sipgo logging "TCP ref went negative").
// The caller is not on UDP: a 2xx lost over UDP is the UAS core's to retransmit (RFC 3261
// §13.3.1.4), not the transport's.
func TestColdStartTLSSingleFlight(t *testing.T) {
	const calls = 200
	for _, tc := range []struct {
		name     string
		insecure bool
	}{{"verifying DN", false}, {"insecure_skip_verify DN", true}} {
		t.Run(tc.name, func(t *testing.T) {
			bob := newPhone(t, "bob", "TLS")
			m := newConnMetrics()
			d := ext("2000", bob)
			d.InsecureSkipVerify = tc.insecure
			b := startB2BUA(t, func(c *Config) {
				c.Metrics = m
				if tc.insecure { // bob's certificate cannot be verified: only the DN's setting lets the calls through
					c.ClientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
				}
			}, d)
			alice := newPhone(t, "alice", "TLS")
			var failed atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < calls; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					c := alice.invite(b, "2000", inviteOpts{})
					res := c.Wait(15 * time.Second)
					if res == nil || res.StatusCode != 200 {
						failed.Add(1)
						return
					}
					c.Ack()
					if code := c.Bye(); code != 200 {
						failed.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Errorf("%d of %d calls failed", n, calls)
			}
			if n := m.get(m.handshakes, "outbound/ok"); n != 1 {
				t.Errorf("outbound TLS connections dialled = %d, want 1", n)
			}
		})
	}
}

// TestTLSPoolReuseOnlySameVerification (issue 10): a connection dialled without verification
// for an insecure_skip_verify DN is not reused by a call to a verifying DN at the same
// address: that call dials its own connection, which fails verification (the peer's
// certificate is not trusted), so the call fails. Concurrent cold calls to the insecure DN
// share one dial.
func TestTLSPoolReuseOnlySameVerification(t *testing.T) {
	bad := newPhone(t, "bad", "TLS") // its certificate is not in the B2BUA's roots below
	m := newConnMetrics()
	b := startB2BUA(t, func(c *Config) {
		c.ClientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		c.Metrics = m
	},
		dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: "sips:5000@" + bad.Addr},
		dn.DN{Number: "5001", Type: dn.TypeExtension, Contact: "sips:5001@" + bad.Addr, InsecureSkipVerify: true})
	alice := newPhone(t, "alice", "UDP")

	const insecureCalls = 50
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < insecureCalls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := alice.invite(b, "5001", inviteOpts{}).Wait(10 * time.Second); res == nil || res.StatusCode != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d insecure_skip_verify calls failed", n, insecureCalls)
	}
	if n := m.get(m.handshakes, "outbound/ok"); n != 1 {
		t.Errorf("unverified connections dialled = %d, want 1 (single flight)", n)
	}

	res := alice.invite(b, "5000", inviteOpts{}).Wait(10 * time.Second)
	if res.StatusCode == 200 {
		t.Fatal("verifying DN reached over the unverified pooled connection")
	}
	if res.StatusCode != 503 || !strings.Contains(hdr(res, "Reason"), "TLS handshake") {
		t.Errorf("verifying DN: got %d Reason %q, want 503 with a TLS handshake failure", res.StatusCode, hdr(res, "Reason"))
	}
	if n := m.get(m.handshakes, "outbound/failed"); n != 1 {
		t.Errorf("failed outbound handshakes = %d, want 1", n)
	}
	// The insecure DN still works afterwards.
	if res := alice.invite(b, "5001", inviteOpts{}).Wait(10 * time.Second); res.StatusCode != 200 {
		t.Errorf("insecure DN after the refused verifying call: got %d", res.StatusCode)
	}
}
