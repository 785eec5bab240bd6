package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sipsvc/sipsvc/app"
	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/dn"
	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/internal/siptest"
	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// testRealm is the registrar's digest realm.
const testRealm = "e2e.sipsvc"

// phonePassword is the password addDN gives a self-registered DN and register answers with.
func phonePassword(number string) string { return "pw-" + number }

var (
	serverTLS  = siptest.ServerTLS
	clientTLS  = siptest.ClientTLS
	testLogger = siptest.Logger
)

// stackOptions shape a stack.
type stackOptions struct {
	// tokens enables bearer-token auth on the API.
	tokens []string
	// router, when set, is served as the routing service and sipsvc is pointed at it.
	router *testRouter
	// routingTimeout is the routing deadline (default 300 ms when router is set).
	routingTimeout time.Duration
	// fallbackDNs is routing.fallback_dns.
	fallbackDNs []string
	// defaultAdmission keeps the production default of calls.anonymous (per-dn: anonymous
	// callers reach only DNs with allow_anonymous). false: the lab setting, anonymous
	// callers reach every extension ("extensions"), as the phones of most tests are not
	// provisioned with passwords; the admission tests set it.
	defaultAdmission bool
}

// stack is sipsvc running in the test process.
type stack struct {
	t     *testing.T
	store *store.Memory
	hub   *service.Hub
	sig   *signaling.Server
	api   *service.API
	inst  *app.Instance

	sipUDP, sipTCP, sipTLS string
	grpcAddr, baseURL      string
	token                  string // sent by the gRPC clients and rest() when set

	base   context.Context
	conn   *grpc.ClientConn
	calls  sipsvcv1.CallServiceClient
	events sipsvcv1.EventServiceClient
	http   *http.Client

	mu     sync.Mutex
	phones []*phone
}

// startStack starts sipsvc through app.Start, as cmd/sipsvc does, with its listeners on
// 127.0.0.1:0, an in-memory store and the test PKI, and stops it (then closes the stack's
// phones) when the test ends.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, store: store.NewMemory(), http: &http.Client{Timeout: 15 * time.Second}}
	if len(o.tokens) > 0 {
		s.token = o.tokens[0]
	}
	cfg := config.Default()
	cfg.DNs = nil
	cfg.SIP.Hostname = "127.0.0.1"
	cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = []string{"127.0.0.1:0"}, []string{"127.0.0.1:0"}, []string{"127.0.0.1:0"}
	cfg.SIP.RingTimeout = 10 * time.Second
	cfg.API.GRPCAddr, cfg.API.HTTPAddr, cfg.API.Tokens = "127.0.0.1:0", "127.0.0.1:0", o.tokens
	cfg.Registrar.Realm = testRealm
	if !o.defaultAdmission {
		cfg.Calls.Anonymous = string(signaling.AnonymousExtensions)
	}
	cfg.Routing.FallbackDNs = o.fallbackDNs
	if o.router != nil {
		cfg.Routing.Address = o.router.start(t)
		cfg.Routing.Timeout = o.routingTimeout
		if cfg.Routing.Timeout <= 0 {
			cfg.Routing.Timeout = 300 * time.Millisecond
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	inst, err := app.Start(context.Background(), app.Config{
		Settings: cfg, Getenv: func(string) string { return "" }, Logger: testLogger(), Store: s.store,
		ServerTLS: serverTLS(t), ClientTLS: clientTLS(), APIShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	s.inst, s.hub, s.sig, s.api = inst, inst.Hub, inst.Signaling, inst.API
	s.sipUDP, s.sipTCP, s.sipTLS = inst.SIP.UDP[0].LocalAddr().String(), inst.SIP.TCP[0].Addr().String(), inst.SIP.TLS[0].Addr().String()
	s.grpcAddr, s.baseURL = inst.GRPCAddr, "http://"+inst.HTTPAddr

	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	base, baseCancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		baseCancel()
		_ = conn.Close()
		closed := make(chan error, 1)
		go func() { closed <- inst.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("stack: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("stack did not stop")
		}
		s.mu.Lock()
		phones := s.phones
		s.mu.Unlock()
		for _, p := range phones {
			p.Close()
		}
	})
	s.base, s.conn = base, conn
	s.calls = sipsvcv1.NewCallServiceClient(conn)
	s.events = sipsvcv1.NewEventServiceClient(conn)
	return s
}

// ctx returns a context for API calls, carrying the stack's token when it has one; it is
// cancelled when the test ends.
func (s *stack) ctx() context.Context {
	if s.token != "" {
		return metadata.AppendToOutgoingContext(s.base, "authorization", "Bearer "+s.token)
	}
	return s.base
}

// addPhone starts a phone and seeds a DN whose contact is the phone.
func (s *stack) addPhone(number, name, transport string) *phone {
	s.t.Helper()
	p := newPhone(s.t, name, transport)
	s.mu.Lock()
	s.phones = append(s.phones, p)
	s.mu.Unlock()
	s.addDN(dn.DN{Number: number, Type: dn.TypeExtension, Contact: p.ContactURI(number, "sip"), DisplayName: name})
	return p
}

// trustLoopback adds a trunk DN "lab-sbc" that trusts 127.0.0.1: every caller of the test
// is then trusted (an SBC in front of sipsvc), and may reach any target.
func (s *stack) trustLoopback() {
	s.t.Helper()
	s.addDN(dn.DN{Number: "lab-sbc", Type: dn.TypeTrunk, Contact: "sip:sbc@192.0.2.1", TrustedSources: []string{"127.0.0.1"}})
}

// callerPhone starts a phone that is not in the directory (it places calls into sipsvc).
func (s *stack) callerPhone(name, transport string) *phone {
	s.t.Helper()
	p := newPhone(s.t, name, transport)
	s.mu.Lock()
	s.phones = append(s.phones, p)
	s.mu.Unlock()
	return p
}

// addDN stores d; a self-registered DN without a password gets phonePassword (a DN without
// one cannot register: issue 10).
func (s *stack) addDN(d dn.DN) {
	s.t.Helper()
	if d.SelfRegistered() && !d.HasPassword() {
		d.HA1MD5, d.HA1SHA256 = dn.HashPassword(d.Number, testRealm, phonePassword(d.Number))
	}
	if err := s.store.PutDN(context.Background(), d); err != nil {
		s.t.Fatalf("seed DN %s: %v", d.Number, err)
	}
}

// sipAddr is the B2BUA's listen address for a transport.
// listenTCP listens on an ephemeral loopback TCP port and fails the test on error.
func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (s *stack) sipAddr(transport string) string {
	switch transport {
	case "UDP":
		return s.sipUDP
	case "TCP":
		return s.sipTCP
	}
	return s.sipTLS
}

// makeCall calls MakeCall and fails the test on error.
func (s *stack) makeCall(from, to string) *sipsvcv1.Call {
	s.t.Helper()
	res, err := s.calls.MakeCall(s.ctx(), &sipsvcv1.MakeCallRequest{From: from, To: to})
	if err != nil {
		s.t.Fatalf("MakeCall %s → %s: %v", from, to, err)
	}
	if res.GetCall().GetCallId() == "" {
		s.t.Fatalf("MakeCall returned no call id: %v", res)
	}
	return res.GetCall()
}

// waitState polls GetCall until the call is in state want.
func (s *stack) waitState(id string, want sipsvcv1.CallState) *sipsvcv1.Call {
	s.t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	var last *sipsvcv1.Call
	var err error
	for time.Now().Before(deadline) {
		var res *sipsvcv1.GetCallResponse
		res, err = s.calls.GetCall(s.ctx(), &sipsvcv1.GetCallRequest{CallId: id})
		if err == nil {
			last = res.GetCall()
			if last.GetState() == want {
				return last
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	s.t.Fatalf("call %s not %s: last %v, err %v", id, want, last, err)
	return nil
}

// waitGone polls GetCall until it answers NOT_FOUND.
func (s *stack) waitGone(id string) {
	s.t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		_, err = s.calls.GetCall(s.ctx(), &sipsvcv1.GetCallRequest{CallId: id})
		if status.Code(err) == codes.NotFound {
			return
		}
		time.Sleep(15 * time.Millisecond)
	}
	s.t.Fatalf("call %s still there: GetCall → %v", id, err)
}

// legOf returns the leg of a call that goes to the DN.
func legOf(t *testing.T, c *sipsvcv1.Call, number string) *sipsvcv1.Leg {
	t.Helper()
	for _, l := range c.GetLegs() {
		if l.GetDn() == number {
			return l
		}
	}
	t.Fatalf("call %s has no leg to DN %s: %v", c.GetCallId(), number, c.GetLegs())
	return nil
}

// wantCode checks a gRPC error's code and that its message mentions each of words.
func wantCode(t *testing.T, err error, code codes.Code, words ...string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	for _, w := range words {
		if !containsFold(st.Message(), w) {
			t.Errorf("%s message %q does not mention %q", code, st.Message(), w)
		}
	}
	return st
}

// watcher collects the events of one WatchEvents stream.
type watcher struct {
	t      *testing.T
	mu     sync.Mutex
	events []*sipsvcv1.Event
	err    error
	more   chan struct{} // signalled (non-blocking) on each event and at the end
}

// watch opens WatchEvents, waits until the server has subscribed, and collects events until
// the test ends.
func (s *stack) watch(req *sipsvcv1.WatchEventsRequest) *watcher {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if s.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	}
	st, err := s.events.WatchEvents(ctx, req)
	if err != nil {
		cancel()
		s.t.Fatalf("WatchEvents: %v", err)
	}
	if _, err := st.Header(); err != nil {
		cancel()
		s.t.Fatalf("WatchEvents header: %v", err)
	}
	w := &watcher{t: s.t, more: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			res, err := st.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				w.events = append(w.events, res.GetEvent())
			}
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	s.t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

func (w *watcher) all() []*sipsvcv1.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*sipsvcv1.Event(nil), w.events...)
}

// wait returns the first event that matches, waiting up to within.
func (w *watcher) wait(within time.Duration, what string, match func(*sipsvcv1.Event) bool) *sipsvcv1.Event {
	w.t.Helper()
	deadline := time.After(within)
	for {
		for _, e := range w.all() {
			if match(e) {
				return e
			}
		}
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		if err != nil {
			w.t.Fatalf("event stream ended (%v) without %s; got %v", err, what, w.all())
		}
		select {
		case <-w.more:
		case <-deadline:
			w.t.Fatalf("no %s within %v; got %v", what, within, w.all())
			return nil
		}
	}
}

// kind matches an event kind (and the call, when callID is set).
func kind(k sipsvcv1.EventKind, callID string) func(*sipsvcv1.Event) bool {
	return func(e *sipsvcv1.Event) bool {
		return e.GetKind() == k && (callID == "" || e.GetCallId() == callID)
	}
}

// testRouter is a routing.v1 RoutingService on 127.0.0.1:0 whose answer is chosen by the
// dialed number.
type testRouter struct {
	routingv1.UnimplementedRoutingServiceServer
	// route answers RouteCall.
	route func(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error)

	mu       sync.Mutex
	requests []*routingv1.RouteCallRequest
	notified []*routingv1.NotifyLegDecisionRequest
	changed  chan struct{}
}

func newTestRouter(route func(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error)) *testRouter {
	return &testRouter{route: route, changed: make(chan struct{}, 1)}
}

func (r *testRouter) RouteCall(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.mu.Unlock()
	r.signal()
	return r.route(ctx, req)
}

func (r *testRouter) NotifyLegDecision(_ context.Context, req *routingv1.NotifyLegDecisionRequest) (*routingv1.NotifyLegDecisionResponse, error) {
	r.mu.Lock()
	r.notified = append(r.notified, req)
	r.mu.Unlock()
	r.signal()
	return &routingv1.NotifyLegDecisionResponse{}, nil
}

func (r *testRouter) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// start serves the router on 127.0.0.1:0 until the test ends and returns its address.
func (r *testRouter) start(t *testing.T) string {
	t.Helper()
	l := listenTCP(t)
	srv := grpc.NewServer()
	routingv1.RegisterRoutingServiceServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("routing server: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return l.Addr().String()
}

// waitNotified waits for a NotifyLegDecision that matches.
func (r *testRouter) waitNotified(t *testing.T, within time.Duration, match func(*routingv1.NotifyLegDecisionRequest) bool) *routingv1.NotifyLegDecisionRequest {
	t.Helper()
	deadline := time.After(within)
	for {
		r.mu.Lock()
		ns := append([]*routingv1.NotifyLegDecisionRequest(nil), r.notified...)
		r.mu.Unlock()
		for _, n := range ns {
			if match(n) {
				return n
			}
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no matching NotifyLegDecision within %v; got %v", within, ns)
			return nil
		}
	}
}

// routeRequests returns the RouteCall requests received so far.
func (r *testRouter) routeRequests() []*routingv1.RouteCallRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*routingv1.RouteCallRequest(nil), r.requests...)
}

// discard drains and closes an HTTP body.
func discard(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, r)
	_ = r.Close()
}
