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
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/sipsvc/sipsvc/config"
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

// pprofMux serves the runtime profiles under /debug/pprof/.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
