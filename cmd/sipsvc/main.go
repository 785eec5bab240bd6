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
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sipsvc/sipsvc/config"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sipsvc:", err)
		os.Exit(1)
	}
}

// run parses args, loads the config and serves until a signal stops it. Usage and flag
// errors go to stderr; --help (or -h) prints the usage and returns nil.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sipsvc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file (default: embedded defaults)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: sipsvc [--config FILE]\n\nRuns the sipsvc B2BUA and its gRPC/REST API. Environment variables SIPSVC_* override\nthe config file (see README.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // usage printed: asking for help is not an error
		}
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
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
	if addr := cfg.API.PprofAddr; addr != "" {
		// Opt-in profiling for load tests (docs/performance.md); never on by default, and
		// on loopback unless api.pprof_allow_remote (config.Validate).
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("api.pprof_addr %s: %w", addr, err)
		}
		srv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}
	return serve(ctx, cfg, os.Getenv, draining)
}

// pprofMux serves the runtime profiles under /debug/pprof/.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
