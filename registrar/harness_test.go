package registrar_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipsvc/sipsvc/connlimit"
	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/syncbuf"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/sipcheck"
	"github.com/sipsvc/sipsvc/store"
)

const realm = "sipsvc-test"

// clock is a settable clock shared by the registrar and the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu  sync.Mutex
	evs []signaling.Event
}

func (r *recorder) Observe(_ context.Context, ev signaling.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) kinds() []signaling.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []signaling.EventKind
	for _, e := range r.evs {
		out = append(out, e.Kind)
	}
	return out
}

func (r *recorder) count(k signaling.EventKind) int {
	n := 0
	for _, x := range r.kinds() {
		if x == k {
			n++
		}
	}
	return n
}

// syncBuffer is a log sink safe for concurrent writes and reads.
type syncBuffer = syncbuf.Buffer

// pki is a test CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sipsvc test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) tls.Certificate {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.server = leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, nil)
	p.client = leaf(3, "trunk.example.net", x509.ExtKeyUsageClientAuth, nil, []string{"trunk.example.net"})
	return p
}

// harness is a sipgo server on 127.0.0.1 (UDP, TCP, TLS) whose REGISTER and INVITE
// handlers call a Registrar.
type harness struct {
	t      testing.TB
	clock  *clock
	store  store.Store
	reg    *registrar.Registrar
	events *recorder
	logs   *syncBuffer
	pki    *pki
	addr   map[string]string // transport → host:port
	cancel context.CancelFunc
}

type harnessOpt func(*registrar.Config)

func newHarness(t testing.TB, st store.Store, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{t: time.Now()}, events: &recorder{}, logs: &syncBuffer{}, pki: newPKI(t), addr: map[string]string{}}
	if st == nil {
		st = store.NewMemoryClock(h.clock.Now)
	}
	h.store = st
	cfg := registrar.Config{
		// Both algorithms, SHA-256 first, so the tests cover both; TestDigestAlgorithms
		// covers the default (MD5 alone).
		Algorithms: []string{"SHA-256", "MD5"},
		Store:      st, Realm: realm, Now: h.clock.Now, Observer: h.events,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	reg, err := registrar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	h.serve()
	return h
}

func (h *harness) serve() {
	t := h.t
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sipsvc-test"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) { h.reg.ServeRegister(ctx, req, tx) })
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		cl, ok := h.reg.ClassifyCall(ctx, req, tx)
		if !ok {
			return
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		who := "-"
		if cl.DN != nil {
			who = cl.DN.Number
		}
		res.AppendHeader(sip.NewHeader("X-Caller", who))
		res.AppendHeader(sip.NewHeader("X-Caller-Class", string(cl.Class)))
		res.AppendHeader(sip.NewHeader("X-Caller-Rule", cl.Rule))
		_ = tx.Respond(res)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As sipsvc serves TLS: through a connlimit listener and sipcheck's stream framing on
	// top of it, so that the trunk-certificate tests read the client certificate the way
	// production does (through both wrappers).
	tlsL := sipcheck.WrapListener(connlimit.NewListener(tl, connlimit.Config{TLS: &tls.Config{
		Certificates: []tls.Certificate{h.pki.server}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: h.pki.pool,
	}}), sipcheck.WireConfig{})
	h.addr["UDP"], h.addr["TCP"], h.addr["TLS"] = udp.LocalAddr().String(), tcp.Addr().String(), tl.Addr().String()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = srv.ServeUDP(udp) }()
	go func() { defer wg.Done(); _ = srv.ServeTCP(tcp) }()
	go func() { defer wg.Done(); _ = srv.ServeTLS(tlsL) }()
	t.Cleanup(func() {
		cancel()
		_ = udp.Close()
		_ = tcp.Close()
		_ = tlsL.Close()
		_ = srv.Close()
		_ = ua.Close()
		wg.Wait()
	})
}

// noPassword, as addDN's password, stores a DN without a password.
const noPassword = "\x00none"

// testPassword is the password addDN gives a self-registered DN when the test names none
// (a self-registered DN without a password cannot register: issue 10).
func testPassword(number string) string { return "pw-" + number }

// addDN stores a DN; a non-empty password is hashed for the harness realm. A
// self-registered DN given no password gets testPassword, which phone.register uses when
// it is given none; noPassword stores none.
func (h *harness) addDN(number, contact, password string, mod ...func(*dn.DN)) dn.DN {
	h.t.Helper()
	d := dn.DN{Number: number, Type: dn.TypeExtension, Contact: contact}
	if password == "" && contact == "*" {
		password = testPassword(number)
	}
	if password == noPassword {
		password = ""
	}
	if password != "" {
		d.HA1MD5, d.HA1SHA256 = dn.HashPassword(number, realm, password)
	}
	for _, m := range mod {
		m(&d)
	}
	if err := h.store.PutDN(context.Background(), d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) bindings(number string) []dn.Binding {
	h.t.Helper()
	bs, err := h.store.Bindings(context.Background(), number)
	if err != nil {
		h.t.Fatal(err)
	}
	return bs
}

// phone is a sipgo UA that registers over one transport.
type phone struct {
	t         testing.TB
	h         *harness
	transport string
	ua        *sipgo.UserAgent
	client    *sipgo.Client
	callID    string
	cseq      uint32
}

func (h *harness) phone(transport string, clientCert bool) *phone {
	h.t.Helper()
	tc := &tls.Config{RootCAs: h.pki.pool, MinVersion: tls.VersionTLS12}
	if clientCert {
		tc.Certificates = []tls.Certificate{h.pki.client}
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("phone"), sipgo.WithUserAgenTLSConfig(tc))
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Close(); _ = ua.Close() })
	return &phone{t: h.t, h: h, transport: transport, ua: ua, client: c, callID: sip.GenerateTagN(16) + "@phone", cseq: 1}
}

// reg describes a REGISTER.
type reg struct {
	number     string
	aorScheme  string // To scheme; default sip
	ruriScheme string // Request-URI scheme; default sip
	contacts   []string
	expires    string // Expires header; "" means none
	headers    []sip.Header
	transport  string // force the transport (e.g. sips over TCP); "" means the phone's
}

func (p *phone) request(method sip.RequestMethod, r reg) *sip.Request {
	host, portS, _ := net.SplitHostPort(p.h.addr[p.transport])
	port, _ := strconv.Atoi(portS)
	ruri := sip.Uri{Scheme: def(r.ruriScheme, "sip"), Host: host, Port: port, UriParams: sip.HeaderParams{}}
	if ruri.Scheme == "sip" && p.transport != "UDP" {
		ruri.UriParams.Add("transport", strings.ToLower(p.transport))
	}
	if method == sip.INVITE {
		ruri.User = "9999"
	}
	req := sip.NewRequest(method, ruri)
	aor := sip.Uri{Scheme: def(r.aorScheme, "sip"), User: r.number, Host: host}
	to := &sip.ToHeader{Address: aor}
	if method == sip.INVITE {
		to.Address.User = "9999"
	}
	from := &sip.FromHeader{Address: aor, Params: sip.HeaderParams{}}
	from.Params.Add("tag", sip.GenerateTagN(8))
	cid := sip.CallIDHeader(p.callID)
	if method == sip.INVITE {
		cid = sip.CallIDHeader(sip.GenerateTagN(16))
	}
	req.AppendHeader(to)
	req.AppendHeader(from)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.cseq, MethodName: method})
	p.cseq += 10
	for _, c := range r.contacts {
		req.AppendHeader(sip.NewHeader("Contact", c))
	}
	if r.expires != "" {
		req.AppendHeader(sip.NewHeader("Expires", r.expires))
	}
	for _, hd := range r.headers {
		req.AppendHeader(hd)
	}
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	// sipgo picks UDP for a sips: URI without a transport parameter; say it explicitly.
	req.SetTransport(def(r.transport, p.transport))
	return req
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (p *phone) do(req *sip.Request) *sip.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

// register sends r; on a challenge it answers with sipgo's DoDigestAuth (which takes the
// first challenge: SHA-256 in the harness). An empty password means testPassword.
func (p *phone) register(r reg, password string) *sip.Response {
	p.t.Helper()
	req := p.request(sip.REGISTER, r)
	res := p.do(req)
	if password == "" {
		password = testPassword(r.number)
	}
	if res.StatusCode != 401 || password == noPassword {
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: r.number, Password: password})
	if err != nil {
		p.t.Fatalf("DoDigestAuth: %v", err)
	}
	return res
}

// challenge returns the challenge header value using algorithm alg from a 401/407.
func challenge(t testing.TB, res *sip.Response, alg string) *digest.Challenge {
	t.Helper()
	name := "WWW-Authenticate"
	if res.StatusCode == 407 {
		name = "Proxy-Authenticate"
	}
	for _, h := range res.GetHeaders(name) {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("parse challenge %q: %v", h.Value(), err)
		}
		if strings.EqualFold(c.Algorithm, alg) {
			return c
		}
	}
	t.Fatalf("no %s challenge in %d response:\n%s", alg, res.StatusCode, res)
	return nil
}

// authorize computes the Authorization for req from chal by hand (so tests control nc and
// the algorithm), bumps CSeq and clears Via, ready to be sent again.
func authorize(t testing.TB, req *sip.Request, chal *digest.Challenge, username, password string, nc int) {
	t.Helper()
	cred, err := digest.Digest(chal, digest.Options{
		Method: req.Method.String(), URI: req.Recipient.Addr(), Username: username, Password: password,
		Count: nc, Cnonce: "0a4f113b",
	})
	if err != nil {
		t.Fatal(err)
	}
	name := "Authorization"
	if req.Method == sip.INVITE {
		name = "Proxy-Authorization"
	}
	req.RemoveHeader(name)
	req.AppendHeader(sip.NewHeader(name, cred.String()))
	req.CSeq().SeqNo++
	req.RemoveHeader("Via")
}

// resend sends a request again (after authorize) in a new transaction.
func (p *phone) resend(req *sip.Request) *sip.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx, err := p.client.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		p.t.Fatal(err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res
		case <-tx.Done():
			p.t.Fatalf("transaction ended: %v", tx.Err())
		case <-ctx.Done():
			p.t.Fatal(ctx.Err())
		}
	}
}

// contactsOf returns the Contact values of a response.
func contactsOf(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func wantStatus(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

var errTimeout = errors.New("timeout")

// eventually polls f until it returns nil or 5 s pass.
func eventually(t testing.TB, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %v", errTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
