package signaling

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sipsvc/sipsvc/connlimit"
	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sipcheck"
)

// Config configures a Server. Directory is required; everything else has a default.
type Config struct {
	// Hostname is written in Via, Contact and From of originated legs. Empty: the first
	// listener's IP, or, for a wildcard listener, the address of the interface that reaches
	// each peer (see Advertise).
	Hostname string
	// Advertise sets, per transport ("UDP", "TCP", "TLS"), the host or host:port written in
	// Via and Contact instead of the listener's address (a public address in front of a NAT,
	// a DNS name). It wins over Hostname.
	Advertise map[string]string
	// Conn caps and times out inbound TCP and TLS connections; zero fields take connlimit's
	// defaults.
	Conn connlimit.Config
	// ServerTLS is the TLS configuration of TLS listeners (certificate, client auth).
	ServerTLS *tls.Config
	// ClientTLS is the base TLS configuration for outbound TLS (root CAs). Per-DN
	// insecure_skip_verify is applied on top of it.
	ClientTLS *tls.Config
	// Policy is the global sips policy (per-leg or strict); a DN or a target may override it.
	Policy dn.Policy
	// RingTimeout bounds ringing of an originated leg. Default 60s.
	RingTimeout time.Duration
	// SessionExpires and MinSE are the RFC 4028 values. Defaults 1800s and 90s.
	SessionExpires time.Duration
	MinSE          time.Duration
	// Clock runs the session timers; nil means the real clock (tests inject a fake one).
	Clock Clock
	// T1 and T2 are the RFC 3261 timers of our 2xx retransmission over UDP (§13.3.1.4):
	// every T1, doubling up to T2, until the ACK; no ACK after 64*T1 ends the call.
	// Zero: DefaultT1 (500ms) and DefaultT2 (4s).
	T1, T2 time.Duration
	// UserAgent is written in User-Agent and Server headers. Default "sipsvc".
	UserAgent string

	// Directory resolves DNs and bindings (required).
	Directory Directory
	// Router decides targets; nil means the built-in router (dialed user part → DN).
	Router Router
	// RoutingTimeout is the deadline of one Router call. Default 1s.
	RoutingTimeout time.Duration
	// FallbackDNs are tried, in order, when Router fails or times out.
	FallbackDNs []string
	// Registrar serves REGISTER; nil answers 405.
	Registrar Registrar
	// Authenticator authorizes new calls; nil lets every call through (as trusted). When it
	// is a Classifier, callers are classified authenticated, trusted or anonymous (admit.go).
	Authenticator Authenticator
	// Admission sets the anonymous-caller policy and the call caps; zero fields are defaults.
	Admission Admission
	// Observers receive every event.
	Observers []Observer
	// Metrics receives hot-path counts; nil records none.
	Metrics Metrics
	// TracerProvider makes the call, leg and transaction spans; nil means no tracing.
	TracerProvider trace.TracerProvider
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Listeners are sockets a Server serves, created by the caller (tests pass :0 listeners).
type Listeners struct {
	UDP []net.PacketConn
	TCP []net.Listener
	// TLS listeners are plain TCP listeners: the server wraps them with Config.ServerTLS.
	TLS []net.Listener
}

// udpSocketBuffer is the receive and send buffer asked for on UDP listeners.
const udpSocketBuffer = 4 << 20

// Server is the B2BUA. Create it with New and run it with Serve.
type Server struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer
	// traced is false with the no-op tracer provider: span attributes are then not built at
	// all (tracing off costs nothing on the hot path).
	traced bool

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	// check validates every request at the edge (sipcheck).
	check *sipcheck.Checker

	// verify builds TLS configs; insecure dials TLS for DNs with insecure_skip_verify.
	verify   *verifyPolicy
	insecure *insecureDialer
	flows    tlsFlows // outbound TLS connections dialled by sipsvc (verified or not)

	mu sync.Mutex // guards the fields below
	// calls by sipsvc call id; legs by SIP Call-ID (each leg has its own Call-ID).
	calls map[string]*call
	legs  map[string]*leg
	seq   uint64

	// listen holds the advertised listen addresses per transport ("UDP", "TCP", "TLS"): an
	// immutable map, replaced whole by addListen (under mu) before serving, so that every
	// outgoing request reads it without a lock.
	listen atomic.Pointer[map[string]listenAddr]

	wg sync.WaitGroup // call goroutines; added to only through enter
	lc *lifecycle     // Serve/Shutdown state

	srcCache routeCache // local source address per peer, for wildcard listeners

	adm *admitter // caps and the anonymous policy (admit.go)

	udpReady atomic.Bool // sipgo has our UDP listener in its pool
	serving  atomic.Bool // Serve has its listeners and has not begun to stop (Ready)
	draining atomic.Bool // new calls are refused with 503 (graceful shutdown)
	uaClosed atomic.Bool // Serve is closing the user agent: nothing more is sent (send, write)
}

type listenAddr struct {
	host string
	port int
	ip   net.IP
	// auto: host was not configured and the listener is a wildcard: host is the default
	// outbound interface's address, and requests to a peer advertise the address of the
	// interface that reaches that peer (advertiseRequest).
	auto bool
}

// New builds a Server. It does not listen: call Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Directory == nil {
		return nil, errors.New("signaling: Config.Directory is required")
	}
	if err := cfg.Conn.Validate(); err != nil {
		return nil, fmt.Errorf("signaling: Config.Conn: %w", err)
	}
	if cfg.Policy == dn.PolicyDefault {
		cfg.Policy = dn.PolicyPerLeg
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 60 * time.Second
	}
	if cfg.SessionExpires <= 0 {
		cfg.SessionExpires = 1800 * time.Second
	}
	if cfg.MinSE <= 0 {
		cfg.MinSE = 90 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "sipsvc"
	}
	if cfg.RoutingTimeout <= 0 {
		cfg.RoutingTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	_, isNoop := cfg.TracerProvider.(noop.TracerProvider)
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		tracer: cfg.TracerProvider.Tracer("github.com/sipsvc/sipsvc/signaling"),
		traced: !isNoop,
		calls:  map[string]*call{},
		legs:   map[string]*leg{},
		lc:     newLifecycle(),
	}
	if err := cfg.Admission.Validate(); err != nil {
		return nil, fmt.Errorf("signaling: admission: %w", err)
	}
	s.adm = newAdmitter(cfg.Admission)
	s.verify = newVerifyPolicy(cfg.ClientTLS, cfg.Metrics)
	s.check = newChecker()
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentParser(sipcheck.NewParser()),
		sipgo.WithUserAgenTLSConfig(s.verify.clientConfig()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quietLogger(cfg.Logger))),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quietLogger(cfg.Logger)), s.streamTransports()),
	)
	if err != nil {
		return nil, fmt.Errorf("signaling: user agent: %w", err)
	}
	s.ua = ua
	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(quietLogger(cfg.Logger)))
	if err != nil {
		return nil, fmt.Errorf("signaling: server: %w", err)
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(quietLogger(cfg.Logger)))
	if err != nil {
		return nil, fmt.Errorf("signaling: client: %w", err)
	}
	s.routes()
	return s, nil
}

// quietLogger raises sipgo's own logging to warnings: its debug lines are per message.
func quietLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{h: l.Handler(), min: slog.LevelWarn}).With("component", "sipgo")
}

type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}

func (s *Server) routes() {
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnCancel(s.guard(s.onCancel))
	s.srv.OnBye(s.guard(s.onInDialog))
	s.srv.OnUpdate(s.guard(s.onInDialog))
	s.srv.OnInfo(s.guard(s.onInDialog))
	s.srv.OnNotify(s.guard(s.onInDialog))
	s.srv.OnRefer(s.guard(s.onInDialog))
	s.srv.OnMessage(s.guard(s.onInDialog))
	s.srv.OnPrack(s.guard(s.onPrack))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnRegister(s.guard(s.onRegister))
	s.srv.OnSubscribe(s.guard(s.onNotAllowed))
	s.srv.OnPublish(s.guard(s.onNotAllowed))
	s.srv.OnNoRoute(s.guard(s.onNotAllowed))
}

// guard counts the request, checks the headers every request needs, and turns a panic into a
// 500 so that no panic reaches the network loop.
func (s *Server) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in SIP handler", "method", req.Method, "panic", r)
				if !req.IsAck() {
					_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
				}
			}
		}()
		if m := s.cfg.Metrics; m != nil {
			m.MessageIn(string(req.Method), 0, req.Transport())
		}
		if r := s.check.Request(req, req.Transport()); r.Code != 0 {
			s.refuse(req, tx, r) // sipcheck: RFC 4475/5118 answers, R4/R18 for every method
			return
		}
		h(req, tx)
	}
}

// validateRequest checks what RFC 3261 §8.1.1 requires of every request (sipcheck.Required).
func validateRequest(req *sip.Request) error {
	if r := sipcheck.Required(req); r.Code != 0 {
		return errors.New(r.Text)
	}
	return nil
}

// Serve serves the given listeners until ctx is cancelled or Shutdown is called, then closes
// them, ends the calls in progress and returns. It checks the listeners and the
// configuration before it starts any of them. The error joins every listener's error (a
// listener closed by the shutdown is not an error); nil after a clean stop.
func (s *Server) Serve(ctx context.Context, l Listeners) error {
	if err := s.validateServe(l); err != nil {
		return err
	}
	if err := s.lc.start(); err != nil {
		return err
	}
	defer close(s.lc.done)
	// closers stop accepting (TCP, TLS); late closers run once the calls have ended.
	var closers, late []func() error
	var serves []func() error
	lim := connlimit.NewLimiter(s.cfg.Conn) // one set of caps for all TCP and TLS listeners
	for _, c := range l.UDP {
		s.addListen("UDP", c.LocalAddr())
		late = append(late, c.Close) // UDP sends the BYEs of the shutdown: closed after them
		if uc, ok := c.(*net.UDPConn); ok {
			// Bursts and GC pauses must not overflow the default ~200 KB socket buffer:
			// a dropped datagram costs a retransmission (500 ms) or a failed call. The
			// kernel caps these at net.core.rmem_max / wmem_max.
			_ = uc.SetReadBuffer(udpSocketBuffer)
			_ = uc.SetWriteBuffer(udpSocketBuffer)
		}
		serves = append(serves, func() error { return s.srv.ServeUDP(s.wrapUDP(c)) })
	}
	for _, c := range l.TCP {
		s.addListen("TCP", c.Addr())
		closers = append(closers, c.Close)
		ll := s.limitListener(lim, c, "TCP", nil)
		serves = append(serves, func() error { return s.srv.ServeTCP(s.wrapTCP(ll)) })
	}
	for _, c := range l.TLS {
		s.addListen("TLS", c.Addr())
		closers = append(closers, c.Close)
		ll := s.limitListener(lim, c, "TLS", s.verify.serverConfig(s.cfg.ServerTLS))
		serves = append(serves, func() error { return s.srv.ServeTLS(s.wrapTLS(ll)) })
	}
	var tlsAddr net.Addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if len(l.TLS) > 0 {
		tlsAddr = l.TLS[0].Addr()
	}
	s.insecure = newInsecureDialer(s.verify, tlsAddr)
	late = append(late, s.insecure.Close)
	serves = append(serves, func() error { return s.srv.ServeTLS(s.insecure) })
	s.logListen()

	// Every listener goroutine is owned here and waited for before Serve returns.
	errc := make(chan error, len(serves))
	var lwg sync.WaitGroup
	for _, serve := range serves {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			errc <- serve()
		}()
	}
	s.awaitUDPListeners(ctx, l.UDP) // udpready.go: no UDP request before sipgo has them
	s.serving.Store(true)
	var errs []error
	select {
	case <-ctx.Done():
	case <-s.lc.stop:
	case err := <-errc:
		errs = append(errs, err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	s.lc.begin(dctx)
	sctx := s.lc.deadline()
	s.serving.Store(false)
	for _, c := range closers {
		_ = c()
	}
	s.endCalls(sctx)
	if !s.waitCalls(sctx) {
		s.log.Warn("shutdown deadline passed with calls still ending; closing transports")
	}
	s.stopRetransmits()
	for _, c := range late {
		_ = c()
	}
	lwg.Wait() // every listener is closed: no request is read from here on
	s.uaClosed.Store(true)
	_ = s.ua.Close()
	s.wg.Wait()
	// A goroutine still ending a call when the deadline passed may have sent between the
	// check in send/write and the Close above: sipgo then opened a socket (and a reader
	// goroutine) after it cleared its pool. Close the transports again to release it.
	_ = s.ua.TransportLayer().Close()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	var out []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			out = append(out, fmt.Errorf("signaling: serve: %w", err))
		}
	}
	return errors.Join(out...)
}

func (s *Server) addListen(transport string, a net.Addr) {
	host, portStr, _ := net.SplitHostPort(a.String())
	port, _ := strconv.Atoi(portStr)
	ip := net.ParseIP(host)
	adv, auto := s.advertised(transport, host, ip)
	if h, p, err := net.SplitHostPort(adv); err == nil {
		adv = h
		port, _ = strconv.Atoi(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur map[string]listenAddr
	if p := s.listen.Load(); p != nil {
		cur = *p
	}
	if _, ok := cur[transport]; ok {
		return // the first listener of a transport is the advertised one
	}
	next := make(map[string]listenAddr, len(cur)+1)
	for t, a := range cur {
		next[t] = a
	}
	next[transport] = listenAddr{host: adv, port: port, ip: ip, auto: auto}
	s.listen.Store(&next) // never written again: readers need no lock
}

// local returns our advertised host and port for a transport. It takes no lock.
func (s *Server) local(transport string) listenAddr {
	var m map[string]listenAddr
	if p := s.listen.Load(); p != nil {
		m = *p
	}
	if a, ok := m[strings.ToUpper(transport)]; ok {
		return a
	}
	for _, t := range []string{"TLS", "TCP", "UDP"} {
		if a, ok := m[t]; ok {
			return a
		}
	}
	return listenAddr{host: "127.0.0.1", port: 5060}
}

// reply answers a request statelessly with respect to calls.
func (s *Server) reply(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.addServerHeader(res)
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", "code", code, "error", err)
		return
	}
	s.countOut(res)
}

func (s *Server) addServerHeader(res *sip.Response) {
	if res.GetHeader("Server") == nil {
		res.AppendHeader(sip.NewHeader("Server", s.cfg.UserAgent))
	}
}

func (s *Server) countOut(m sip.Message) {
	if s.cfg.Metrics == nil {
		return
	}
	switch v := m.(type) {
	case *sip.Request:
		s.cfg.Metrics.MessageOut(string(v.Method), 0, v.Transport())
	case *sip.Response:
		method := ""
		if c := v.CSeq(); c != nil {
			method = string(c.MethodName)
		}
		s.cfg.Metrics.MessageOut(method, v.StatusCode, v.Transport())
	}
}

// warnAgent is the warn-agent sipsvc writes in its Warning headers.
const warnAgent = "sipsvc"

// warningValue formats a Warning header value as RFC 3261 §20.43 has it:
// warn-code SP warn-agent SP warn-text, e.g. `380 sipsvc "SIPS Not Allowed"`.
func warningValue(code int, text string) string {
	return strconv.Itoa(code) + " " + warnAgent + " " + strconv.Quote(text)
}

// withWarning is a Warning header with our agent (see warningValue).
func withWarning(code int, text string) sip.Header {
	return sip.NewHeader("Warning", warningValue(code, text))
}

// refusalWarning turns a sips.Refusal's Warning, written without an agent (`381 "SIPS
// Required"`), into our Warning value. A value that is not a code and a quoted text becomes
// the text of a 399 (miscellaneous) warning.
func refusalWarning(w string) string {
	code, quoted, _ := strings.Cut(w, " ")
	n, err := strconv.Atoi(code)
	text, qerr := strconv.Unquote(quoted)
	if err != nil || qerr != nil || n < 300 || n > 399 {
		return warningValue(399, w)
	}
	return warningValue(n, text)
}

// Allowed lists the methods sipsvc handles, for Allow headers.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, PRACK, REFER, MESSAGE, REGISTER"

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	s.reply(tx, req, 200, "OK",
		sip.NewHeader("Allow", allowed),
		sip.NewHeader("Supported", "replaces, 100rel, timer"),
		sip.NewHeader("Accept", "application/sdp"),
		sip.NewHeader("Allow-Events", "talk, hold"))
}

func (s *Server) onNotAllowed(req *sip.Request, tx sip.ServerTransaction) {
	s.reply(tx, req, 405, "Method Not Allowed", sip.NewHeader("Allow", allowed))
}

func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	if s.cfg.Registrar == nil {
		s.onNotAllowed(req, tx)
		return
	}
	s.cfg.Registrar.ServeRegister(context.Background(), req, tx)
}

func (s *Server) observe(ctx context.Context, ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	for _, o := range s.cfg.Observers {
		o.Observe(ctx, ev)
	}
}

// Errors of Ready.
var (
	// ErrNotServing: Serve is not running (not started yet, or stopping).
	ErrNotServing = errors.New("signaling: not serving")
	// ErrDraining: Drain was called; new calls get 503.
	ErrDraining = errors.New("signaling: draining")
)

// Ready reports whether the server takes new calls: ErrNotServing until Serve has started
// its listeners and from the moment it begins to stop, ErrDraining once Drain was called,
// nil otherwise. It only reads two flags, so it may be polled.
func (s *Server) Ready() error {
	if !s.serving.Load() {
		return ErrNotServing
	}
	if s.draining.Load() {
		return ErrDraining
	}
	return nil
}

// Drain stops taking new calls (they get 503 with Retry-After) and waits until the calls in
// progress have ended or ctx is done; it returns the number of calls still up. Serve keeps
// running: cancel its context afterwards to stop (remaining calls then get BYE/CANCEL).
func (s *Server) Drain(ctx context.Context) int {
	s.draining.Store(true)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.calls)
		s.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
	}
}
