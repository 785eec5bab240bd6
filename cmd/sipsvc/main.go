// Command sipsvc runs the sipsvc B2BUA: SIP over UDP, TCP and TLS with per-leg secure SIP,
// the gRPC call-control API with its REST gateway, and OpenTelemetry export.
//
// Usage:
//
//	sipsvc [--config FILE]
//
// With no config file it runs on embedded defaults: SIP on UDP/TCP 5060 and TLS 5061, a dev
// CA and certificate generated into the data directory on first run, the built-in router,
// and the example DNs listed in the README.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/devcert"
	"github.com/sipsvc/sipsvc/signaling"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sipsvc:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("sipsvc", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "YAML config file (default: embedded defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	// SIGTERM drains: new calls get 503, calls in progress may finish (up to drainTimeout).
	// SIGINT, or a second signal, stops at once (remaining calls get BYE/CANCEL).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	draining := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		first := true
		for sg := range sigs {
			if first && sg == syscall.SIGTERM {
				first = false
				close(draining)
				continue
			}
			cancel()
			return
		}
	}()
	if addr := os.Getenv("SIPSVC_PPROF_ADDR"); addr != "" {
		// Opt-in profiling for load tests (docs/performance.md); never on by default.
		go func() { _ = http.ListenAndServe(addr, pprofMux()) }()
	}
	return serve(ctx, cfg, os.Getenv, draining)
}

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

// listen opens every configured SIP socket, failing with the field name on error.
func listen(ctx context.Context, c config.SIPConfig) (signaling.Listeners, error) {
	var l signaling.Listeners
	var lc net.ListenConfig
	for i, a := range c.UDP {
		p, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			return l, fmt.Errorf("sip.udp[%d] %s: %w", i, a, err)
		}
		l.UDP = append(l.UDP, p)
	}
	for i, a := range c.TCP {
		p, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return l, fmt.Errorf("sip.tcp[%d] %s: %w", i, a, err)
		}
		l.TCP = append(l.TCP, p)
	}
	for i, a := range c.TLS {
		p, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			return l, fmt.Errorf("sip.tls[%d] %s: %w", i, a, err)
		}
		l.TLS = append(l.TLS, p)
	}
	return l, nil
}

// pprofMux serves the runtime profiles under /debug/pprof/.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
