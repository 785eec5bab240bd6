package signaling

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/devcert"
	"github.com/sipsvc/sipsvc/dn"
)

// testSDP is an offer/answer body; tests check it passes through unchanged.
const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

var testPKI = func() devcert.Pair {
	p, err := devcert.Generate("sipsvc test", []string{"127.0.0.1", "localhost"})
	if err != nil {
		panic(err)
	}
	return p
}()

func serverTLS(t testing.TB) *tls.Config {
	cert, err := testPKI.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func clientTLS() *tls.Config {
	return &tls.Config{RootCAs: testPKI.Pool(), MinVersion: tls.VersionTLS12}
}

// memDir is an in-memory Directory for tests.
type memDir struct {
	mu       sync.Mutex
	dns      map[string]dn.DN
	bindings map[string][]dn.Binding
}

func newMemDir(dns ...dn.DN) *memDir {
	m := &memDir{dns: map[string]dn.DN{}, bindings: map[string][]dn.Binding{}}
	for _, d := range dns {
		m.dns[d.Number] = d
	}
	return m
}

func (m *memDir) Lookup(_ context.Context, n string) (dn.DN, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dns[n]
	if !ok {
		return dn.DN{}, fmt.Errorf("lookup %s: %w", n, dn.ErrNotFound)
	}
	return d, nil
}

func (m *memDir) Bindings(_ context.Context, n string) ([]dn.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]dn.Binding(nil), m.bindings[n]...), nil
}

func (m *memDir) put(d dn.DN) {
	m.mu.Lock()
	m.dns[d.Number] = d
	m.mu.Unlock()
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(_ context.Context, ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) rewrites(leg string) map[string]Rewrite {
	out := map[string]Rewrite{}
	for _, e := range r.all() {
		if e.Kind == EventHeaderRewritten && e.Rewrite.Leg == leg {
			out[e.Rewrite.Header] = *e.Rewrite
		}
	}
	return out
}

func (r *recorder) decision(leg string) *LegDecision {
	for _, e := range r.all() {
		if e.Kind == EventLegSchemeDecided && e.Decision.Leg == leg {
			return e.Decision
		}
	}
	return nil
}

func (r *recorder) waitKind(t testing.TB, kind EventKind) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range r.all() {
			if e.Kind == kind {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s event; got %v", kind, r.all())
	return Event{}
}

// b2bua is a Server under test with its listen addresses.
type b2bua struct {
	s              *Server
	udp, tcp, tlsA string
	dir            *memDir
	rec            *recorder
}

func testLogger() *slog.Logger {
	if os.Getenv("SIPSVC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startB2BUA(t testing.TB, mut func(*Config), dns ...dn.DN) *b2bua {
	t.Helper()
	b := &b2bua{dir: newMemDir(dns...), rec: &recorder{}}
	cfg := Config{
		Hostname:    "127.0.0.1",
		ServerTLS:   serverTLS(t),
		ClientTLS:   clientTLS(),
		Directory:   b.dir,
		Observers:   []Observer{b.rec},
		Logger:      testLogger(),
		RingTimeout: 5 * time.Second,
	}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.s = s
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.udp, b.tcp, b.tlsA = u.LocalAddr().String(), tl.Addr().String(), sl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, Listeners{UDP: []net.PacketConn{u}, TCP: []net.Listener{tl}, TLS: []net.Listener{sl}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	return b
}

func (b *b2bua) addr(transport string) string {
	switch strings.ToUpper(transport) {
	case "UDP":
		return b.udp
	case "TCP":
		return b.tcp
	}
	return b.tlsA
}

// phone is a sipgo user agent acting as a SIP phone on loopback.
type phone struct {
	t         testing.TB
	name      string
	transport string
	addr      string
	ua        *sipgo.UserAgent
	cli       *sipgo.Client
	srv       *sipgo.Server

	mu       sync.Mutex
	received []*sip.Request
	// answer decides how to answer an INVITE; default 180 then 200 with testSDP.
	answer func(req *sip.Request, tx sip.ServerTransaction)
	inbox  chan *sip.Request
	// referCode answers REFER (default 405).
	referCode int
}

func newPhone(t testing.TB, name, transport string) *phone {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgenTLSConfig(clientTLS()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	p := &phone{t: t, name: name, transport: strings.ToUpper(transport), ua: ua, inbox: make(chan *sip.Request, 64)}
	p.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(quiet))
	record := p.record
	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		p.mu.Lock()
		ans := p.answer
		p.mu.Unlock()
		if ans != nil {
			ans(req, tx)
			return
		}
		p.ring(req, tx)
		time.Sleep(20 * time.Millisecond) // let the 180 arrive first over UDP
		p.ok(req, tx, []byte(testSDP))
	})
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO, sip.NOTIFY, sip.OPTIONS, sip.PRACK, sip.MESSAGE} {
		m := m
		p.srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			record(req)
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			_ = tx.Respond(res)
		})
	}
	p.srv.OnRefer(func(req *sip.Request, tx sip.ServerTransaction) {
		record(req)
		p.mu.Lock()
		code := p.referCode
		p.mu.Unlock()
		if code == 0 {
			code = 405
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, statusText(code), nil))
	})
	p.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { record(req) })
	p.srv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) { record(req) })
	ctx, cancel := context.WithCancel(context.Background())
	switch p.transport {
	case "UDP":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.addr = c.LocalAddr().String()
		go p.srv.ServeUDP(c)
		go func() { <-ctx.Done(); c.Close() }()
	case "TCP", "TLS":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.addr = l.Addr().String()
		if p.transport == "TLS" {
			go p.srv.ServeTLS(tls.NewListener(l, serverTLS(t)))
		} else {
			go p.srv.ServeTCP(l)
		}
		go func() { <-ctx.Done(); l.Close() }()
	}
	t.Cleanup(func() { cancel(); ua.Close() })
	return p
}

func (p *phone) record(req *sip.Request) {
	p.mu.Lock()
	p.received = append(p.received, req)
	p.mu.Unlock()
	select {
	case p.inbox <- req:
	default:
	}
}

func (p *phone) port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	var n int
	fmt.Sscan(port, &n)
	return n
}

// contactURI returns the URI a DN contact would use to reach this phone.
func (p *phone) contactURI(user, scheme string) string {
	u := fmt.Sprintf("%s:%s@%s", scheme, user, p.addr)
	switch {
	case scheme == "sips":
	case p.transport == "TCP":
		u += ";transport=tcp"
	case p.transport == "TLS":
		u += ";transport=tls"
	}
	return u
}

func (p *phone) setAnswer(f func(req *sip.Request, tx sip.ServerTransaction)) {
	p.mu.Lock()
	p.answer = f
	p.mu.Unlock()
}

func (p *phone) ring(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
	res.To().Params.Add("tag", p.name+"tag")
	_ = tx.Respond(res)
}

func (p *phone) ok(req *sip.Request, tx sip.ServerTransaction, body []byte) {
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.To().Params.Add("tag", p.name+"tag")
	scheme := "sip"
	if req.Recipient.Scheme == "sips" {
		scheme = "sips"
	}
	u := sip.Uri{Scheme: scheme, User: p.name, Host: "127.0.0.1", Port: p.port()}
	if scheme == "sip" && p.transport != "UDP" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", strings.ToLower(p.transport))
	}
	res.AppendHeader(&sip.ContactHeader{Address: u})
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE, INFO, NOTIFY"))
	_ = tx.Respond(res)
}

// waitRequest waits for the phone to receive a request with the given method.
func (p *phone) waitRequest(method sip.RequestMethod, within time.Duration) *sip.Request {
	p.t.Helper()
	deadline := time.After(within)
	for {
		p.mu.Lock()
		for _, r := range p.received {
			if r.Method == method {
				p.mu.Unlock()
				return r
			}
		}
		p.mu.Unlock()
		select {
		case <-p.inbox:
		case <-deadline:
			p.t.Fatalf("%s: no %s within %v", p.name, method, within)
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *phone) count(method sip.RequestMethod) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.received {
		if r.Method == method {
			n++
		}
	}
	return n
}

// uac is a call placed by a phone.
type uac struct {
	p     *phone
	inv   *sip.Request
	tx    sip.ClientTransaction
	prov  []*sip.Response
	final *sip.Response
	cseq  uint32
}

// inviteOpts shape the INVITE a phone sends.
type inviteOpts struct {
	ruri    string // full Request-URI
	from    string // From URI
	contact string // Contact URI
	headers []sip.Header
	noSDP   bool
}

func (p *phone) invite(b *b2bua, user string, o inviteOpts) *uac {
	p.t.Helper()
	scheme := "sip"
	if p.transport == "TLS" {
		scheme = "sip"
	}
	if o.ruri == "" {
		o.ruri = fmt.Sprintf("%s:%s@%s", scheme, user, b.addr(p.transport))
	}
	if o.from == "" {
		o.from = fmt.Sprintf("sip:%s@127.0.0.1", p.name)
	}
	if o.contact == "" {
		o.contact = fmt.Sprintf("sip:%s@%s", p.name, p.addr)
		if p.transport != "UDP" {
			o.contact += ";transport=" + strings.ToLower(p.transport)
		}
	}
	var ruri, from, contact sip.Uri
	must(p.t, sip.ParseUri(o.ruri, &ruri))
	must(p.t, sip.ParseUri(o.from, &from))
	must(p.t, sip.ParseUri(o.contact, &contact))
	req := sip.NewRequest(sip.INVITE, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.transport, Host: "127.0.0.1", Port: p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	fh := &sip.FromHeader{DisplayName: p.name + " display", Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + p.name)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	for _, h := range o.headers {
		req.AppendHeader(h)
	}
	var body []byte
	if !o.noSDP {
		body = []byte(testSDP)
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	req.SetTransport(p.transport)
	req.SetDestination(b.addr(p.transport))
	tx, err := p.cli.TransactionRequest(context.Background(), req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		p.t.Fatalf("%s INVITE: %v", p.name, err)
	}
	return &uac{p: p, inv: req, tx: tx, cseq: 1}
}

// wait reads responses until a final one (or the timeout).
func (u *uac) wait(within time.Duration) *sip.Response {
	u.p.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case res := <-u.tx.Responses():
			if res.IsProvisional() {
				u.prov = append(u.prov, res)
				continue
			}
			u.final = res
			return res
		case <-u.tx.Done():
			u.p.t.Fatalf("%s: INVITE transaction ended: %v", u.p.name, u.tx.Err())
			return nil
		case <-deadline:
			u.p.t.Fatalf("%s: no final response within %v", u.p.name, within)
			return nil
		}
	}
}

// waitProvisional waits for a provisional response with the given code.
func (u *uac) waitProvisional(code int, within time.Duration) *sip.Response {
	u.p.t.Helper()
	for _, r := range u.prov {
		if r.StatusCode == code {
			return r
		}
	}
	deadline := time.After(within)
	for {
		select {
		case res := <-u.tx.Responses():
			if res.IsProvisional() {
				u.prov = append(u.prov, res)
				if res.StatusCode == code {
					return res
				}
				continue
			}
			u.final = res
			u.p.t.Fatalf("%s: final %d before %d", u.p.name, res.StatusCode, code)
		case <-deadline:
			u.p.t.Fatalf("%s: no %d within %v", u.p.name, code, within)
			return nil
		}
	}
}

// request sends an in-dialog request after a 2xx and returns its final response.
func (u *uac) request(method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Response {
	u.p.t.Helper()
	req := u.inDialog(method, body, hdrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := u.p.cli.Do(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		u.p.t.Fatalf("%s %s: %v", u.p.name, method, err)
	}
	return res
}

func (u *uac) inDialog(method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Request {
	res := u.final
	target := res.Contact().Address
	req := sip.NewRequest(method, *target.Clone())
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: u.p.transport, Host: "127.0.0.1", Port: u.p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	req.AppendHeader(sip.HeaderClone(u.inv.From()))
	req.AppendHeader(sip.HeaderClone(res.To()))
	req.AppendHeader(sip.HeaderClone(u.inv.CallID()))
	if method == sip.ACK {
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.ACK})
	} else {
		u.cseq++
		req.AppendHeader(&sip.CSeqHeader{SeqNo: u.cseq, MethodName: method})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(u.inv.Contact()))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	req.SetTransport(u.p.transport)
	req.SetDestination(u.inv.Destination())
	return req
}

func (u *uac) ack() {
	u.p.t.Helper()
	if err := u.p.cli.WriteRequest(u.inDialog(sip.ACK, nil), func(*sipgo.Client, *sip.Request) error { return nil }); err != nil {
		u.p.t.Fatalf("ACK: %v", err)
	}
}

// cancel sends CANCEL for the INVITE.
func (u *uac) cancel() *sip.Response {
	u.p.t.Helper()
	inv := u.inv
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.SetBody(nil)
	c.SetTransport(u.p.transport)
	c.SetDestination(inv.Destination())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := u.p.cli.Do(ctx, c, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		u.p.t.Fatalf("CANCEL: %v", err)
	}
	return res
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func hdr(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}
