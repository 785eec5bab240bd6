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

// ensure makes sure sipgo has a TLS connection to dest, dialling one without verification.
// It returns dest as an IP:port, the key sipgo's pool uses.
func (s *Server) ensureInsecureTLS(ctx context.Context, host, dest string) (string, error) {
	h, port, err := net.SplitHostPort(dest)
	if err != nil {
		return dest, fmt.Errorf("tls dest %q: %w", dest, err)
	}
	if net.ParseIP(h) == nil {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", h)
		if err != nil || len(ips) == 0 {
			return dest, fmt.Errorf("resolve %s: %w", h, errors.Join(err, errors.New("no address")))
		}
		dest = net.JoinHostPort(ips[0].String(), port)
	}
	tp := s.ua.TransportLayer()
	if c, _ := tp.GetConnection("tls", dest); c != nil {
		return dest, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(dctx, "tcp", dest)
	if err != nil {
		return dest, fmt.Errorf("dial TCP error: %w", err)
	}
	cfg := s.verify.base.Clone()
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = nil
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if net.ParseIP(strings.Trim(host, "[]")) == nil {
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		raw.Close()
		s.verify.count("outbound", err)
		return dest, fmt.Errorf("TLS handshake error: %w", err)
	}
	s.verify.count("outbound", nil)
	select {
	case s.insecure.ch <- tc:
	case <-dctx.Done():
		tc.Close()
		return dest, dctx.Err()
	}
	for i := 0; i < 100; i++ {
		if c, _ := tp.GetConnection("tls", dest); c != nil {
			return dest, nil
		}
		time.Sleep(time.Millisecond)
	}
	return dest, errors.New("tls connection not registered")
}

// tlsConnOf finds the *tls.Conn under c, looking through wrappers that expose NetConn (the
// connlimit connection of a TLS listener).
func tlsConnOf(c net.Conn) (*tls.Conn, bool) {
	for range 4 {
		if tl, ok := c.(*tls.Conn); ok {
			return tl, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = w.NetConn()
	}
	return nil, false
}
