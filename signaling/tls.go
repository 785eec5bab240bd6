package signaling

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// verifyPolicy verifies outbound TLS peers against the configured roots, except for hosts that
// a DN marked insecure_skip_verify (labs; never the default). It also counts handshakes.
type verifyPolicy struct {
	base    *tls.Config
	metrics Metrics

	mu   sync.RWMutex // guards skip
	skip map[string]bool
}

func newVerifyPolicy(base *tls.Config, m Metrics) *verifyPolicy {
	if base == nil {
		base = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &verifyPolicy{base: base, metrics: m, skip: map[string]bool{}}
}

// setSkip records whether TLS verification is skipped for host.
func (v *verifyPolicy) setSkip(host string, skip bool) {
	host = strings.ToLower(strings.Trim(host, "[]"))
	v.mu.RLock()
	cur, ok := v.skip[host]
	v.mu.RUnlock()
	if ok && cur == skip {
		return
	}
	v.mu.Lock()
	if skip {
		v.skip[host] = true
	} else {
		delete(v.skip, host)
	}
	v.mu.Unlock()
}

func (v *verifyPolicy) skipped(host string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.skip[strings.ToLower(strings.Trim(host, "[]"))]
}

// clientConfig is the TLS config given to sipgo for every outbound connection. Go's default
// verification is replaced by VerifyConnection so that it can be skipped per host.
func (v *verifyPolicy) clientConfig() *tls.Config {
	c := v.base.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.InsecureSkipVerify = true // verification is done in VerifyConnection below
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		err := v.verifyServer(cs)
		v.count("outbound", err)
		return err
	}
	return c
}

func (v *verifyPolicy) verifyServer(cs tls.ConnectionState) error {
	if v.skipped(cs.ServerName) {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: v.base.RootCAs, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	// R44/P8: with an IP literal the certificate must carry that IP; with a name, the name.
	opts.DNSName = cs.ServerName
	if ip := net.ParseIP(strings.Trim(cs.ServerName, "[]")); ip != nil {
		opts.DNSName = ip.String()
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: verify %s: %w", cs.ServerName, err)
	}
	return nil
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
		res = "verify_failed"
	}
	v.metrics.TLSHandshake(dir, res)
}

// tlsVersionName returns "1.2"/"1.3" for span attributes.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return ""
}
