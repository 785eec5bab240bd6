package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
	"github.com/sipsvc/sipsvc/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// fanout sends every event to several observers.
type fanout []signaling.Observer

func (f fanout) Observe(ctx context.Context, ev signaling.Event) {
	for _, o := range f {
		o.Observe(ctx, ev)
	}
}

// drainTimeout bounds how long SIGTERM waits for calls in progress to end.
const drainTimeout = 30 * time.Second

// serve wires the components and runs them until ctx is cancelled, or until draining is
// closed and the calls in progress have ended (at most drainTimeout).
func serve(ctx context.Context, cfg config.Config, getenv func(string) string, draining <-chan struct{}) error {
	log, err := telemetry.NewLogger(os.Stderr, cfg.Log)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{Telemetry: cfg.Telemetry, Getenv: getenv, Version: version})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	}()
	otel.SetTextMapPropagator(tel.Propagator)
	if tel.Tracing {
		log.Info("tracing on", "endpoint", tel.Endpoint, "protocol", tel.Protocol)
	}
	metrics, err := telemetry.NewMetrics(tel.MeterProvider)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	dbPath := filepath.Join(cfg.DataDir, "sipsvc.db")
	bolt, err := store.OpenBolt(ctx, store.BoltConfig{Path: dbPath})
	if err != nil {
		return fmt.Errorf("store %s: %w", dbPath, err)
	}
	// Reads per call come from memory; writes go to bbolt first (durable before they return).
	st, err := store.NewCached(ctx, bolt, nil)
	if err != nil {
		bolt.Close()
		return err
	}
	defer st.Close()
	if path, created, err := cfg.GeneratePasswords(); err != nil {
		return err
	} else if path != "" {
		log.Info("self-registered DNs have generated passwords: read them in this file", "file", path, "new", created)
	}
	for _, d := range cfg.SeedDNs() {
		if err := st.PutDN(ctx, d); err != nil {
			return fmt.Errorf("seed DN %s: %w", d.Number, err)
		}
	}
	log.Info("directory ready", "store", dbPath, "seeded_dns", len(cfg.DNs))

	// Bindings that survived a restart count as active registrations from the start.
	if bs, err := st.AllBindings(ctx); err == nil {
		for i := range bs {
			metrics.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationAdded, Binding: &bs[i]})
		}
	}

	hub := service.NewHub(1024, log)
	observers := fanout{hub, metrics}

	var router signaling.Router
	if cfg.Routing.Address != "" {
		rc, err := service.NewRoutingClient(ctx, service.RoutingClientConfig{
			Address: cfg.Routing.Address, TLS: cfg.Routing.TLS, CAFile: cfg.Routing.CAFile,
			Timeout: cfg.Routing.Timeout, Logger: log,
			TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagators: tel.Propagator,
		})
		if err != nil {
			return fmt.Errorf("routing.address: %w", err)
		}
		defer rc.Close()
		router = rc
		observers = append(observers, rc)
		log.Info("routing service", "address", cfg.Routing.Address, "timeout", cfg.Routing.Timeout, "fallback_dns", cfg.Routing.FallbackDNs)
	} else {
		log.Info("routing: built-in router (dialed number → DN)")
	}

	reg, err := registrar.New(registrar.Config{
		Store: st, Realm: cfg.Registrar.Realm,
		DefaultExpires: cfg.Registrar.DefaultExpires, MinExpires: cfg.Registrar.MinExpires, MaxExpires: cfg.Registrar.MaxExpires,
		NonceTTL: cfg.Registrar.NonceTTL, AuthFailLimit: cfg.Registrar.AuthFailLimit, Lockout: cfg.Registrar.Lockout,
		Algorithms: cfg.Registrar.DigestAlgorithms, ServiceRoute: cfg.Registrar.ServiceRoute,
		LockoutBackoff: cfg.Registrar.LockoutBackoff, MaxContactsPerRegister: cfg.Registrar.MaxContactsPerRegister,
		MaxBindingsPerDN: cfg.Registrar.MaxBindingsPerDN, OpenRegistration: cfg.Registrar.OpenRegistration,
		Logger: log, Observer: observers, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
	})
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}

	srvTLS, cliTLS, err := tlsConfigs(cfg, log)
	if err != nil {
		return err
	}
	// sipgo keeps its transaction timers in package variables, so the wait is set once for
	// the process, before any transaction starts (sip.transaction_wait).
	sip.Timer_J, sip.Timer_L, sip.Timer_M = cfg.SIP.TransactionWait, cfg.SIP.TransactionWait, cfg.SIP.TransactionWait
	sig, err := signaling.New(signaling.Config{
		Hostname:       cfg.SIP.Hostname,
		Advertise:      cfg.SIP.Advertise,
		Conn:           cfg.SIP.Connections.Limits(),
		ServerTLS:      srvTLS,
		ClientTLS:      cliTLS,
		Policy:         cfg.SIP.Policy,
		RingTimeout:    cfg.SIP.RingTimeout,
		SessionExpires: cfg.SIP.SessionExpires,
		MinSE:          cfg.SIP.MinSE,
		UserAgent:      cfg.SIP.UserAgent,
		Directory:      st,
		Router:         router,
		RoutingTimeout: cfg.Routing.Timeout,
		FallbackDNs:    cfg.Routing.FallbackDNs,
		Registrar:      reg,
		Authenticator:  reg,
		Admission:      cfg.Calls.Admission(),
		Observers:      []signaling.Observer{observers},
		Metrics:        metrics,
		TracerProvider: tel.TracerProvider,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	ls, err := listen(ctx, cfg.SIP)
	if err != nil {
		return err
	}
	for _, c := range ls.UDP {
		log.Info("SIP listening", "transport", "udp", "addr", c.LocalAddr().String())
	}
	for _, c := range ls.TCP {
		log.Info("SIP listening", "transport", "tcp", "addr", c.Addr().String())
	}
	for _, c := range ls.TLS {
		log.Info("SIP listening", "transport", "tls", "addr", c.Addr().String())
	}

	api, err := service.NewAPI(service.APIConfig{
		GRPCAddr: cfg.API.GRPCAddr, HTTPAddr: cfg.API.HTTPAddr, Tokens: cfg.API.Tokens,
		CertFile: cfg.API.CertFile, KeyFile: cfg.API.KeyFile, ClientCAFile: cfg.API.ClientCAFile,
		Calls: sig, Store: st, Registrations: reg, Hub: hub, Realm: cfg.Registrar.Realm, Logger: log,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagators: tel.Propagator,
		Metrics: tel.MetricsHandler,
		Ready: func() error {
			// Ping, not a listing: this runs every second for gRPC health, and listing tens
			// of thousands of DNs each time showed in the REGISTER profile.
			if err := st.Ping(context.Background()); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			return nil
		},
	})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	log.Info("API listening", "grpc", cfg.API.GRPCAddr, "http", cfg.API.HTTPAddr, "auth", len(cfg.API.Tokens) > 0)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 3)
	run := func(name string, f func(context.Context) error) {
		go func() {
			err := f(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				cancel()
			}
			results <- result{name, err}
		}()
	}
	go func() {
		select {
		case <-draining:
			log.Info("SIGTERM: draining calls (new calls get 503); send SIGINT to stop now", "timeout", drainTimeout)
			dctx, dcancel := context.WithTimeout(ctx, drainTimeout)
			left := sig.Drain(dctx)
			dcancel()
			log.Info("drained", "calls_left", left)
			cancel()
		case <-ctx.Done():
		}
	}()
	run("sip", func(ctx context.Context) error { return sig.Serve(ctx, ls) })
	run("api", api.Run)
	run("registrar", reg.Run)
	var first error
	for i := 0; i < 3; i++ {
		r := <-results
		if r.err != nil && !errors.Is(r.err, context.Canceled) && first == nil {
			first = fmt.Errorf("%s: %w", r.name, r.err)
		}
	}
	log.Info("stopped")
	return first
}
