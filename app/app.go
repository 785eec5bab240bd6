package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
	"github.com/sipsvc/sipsvc/telemetry"
)

// Config is what Start needs. Only Settings is required; the other fields let a caller (the
// end-to-end tests) replace a part of the stack.
type Config struct {
	// Settings is the validated service configuration (config.Load, or config.Default with
	// changes). Listen addresses may use port 0.
	Settings config.Config
	// Getenv reads the OTEL_* environment for telemetry; nil means os.Getenv.
	Getenv func(string) string
	// Version is reported as the service.version resource attribute.
	Version string
	// Logger; nil means a logger built from Settings.Log writing to LogOutput.
	Logger *slog.Logger
	// LogOutput is where the logger built from Settings.Log writes; nil means os.Stderr.
	LogOutput io.Writer
	// Store is the directory; nil opens the bbolt store in Settings.DataDir (closed by
	// Close). A Store given here is seeded like the bbolt one but not closed by Close.
	Store store.Store
	// ServerTLS and ClientTLS replace the SIP TLS configs built from Settings.TLS (both or
	// neither).
	ServerTLS, ClientTLS *tls.Config
	// APIShutdownTimeout bounds the API's graceful stop; zero means service.DefaultShutdownTimeout.
	APIShutdownTimeout time.Duration
}

// Instance is a running sipsvc. Its exported fields are read-only after Start.
type Instance struct {
	// Logger is the service's logger.
	Logger *slog.Logger
	// Telemetry holds the tracer and meter providers.
	Telemetry *telemetry.Telemetry
	// Store is the directory.
	Store store.Store
	// Hub fans events out to WatchEvents streams.
	Hub *service.Hub
	// Registrar serves REGISTER and authorizes calls.
	Registrar *registrar.Registrar
	// Signaling is the B2BUA.
	Signaling *signaling.Server
	// API is the gRPC and REST control plane.
	API *service.API
	// SIP are the SIP listeners (their addresses resolve port 0).
	SIP signaling.Listeners
	// GRPCAddr and HTTPAddr are the API's listen addresses ("" when that server is off).
	GRPCAddr, HTTPAddr string

	ctx    context.Context // cancelled by Close, by Start's ctx, or when a component fails
	cancel context.CancelFunc
	wg     sync.WaitGroup // the component goroutines
	// closers run in reverse order by Close, after the components stopped.
	closers []func()

	// mu guards first.
	mu sync.Mutex
	// first is the first error a component stopped with.
	first error

	closeOnce sync.Once
	closeErr  error
}

// fanout sends every event to several observers.
type fanout []signaling.Observer

func (f fanout) Observe(ctx context.Context, ev signaling.Event) {
	for _, o := range f {
		o.Observe(ctx, ev)
	}
}

// Start builds every component, opens the listeners and starts serving in the background.
// Cancelling ctx later stops the instance as Close does (Close must still be called to wait
// and release). On error everything started so far is stopped.
func Start(ctx context.Context, c Config) (_ *Instance, err error) {
	cfg := c.Settings
	in := &Instance{}
	in.ctx, in.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			in.cancel()
			if in.API != nil { // built but never served: release its gateway connection
				sctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = in.API.Shutdown(sctx)
				cancel()
			}
			in.release()
		}
	}()

	log := c.Logger
	if log == nil {
		w := c.LogOutput
		if w == nil {
			w = os.Stderr
		}
		if log, err = telemetry.NewLogger(w, cfg.Log); err != nil {
			return nil, fmt.Errorf("log: %w", err)
		}
	}
	in.Logger = log

	tel, err := telemetry.Setup(ctx, telemetry.Config{Telemetry: cfg.Telemetry, Getenv: c.Getenv, Version: c.Version})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	in.Telemetry = tel
	in.onClose(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	})
	if tel.Tracing {
		log.Info("tracing on", "endpoint", tel.Endpoint, "protocol", tel.Protocol)
	}
	metrics, err := telemetry.NewMetrics(tel.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	st, where, fresh, err := in.openStore(ctx, c)
	if err != nil {
		return nil, err
	}
	in.Store = st
	if fresh {
		// The example self-registered DNs get random passwords on first start, kept in
		// data_dir (0600); the log names the file, never a password.
		if path, created, err := cfg.GeneratePasswords(); err != nil {
			return nil, err
		} else if path != "" {
			log.Info("self-registered DNs have generated passwords: read them in this file", "file", path, "new", created)
		}
	}
	seeded, err := seed(ctx, st, fresh, cfg.SeedDNs())
	if err != nil {
		return nil, err
	}
	log.Info("directory ready", "store", where, "seeded_dns", seeded)
	if seeded == 0 && len(cfg.DNs) > 0 {
		log.Info("config DNs not applied: the directory already exists and the API owns it (the dns list seeds a new directory only)", "config_dns", len(cfg.DNs))
	}

	// Bindings that survived a restart count as active registrations from the start.
	if bs, err := st.AllBindings(ctx); err == nil {
		for i := range bs {
			metrics.Observe(ctx, signaling.Event{Kind: signaling.EventRegistrationAdded, Binding: &bs[i]})
		}
	}

	in.Hub = service.NewHub(1024, log)
	observers := fanout{in.Hub, metrics}

	var router signaling.Router
	if cfg.Routing.Address != "" {
		rc, err := service.NewRoutingClient(ctx, service.RoutingClientConfig{
			Address: cfg.Routing.Address, TLS: cfg.Routing.TLS, CAFile: cfg.Routing.CAFile,
			Timeout: cfg.Routing.Timeout, Logger: log,
			TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagators: tel.Propagator,
		})
		if err != nil {
			return nil, fmt.Errorf("routing.address: %w", err)
		}
		in.onClose(func() { _ = rc.Close() })
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
		return nil, fmt.Errorf("registrar: %w", err)
	}
	in.Registrar = reg

	srvTLS, cliTLS := c.ServerTLS, c.ClientTLS
	if srvTLS == nil || cliTLS == nil {
		if srvTLS, cliTLS, err = tlsConfigs(cfg, log); err != nil {
			return nil, err
		}
	}
	setTransactionWait(cfg.SIP.TransactionWait)
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
		return nil, err
	}
	in.Signaling = sig

	api, err := service.NewAPI(service.APIConfig{
		GRPCAddr: cfg.API.GRPCAddr, HTTPAddr: cfg.API.HTTPAddr, Tokens: cfg.API.Tokens,
		CertFile: cfg.API.CertFile, KeyFile: cfg.API.KeyFile, ClientCAFile: cfg.API.ClientCAFile, AllowedHosts: cfg.API.AllowedHosts,
		Calls: sig, Store: st, Registrations: reg, Hub: in.Hub, Realm: cfg.Registrar.Realm, Logger: log,
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Propagators: tel.Propagator,
		Metrics:         tel.MetricsHandler,
		ShutdownTimeout: c.APIShutdownTimeout,
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
		return nil, fmt.Errorf("api: %w", err)
	}
	in.API = api

	// Listeners last, so that a failed start leaves nothing listening for long.
	ls, err := listenSIP(ctx, cfg.SIP)
	if err != nil {
		return nil, err
	}
	in.SIP = ls
	for _, c := range ls.UDP {
		log.Info("SIP listening", "transport", "udp", "addr", c.LocalAddr().String())
	}
	for _, c := range ls.TCP {
		log.Info("SIP listening", "transport", "tcp", "addr", c.Addr().String())
	}
	for _, c := range ls.TLS {
		log.Info("SIP listening", "transport", "tls", "addr", c.Addr().String())
	}
	gl, hl, err := listenAPI(ctx, cfg.API)
	if err != nil {
		closeSIP(ls)
		return nil, err
	}
	if gl != nil {
		in.GRPCAddr = gl.Addr().String()
	}
	if hl != nil {
		in.HTTPAddr = hl.Addr().String()
	}
	log.Info("API listening", "grpc", in.GRPCAddr, "http", in.HTTPAddr, "auth", len(cfg.API.Tokens) > 0)

	in.run("sip", func(ctx context.Context) error { return sig.Serve(ctx, ls) })
	in.run("api", func(ctx context.Context) error { return api.RunOn(ctx, gl, hl) })
	in.run("registrar", reg.Run)
	return in, nil
}

// openStore returns c.Store, or opens the bbolt store (behind the in-memory cache) in the
// data directory and arranges for Close to close it. where names the store for the log;
// fresh reports a new directory: no database file before (bbolt), or no DN (c.Store).
func (in *Instance) openStore(ctx context.Context, c Config) (st store.Store, where string, fresh bool, err error) {
	if c.Store != nil {
		dns, err := c.Store.ListDNs(ctx)
		if err != nil {
			return nil, "", false, fmt.Errorf("store: %w", err)
		}
		return c.Store, fmt.Sprintf("%T", c.Store), len(dns) == 0, nil
	}
	dir := c.Settings.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", false, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	dbPath := filepath.Join(dir, "sipsvc.db")
	_, statErr := os.Stat(dbPath)
	fresh = errors.Is(statErr, os.ErrNotExist)
	bolt, err := store.OpenBolt(ctx, store.BoltConfig{Path: dbPath})
	if err != nil {
		return nil, "", false, fmt.Errorf("store %s: %w", dbPath, err)
	}
	// Reads per call come from memory; writes go to bbolt first (durable before they return).
	cached, err := store.NewCached(ctx, bolt, nil)
	if err != nil {
		_ = bolt.Close()
		return nil, "", false, err
	}
	in.onClose(func() { _ = cached.Close() })
	return cached, dbPath, fresh, nil
}

// seed writes the config file's DNs into a fresh directory and returns how many it wrote.
// An existing directory is left alone: from the first start on the API owns the DNs, so a
// restart never reverts a password, display name or deletion made over the API.
func seed(ctx context.Context, st store.Store, fresh bool, dns []dn.DN) (int, error) {
	if !fresh {
		return 0, nil
	}
	for _, d := range dns {
		if err := st.PutDN(ctx, d); err != nil {
			return 0, fmt.Errorf("seed DN %s: %w", d.Number, err)
		}
	}
	return len(dns), nil
}

// listenAPI opens the API listeners that are configured (nil for the others).
func listenAPI(ctx context.Context, c config.APIConfig) (gl, hl net.Listener, err error) {
	var lc net.ListenConfig
	if c.GRPCAddr != "" {
		if gl, err = lc.Listen(ctx, "tcp", c.GRPCAddr); err != nil {
			return nil, nil, fmt.Errorf("api.grpc_addr %s: %w", c.GRPCAddr, err)
		}
	}
	if c.HTTPAddr != "" {
		if hl, err = lc.Listen(ctx, "tcp", c.HTTPAddr); err != nil {
			if gl != nil {
				_ = gl.Close()
			}
			return nil, nil, fmt.Errorf("api.http_addr %s: %w", c.HTTPAddr, err)
		}
	}
	return gl, hl, nil
}

// transactionWaitMu serializes setTransactionWait (tests start several instances at once).
var transactionWaitMu sync.Mutex

// setTransactionWait sets sipgo's transaction timers J, L and M (sip.transaction_wait).
// sipgo keeps them in package variables, so they are per process: they are written only
// when they change, before any transaction of this instance starts.
func setTransactionWait(d time.Duration) {
	transactionWaitMu.Lock()
	defer transactionWaitMu.Unlock()
	if sip.Timer_J != d || sip.Timer_L != d || sip.Timer_M != d {
		sip.Timer_J, sip.Timer_L, sip.Timer_M = d, d, d
	}
}

// onClose registers f to run at Close (in reverse order of registration).
func (in *Instance) onClose(f func()) { in.closers = append(in.closers, f) }

// run runs a component until the instance stops; a component that fails stops the others.
func (in *Instance) run(name string, f func(context.Context) error) {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		err := f(in.ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			in.mu.Lock()
			if in.first == nil {
				in.first = fmt.Errorf("%s: %w", name, err)
			}
			in.mu.Unlock()
			in.cancel()
		}
	}()
}

// Done is closed when the instance is stopping: Close was called, Start's ctx was
// cancelled, or a component failed (Close then returns its error).
func (in *Instance) Done() <-chan struct{} { return in.ctx.Done() }

// Drain stops taking new calls (they get 503) and waits until the calls in progress end, ctx
// ends or the instance stops; it returns the number of calls left.
func (in *Instance) Drain(ctx context.Context) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(in.ctx, cancel)
	defer stop()
	return in.Signaling.Drain(ctx)
}

// Close stops every component, waits for them, releases the store and telemetry, and
// returns the first error a component failed with (nil after a clean stop). Calling it
// again returns the same result.
func (in *Instance) Close() error {
	in.closeOnce.Do(func() {
		in.cancel()
		in.wg.Wait()
		in.release()
		in.mu.Lock()
		in.closeErr = in.first
		in.mu.Unlock()
		in.Logger.Info("stopped")
	})
	return in.closeErr
}

// release runs the closers, last registered first.
func (in *Instance) release() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i]()
	}
	in.closers = nil
}
