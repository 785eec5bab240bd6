package signaling

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/connlimit"
)

// verifyPolicy builds the TLS configurations: outbound connections verify the peer with Go's
// standard verification against the configured roots (the host or IP of the target must be
// in the certificate, R44/P8); DNs marked insecure_skip_verify are dialled by insecureDialer
// instead. It also counts handshakes.
type verifyPolicy struct {
	base    *tls.Config
	metrics Metrics
}

func newVerifyPolicy(base *tls.Config, m Metrics) *verifyPolicy {
	if base == nil {
		base = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &verifyPolicy{base: base, metrics: m}
}

// clientConfig is the TLS config given to sipgo for every outbound connection it dials.
func (v *verifyPolicy) clientConfig() *tls.Config {
	c := v.base.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.InsecureSkipVerify = false
	c.VerifyConnection = func(tls.ConnectionState) error {
		v.count("outbound", nil)
		return nil
	}
	return c
}

// serverConfig wraps the listener config to count inbound handshakes.
func (v *verifyPolicy) serverConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		var err error
		if prev != nil {
			err = prev(cs)
		}
		v.count("inbound", err)
		return err
	}
	return c
}

func (v *verifyPolicy) count(dir string, err error) {
	if v.metrics == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "failed"
	}
	v.metrics.TLSHandshake(dir, res)
}

// insecureDialer dials TLS without verifying the peer, for DNs with insecure_skip_verify
// (labs; never the default), and hands the connection to sipgo's TLS transport through a
// listener, so that sipgo reuses it for the leg (its pool is keyed by remote address).
type insecureDialer struct {
	v      *verifyPolicy
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newInsecureDialer(v *verifyPolicy, addr net.Addr) *insecureDialer {
	return &insecureDialer{v: v, ch: make(chan net.Conn), closed: make(chan struct{}), addr: addr}
}

// Accept implements net.Listener for sipgo's ServeTLS.
func (d *insecureDialer) Accept() (net.Conn, error) {
	select {
	case c := <-d.ch:
		return c, nil
	case <-d.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (d *insecureDialer) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

// Addr implements net.Listener.
func (d *insecureDialer) Addr() net.Addr { return d.addr }

// tlsFlows tracks the outbound TLS connections sipsvc dialled itself, so that a pooled
// connection is reused only for a peer verified the same way (issue 10): a connection
// dialled without verification for an insecure_skip_verify DN is never reused by a call
// that verifies its peer; such a call dials a verified connection that takes its place in
// the pool. Dials to one destination are single-flight: concurrent calls wait for one dial.
type tlsFlows struct {
	mu sync.Mutex // guards the fields below
	// insecure holds, by destination IP:port, the pooled connection dialled unverified.
	insecure map[string]sip.Connection
	// inflight holds the dial in progress per key (mode and destination).
	inflight map[string]*flight
}

// flight is one dial that concurrent callers wait for.
type flight struct {
	done chan struct{}
	err  error
}

// do runs fn once for key while other callers with the same key wait for its result.
func (f *tlsFlows) do(ctx context.Context, key string, fn func() error) error {
	f.mu.Lock()
	if fl, ok := f.inflight[key]; ok {
		f.mu.Unlock()
		select {
		case <-fl.done:
			return fl.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.inflight == nil {
		f.inflight = map[string]*flight{}
	}
	fl := &flight{done: make(chan struct{})}
	f.inflight[key] = fl
	f.mu.Unlock()
	fl.err = fn()
	f.mu.Lock()
	delete(f.inflight, key)
	f.mu.Unlock()
	close(fl.done)
	return fl.err
}

// insecureConn returns the unverified connection recorded for dest, if any.
func (f *tlsFlows) insecureConn(dest string) (sip.Connection, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.insecure[dest]
	return c, ok
}

func (f *tlsFlows) anyInsecure() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.insecure) > 0
}

func (f *tlsFlows) setInsecure(dest string, c sip.Connection) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c == nil {
		delete(f.insecure, dest)
		return
	}
	if f.insecure == nil {
		f.insecure = map[string]sip.Connection{}
	}
	f.insecure[dest] = c
}

// pooled returns sipgo's pooled TLS connection to dest without taking a reference.
func (s *Server) pooled(dest string) sip.Connection {
	c, _ := s.ua.TransportLayer().GetConnection("tls", dest)
	if c == nil {
		return nil
	}
	c.Ref(-1) // GetConnection took a reference we do not keep
	return c
}

// ensureTLS makes sure a TLS leg to dest (the target's host:port) goes over a connection
// verified as the DN asks: insecure DNs get a connection dialled without verification (or
// a verified one already pooled); verifying DNs never reuse an unverified one. It returns
// dest as the IP:port sipgo's pool uses when it had to resolve it.
func (s *Server) ensureTLS(ctx context.Context, host, dest string, insecure bool) (string, error) {
	if !insecure && !s.flows.anyInsecure() {
		return dest, nil // sipgo dials and verifies (single-flight in its pool)
	}
	dest, err := resolveDest(ctx, dest)
	if err != nil {
		return dest, err
	}
	if insecure {
		return dest, s.flows.do(ctx, "insecure "+dest, func() error {
			if s.pooled(dest) != nil {
				return nil
			}
			return s.dialTLS(ctx, host, dest, true)
		})
	}
	return dest, s.flows.do(ctx, "verified "+dest, func() error {
		c := s.pooled(dest)
		if old, ok := s.flows.insecureConn(dest); !ok || c == nil || c != old {
			return nil
		}
		return s.dialTLS(ctx, host, dest, false)
	})
}

// resolveDest turns host:port into IP:port (the key of sipgo's pool).
func resolveDest(ctx context.Context, dest string) (string, error) {
	h, port, err := net.SplitHostPort(dest)
	if err != nil {
		return dest, fmt.Errorf("tls dest %q: %w", dest, err)
	}
	if net.ParseIP(h) != nil {
		return dest, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", h)
	if err != nil || len(ips) == 0 {
		return dest, fmt.Errorf("resolve %s: %w", h, errors.Join(err, errors.New("no address")))
	}
	return net.JoinHostPort(ips[0].String(), port), nil
}

// dialTLS dials dest, handshakes (verifying the peer as host unless insecure) and hands the
// connection to sipgo's pool, where it replaces any connection to dest.
func (s *Server) dialTLS(ctx context.Context, host, dest string, insecure bool) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(dctx, "tcp", dest)
	if err != nil {
		return fmt.Errorf("dial TCP error: %w", err)
	}
	var cfg *tls.Config
	if insecure {
		cfg = s.verify.base.Clone()
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = nil
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if net.ParseIP(strings.Trim(host, "[]")) == nil {
			cfg.ServerName = host
		}
	} else {
		cfg = s.verify.clientConfig() // counts the handshake itself
		cfg.ServerName = strings.Trim(host, "[]")
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		s.verify.count("outbound", err)
		return fmt.Errorf("TLS handshake error: %w", err)
	}
	if insecure {
		s.verify.count("outbound", nil)
	}
	old := s.pooled(dest)
	select {
	case s.insecure.ch <- tc:
	case <-dctx.Done():
		tc.Close()
		return dctx.Err()
	}
	for i := 0; i < 1000; i++ {
		if c := s.pooled(dest); c != nil && c != old {
			if insecure {
				s.flows.setInsecure(dest, c)
			} else {
				s.flows.setInsecure(dest, nil)
			}
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("tls connection not registered")
}

// tlsConnOf finds the *tls.Conn under c (see connlimit.TLSConn).
func tlsConnOf(c net.Conn) (*tls.Conn, bool) { return connlimit.TLSConn(c) }
