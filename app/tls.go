package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/devcert"
	"github.com/sipsvc/sipsvc/signaling"
)

// tlsConfigs builds the SIP server and client TLS configs, generating the dev pair when no
// certificate is configured.
func tlsConfigs(cfg config.Config, log *slog.Logger) (server, client *tls.Config, err error) {
	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if certFile == "" {
		hosts := []string{"127.0.0.1", "::1", "localhost"}
		if cfg.SIP.Hostname != "" {
			hosts = append(hosts, cfg.SIP.Hostname)
		}
		f, err := devcert.Ensure(cfg.DataDir, hosts)
		if err != nil {
			return nil, nil, fmt.Errorf("dev certificate: %w", err)
		}
		verb := "using"
		if f.Created {
			verb = "generated"
		}
		log.Info(verb+" dev TLS certificate (set tls.cert_file for production)", "cert", f.Cert, "key", f.Key, "ca", f.CA, "sha256", f.Fingerprint)
		certFile, keyFile = f.Cert, f.Key
		if b, err := os.ReadFile(f.CA); err == nil {
			roots.AppendCertsFromPEM(b)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	minV := uint16(tls.VersionTLS12)
	if cfg.TLS.MinVersion == "1.3" {
		minV = tls.VersionTLS13
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV}
	switch cfg.TLS.ClientAuth {
	case "request":
		server.ClientAuth = tls.RequestClientCert
	case "require":
		server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.TLS.ClientCAFile != "" {
		b, err := os.ReadFile(cfg.TLS.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, errors.New("tls.client_ca_file: no PEM certificate")
		}
		server.ClientCAs = pool
		if cfg.TLS.ClientAuth == "request" {
			server.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	if cfg.TLS.CAFile != "" {
		b, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(b) {
			return nil, nil, errors.New("tls.ca_file: no PEM certificate")
		}
	}
	client = &tls.Config{RootCAs: roots, MinVersion: minV, Certificates: []tls.Certificate{cert}}
	return server, client, nil
}

// listenSIP opens every configured SIP socket, failing with the field name on error. On
// error the sockets already open are closed.
func listenSIP(ctx context.Context, c config.SIPConfig) (signaling.Listeners, error) {
	var l signaling.Listeners
	var lc net.ListenConfig
	fail := func(err error) (signaling.Listeners, error) {
		closeSIP(l)
		return signaling.Listeners{}, err
	}
	for i, a := range c.UDP {
		p, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			return fail(fmt.Errorf("sip.udp[%d] %s: %w", i, a, err))
		}
		l.UDP = append(l.UDP, p)
	}
	for i, a := range c.TCP {
		p, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return fail(fmt.Errorf("sip.tcp[%d] %s: %w", i, a, err))
		}
		l.TCP = append(l.TCP, p)
	}
	for i, a := range c.TLS {
		p, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return fail(fmt.Errorf("sip.tls[%d] %s: %w", i, a, err))
		}
		l.TLS = append(l.TLS, p)
	}
	return l, nil
}

// closeSIP closes every socket of l.
func closeSIP(l signaling.Listeners) {
	for _, c := range l.UDP {
		_ = c.Close()
	}
	for _, c := range l.TCP {
		_ = c.Close()
	}
	for _, c := range l.TLS {
		_ = c.Close()
	}
}
