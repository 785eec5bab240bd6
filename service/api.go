package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/gen/openapi"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/store"
)

// DefaultShutdownTimeout bounds the graceful part of Run's shutdown.
const DefaultShutdownTimeout = 5 * time.Second

// DefaultReadyInterval is how often the gRPC health status re-reads readiness.
const DefaultReadyInterval = time.Second

// APIConfig configures the control-plane API. Store and Realm are required.
type APIConfig struct {
	// GRPCAddr and HTTPAddr are the listen addresses used by Run; empty skips that server.
	GRPCAddr string
	HTTPAddr string
	// Tokens are the accepted bearer tokens. When set, every gRPC call (except grpc.health.v1)
	// and every /v1/ REST request needs "Authorization: Bearer <token>".
	Tokens []string
	// CertFile and KeyFile enable TLS on both ports. ClientCAFile additionally requires and
	// verifies client certificates on the gRPC port.
	CertFile     string
	KeyFile      string
	ClientCAFile string
	// AllowedHosts are the host names REST requests may carry in Host besides localhost and
	// IP addresses (see httpGuard).
	AllowedHosts []string

	// Calls serves CallService; nil leaves it unimplemented (UNIMPLEMENTED, HTTP 501). When it
	// also implements Readiness (*signaling.Server does), the API is ready only when it is.
	Calls CallControl
	// Store is the directory (required).
	Store store.Store
	// Registrations lists and removes bindings; nil reads and deletes them in Store.
	Registrations Registrations
	// Hub feeds WatchEvents; nil means a private hub that no one publishes to.
	Hub *Hub
	// Realm is the registrar's digest realm, used to hash DN passwords (required).
	Realm string

	// Logger; nil discards logs.
	Logger *slog.Logger
	// TracerProvider, MeterProvider and Propagators instrument gRPC and HTTP; nil means no
	// traces, no metrics and W3C trace context + baggage respectively.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagators    propagation.TextMapPropagator
	// Metrics, when set, is served at GET /metrics: without auth when HTTPAddr is on
	// loopback (or empty), else behind the bearer tokens.
	Metrics http.Handler
	// Ready reports readiness (e.g. the store answers); nil means always ready. Readiness is
	// this, Calls' Readiness and "not shutting down", all three; GET /readyz reads it on each
	// request and the grpc.health.v1 status follows it (see ReadyInterval).
	Ready func() error
	// ReadyInterval is how often the grpc.health.v1 status of every service (and of "")
	// re-reads readiness: SERVING when ready, NOT_SERVING before and otherwise. Zero means
	// DefaultReadyInterval.
	ReadyInterval time.Duration
	// ShutdownTimeout bounds Run's graceful shutdown; zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Validate checks the configuration without I/O.
func (c *APIConfig) Validate() error {
	if c.Store == nil {
		return errors.New("service: APIConfig.Store is required")
	}
	if c.Realm == "" {
		return errors.New("service: APIConfig.Realm is required (DN passwords are hashed with it)")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("service: APIConfig.CertFile and KeyFile go together")
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		return errors.New("service: APIConfig.ClientCAFile needs CertFile: client certificates are only checked over TLS")
	}
	if c.HTTPAddr != "" && !config.IsLoopback(c.HTTPAddr) && len(c.Tokens) == 0 {
		return fmt.Errorf("service: REST address %s is off loopback: tokens are required (client certificates only protect gRPC)", c.HTTPAddr)
	}
	if c.GRPCAddr != "" && !config.IsLoopback(c.GRPCAddr) && len(c.Tokens) == 0 && c.ClientCAFile == "" {
		return fmt.Errorf("service: gRPC address %s is off loopback: tokens or a client CA are required", c.GRPCAddr)
	}
	return nil
}

// API is the control-plane server: gRPC on one listener, REST/JSON (grpc-gateway), OpenAPI
// and health endpoints on another. Create it with NewAPI; serve with Run, or with ServeGRPC
// and ServeREST on listeners you create; stop with Shutdown.
type API struct {
	cfg  APIConfig
	log  *slog.Logger
	auth *tokenAuth
	tls  *tls.Config // server TLS for both ports; nil means plaintext

	grpc   *grpc.Server // public gRPC server
	health *health.Server
	// healthNames are the services whose health status follows readiness, "" included.
	healthNames []string
	// calls is cfg.Calls when it implements Readiness, else nil.
	calls Readiness
	// watchOnce starts watchReadiness with the gRPC server; watchWG waits for it.
	watchOnce sync.Once
	watchWG   sync.WaitGroup

	// The REST gateway calls a second, in-process gRPC server over an in-memory listener:
	// the in-process gateway transport cannot stream (WatchEvents), and the public server
	// may require TLS client certificates the gateway does not have.
	inner     *grpc.Server
	innerLis  *bufconn.Listener
	innerConn *grpc.ClientConn
	innerOnce sync.Once
	innerWG   sync.WaitGroup

	http *http.Server

	// ctx is the API's lifetime, cancelled by Shutdown: it ends WatchEvents streams and
	// the readiness watcher.
	ctx    context.Context
	cancel context.CancelFunc
}

// NewAPI builds the servers. It starts nothing: see Run, ServeGRPC and ServeREST.
func NewAPI(cfg APIConfig) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &API{
		cfg:  cfg,
		log:  cfg.Logger,
		auth: newTokenAuth(cfg.Tokens),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.calls, _ = cfg.Calls.(Readiness)
	if cfg.ReadyInterval <= 0 {
		cfg.ReadyInterval = DefaultReadyInterval
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	tp, mp, props := otelDefaults(cfg.TracerProvider, cfg.MeterProvider, cfg.Propagators)
	if cfg.Hub == nil {
		cfg.Hub = NewHub(0, a.log)
	}
	if cfg.Registrations == nil {
		cfg.Registrations = storeRegistrations{store: cfg.Store}
	}
	otelOpts := []otelgrpc.Option{otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(props)}

	var clientCAs *x509.CertPool
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("service: load API certificate %s: %w", cfg.CertFile, err)
		}
		a.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("service: read API client CA: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("service: API client CA %s: no PEM certificates", cfg.ClientCAFile)
		}
	}

	enums := newEnumTables()
	register := func(s *grpc.Server) {
		if cfg.Calls != nil {
			sipsvcv1.RegisterCallServiceServer(s, &callServer{calls: cfg.Calls, enums: enums, store: cfg.Store, regs: cfg.Registrations})
		}
		sipsvcv1.RegisterEventServiceServer(s, &eventServer{hub: cfg.Hub, enums: enums, stopping: a.ctx.Done()})
		sipsvcv1.RegisterDirectoryServiceServer(s, &directoryServer{store: cfg.Store, regs: cfg.Registrations, realm: cfg.Realm, enums: enums})
	}
	interceptors := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.auth.unary, a.logUnary),
		grpc.ChainStreamInterceptor(a.auth.stream),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
	}

	pubOpts := append([]grpc.ServerOption(nil), interceptors...)
	if a.tls != nil {
		gt := a.tls.Clone()
		if clientCAs != nil {
			gt.ClientCAs = clientCAs
			gt.ClientAuth = tls.RequireAndVerifyClientCert
		}
		pubOpts = append(pubOpts, grpc.Creds(credentials.NewTLS(gt)))
	}
	a.grpc = grpc.NewServer(pubOpts...)
	register(a.grpc)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	a.healthNames = []string{""}
	for name := range a.grpc.GetServiceInfo() {
		a.healthNames = append(a.healthNames, name)
	}
	a.setHealth(healthpb.HealthCheckResponse_NOT_SERVING) // until watchReadiness sees ready
	reflection.Register(a.grpc)

	a.inner = grpc.NewServer(interceptors...)
	register(a.inner)
	a.innerLis = bufconn.Listen(1 << 20)
	conn, err := grpc.NewClient("passthrough:///sipsvc-gateway",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return a.innerLis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...)),
	)
	if err != nil {
		return nil, fmt.Errorf("service: gateway connection: %w", err)
	}
	a.innerConn = conn

	routes, err := newRouteTable(openapi.JSON())
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				// EmitDefaultValues: an empty list is [] and a zero number 0, not an absent
				// field (unset messages stay absent).
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true},
				UnmarshalOptions: protojson.UnmarshalOptions{},
			},
		}),
		runtime.WithErrorHandler(gatewayErrorHandler),
		runtime.WithForwardResponseOption(openStream),
		runtime.WithMiddlewares(recordRoute),
		runtime.WithRoutingErrorHandler(routes.routingErrorHandler),
	)
	ctx := context.Background() // the handlers' connection is closed by Shutdown, not by ctx
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		sipsvcv1.RegisterCallServiceHandler,
		sipsvcv1.RegisterEventServiceHandler,
		sipsvcv1.RegisterDirectoryServiceHandler,
	} {
		if err := reg(ctx, gw, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("service: register gateway handler: %w", err)
		}
	}

	mux := http.NewServeMux()
	doc := openapi.JSON()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if cfg.Metrics != nil {
		m := cfg.Metrics
		if cfg.HTTPAddr != "" && !config.IsLoopback(cfg.HTTPAddr) {
			m = a.auth.http(m) // reachable from other hosts: same tokens as the API
		}
		mux.Handle("GET /metrics", m)
	}
	mux.Handle("/", withRoute(a.auth.http(gw)))
	guard, err := newHTTPGuard(cfg.AllowedHosts, mp)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	// server.address of the HTTP metrics is this fixed name, not the request's Host header,
	// which any client could vary to add time series.
	serverName := cfg.HTTPAddr
	if serverName == "" {
		serverName = "localhost:0"
	}
	handler := otelhttp.NewHandler(mux, "sipsvc.api",
		otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(props),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
		otelhttp.WithServerName(serverName),
	)
	a.http = &http.Server{
		Handler:           guard.wrap(handler),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         a.tls,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.cfg = cfg
	return a, nil
}

// ready is the one readiness source of /readyz and the gRPC health status: nil when the
// API is not shutting down, Calls (when it implements Readiness) is ready and cfg.Ready
// passes.
func (a *API) ready() error {
	if a.ctx.Err() != nil {
		return errors.New("shutting down")
	}
	if a.calls != nil {
		if err := a.calls.Ready(); err != nil {
			return err
		}
	}
	if a.cfg.Ready != nil {
		return a.cfg.Ready()
	}
	return nil
}

// setHealth sets the grpc.health.v1 status of every service and of "".
func (a *API) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range a.healthNames {
		a.health.SetServingStatus(name, st)
	}
}

// startWatch starts watchReadiness once, unless the API is already shut down.
func (a *API) startWatch() {
	a.watchOnce.Do(func() {
		if a.ctx.Err() != nil {
			return
		}
		a.watchWG.Add(1)
		go func() {
			defer a.watchWG.Done()
			a.watchReadiness(a.ctx)
		}()
	})
}

// watchReadiness keeps the gRPC health status equal to readiness (a.ready), checking at
// once and then every ReadyInterval, until ctx ends (Shutdown, which leaves every status
// NOT_SERVING). It logs each change.
func (a *API) watchReadiness(ctx context.Context) {
	t := time.NewTicker(a.cfg.ReadyInterval)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING // as NewAPI left it
	for {
		st, err := healthpb.HealthCheckResponse_SERVING, a.ready()
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last && ctx.Err() == nil {
			a.setHealth(st)
			a.log.Info("API readiness changed", "grpc_health", st.String(), "reason", errText(err))
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// logUnary logs calls that failed with a server-side code.
func (a *API) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		switch status.Code(err) {
		case codes.Internal, codes.Unknown, codes.DataLoss:
			a.log.WarnContext(ctx, "api call failed", "method", info.FullMethod, "error", err)
		}
	}
	return resp, err
}

// ServeGRPC serves the gRPC API on l until Shutdown; it then returns nil. It also starts
// the watcher that keeps the grpc.health.v1 status equal to readiness.
func (a *API) ServeGRPC(l net.Listener) error {
	a.startWatch()
	// ErrServerStopped: Shutdown came first (a stop right after start); that is a clean stop.
	if err := a.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC %s: %w", l.Addr(), err)
	}
	return nil
}

// ServeREST serves REST/JSON, /openapi.json, /healthz, /readyz and /metrics on l (TLS when
// a certificate is configured) until Shutdown; it then returns nil.
func (a *API) ServeREST(l net.Listener) error {
	a.startInner()
	var err error
	if a.tls != nil {
		err = a.http.ServeTLS(l, "", "")
	} else {
		err = a.http.Serve(l)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve REST %s: %w", l.Addr(), err)
	}
	return nil
}

// startInner starts the gateway's in-process gRPC server once.
func (a *API) startInner() {
	a.innerOnce.Do(func() {
		a.innerWG.Add(1)
		go func() {
			defer a.innerWG.Done()
			if err := a.inner.Serve(a.innerLis); err != nil {
				a.log.Error("gateway backend stopped", "error", err)
			}
		}()
	})
}

// Handler returns the HTTP handler that ServeREST serves (for embedding in another server).
// The gateway backend is started on first use.
func (a *API) Handler() http.Handler {
	a.startInner()
	return a.http.Handler
}

// Shutdown stops both servers: it marks the API not ready and NOT_SERVING, ends WatchEvents
// streams and the readiness watcher, lets in-flight requests finish until ctx expires, then
// closes what remains. It returns ctx's error when it had to stop forcibly.
func (a *API) Shutdown(ctx context.Context) error {
	a.cancel()
	// Close the two start-once gates before waiting: a ServeGRPC or ServeREST that begins
	// now starts no goroutine, and one that is starting finishes its Add before the Waits
	// below (a WaitGroup Add racing its Wait is a data race).
	a.watchOnce.Do(func() {})
	a.innerOnce.Do(func() {})
	a.health.Shutdown()
	a.watchWG.Wait()
	herr := a.http.Shutdown(ctx)
	if herr != nil {
		_ = a.http.Close()
	}
	gerr := gracefulStop(ctx, a.grpc)
	ierr := gracefulStop(ctx, a.inner)
	_ = a.innerConn.Close()
	_ = a.innerLis.Close()
	a.innerWG.Wait()
	return errors.Join(herr, gerr, ierr)
}

// gracefulStop calls GracefulStop and falls back to Stop when ctx expires first.
func gracefulStop(ctx context.Context, s *grpc.Server) error {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Stop()
		<-done
		return ctx.Err()
	}
}

// Run listens on GRPCAddr and HTTPAddr (each when set), serves until ctx is cancelled or a
// server fails, then shuts down within ShutdownTimeout. A clean stop returns nil.
func (a *API) Run(ctx context.Context) error {
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}
	var lc net.ListenConfig
	var gl, hl net.Listener
	if a.cfg.GRPCAddr != "" {
		l, err := lc.Listen(ctx, "tcp", a.cfg.GRPCAddr)
		if err != nil {
			return fmt.Errorf("listen gRPC %s: %w", a.cfg.GRPCAddr, err)
		}
		gl = l
		listeners = append(listeners, l)
	}
	if a.cfg.HTTPAddr != "" {
		l, err := lc.Listen(ctx, "tcp", a.cfg.HTTPAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen REST %s: %w", a.cfg.HTTPAddr, err)
		}
		hl = l
		listeners = append(listeners, l)
	}
	return a.RunOn(ctx, gl, hl)
}

// RunOn is Run on listeners the caller opened: gl serves gRPC and hl REST (either may be nil).
// It serves until ctx is cancelled or a server fails, then shuts down within ShutdownTimeout
// and closes the listeners. A clean stop returns nil.
func (a *API) RunOn(ctx context.Context, gl, hl net.Listener) error {
	errc := make(chan error, 2)
	n := 0
	if gl != nil {
		n++
		a.log.Info("gRPC API listening", "addr", gl.Addr().String(), "tls", a.tls != nil, "auth", a.auth.enabled())
		go func() { errc <- a.ServeGRPC(gl) }()
	}
	if hl != nil {
		n++
		a.log.Info("REST API listening", "addr", hl.Addr().String(), "tls", a.tls != nil, "auth", a.auth.enabled())
		go func() { errc <- a.ServeREST(hl) }()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		n--
	}
	timeout := a.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	serr := a.Shutdown(sctx)
	for ; n > 0; n-- {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	if serr != nil {
		return fmt.Errorf("API shutdown: %w", serr)
	}
	return nil
}

// openStream sends the response headers of a server stream (WatchEvents) before its first
// message: the gateway calls forward-response options once with a nil message when the
// stream is open, and otherwise writes nothing until the first message.
//
// A request WatchEvents refused (a bad filter) ends without that header: then nothing is
// written here, and the gateway answers with the error's HTTP status (400) instead of 200.
func openStream(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if m != nil {
		return nil
	}
	if md, ok := runtime.ServerMetadataFromContext(ctx); !ok || len(md.HeaderMD.Get(streamOpenHeader)) == 0 {
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}
