package siptest

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// DefaultAllow is the Allow header of a phone's default 200 OK.
const DefaultAllow = "INVITE, ACK, BYE, CANCEL, UPDATE, INFO, NOTIFY"

// AnswerFunc answers an initial INVITE a phone receives.
type AnswerFunc func(req *sip.Request, tx sip.ServerTransaction)

// Handler answers a request other than INVITE, ACK and CANCEL (the phone has recorded it).
type Handler func(req *sip.Request, tx sip.ServerTransaction)

// Options shape a phone.
type Options struct {
	// ClientTLS is the TLS configuration of the phone's outgoing connections (default ClientTLS()).
	ClientTLS *tls.Config
	// ServerTLS is the TLS configuration of its TLS listener (default ServerTLS(t)).
	ServerTLS *tls.Config
	// DialOnly makes a phone that does not listen (it only places calls); Addr is then
	// "127.0.0.1:5999", a placeholder for its Contact.
	DialOnly bool
	// SDP is the phone's offer / answer (default the package's SDP).
	SDP []byte
	// NoAllow leaves the Allow header out of the default 200 OK (else DefaultAllow).
	NoAllow bool
	// ManualClose leaves closing the phone to the caller (Close); by default it is closed
	// when the test ends.
	ManualClose bool
}

// Phone is a sipgo user agent acting as a SIP phone on loopback. It records every request it
// receives; it answers initial INVITEs with its AnswerFunc (by default 180, then 200 with
// SDP), REFER with ReferCode (default 405), and BYE, UPDATE, INFO, NOTIFY, OPTIONS, PRACK and
// MESSAGE with 200, unless a Handler was set for the method.
type Phone struct {
	// T is the test the phone belongs to.
	T testing.TB
	// Name is the phone's user name (also its User-Agent and To-tag prefix).
	Name string
	// Transport is UDP, TCP or TLS.
	Transport string
	// Addr is the host:port the phone listens on.
	Addr string
	// SDP is the body of the default 200 OK and of the INVITEs the phone sends (set it
	// with Options.SDP: the phone reads it while serving).
	SDP []byte
	// Allow is the Allow header of the default 200 OK, none when empty (set it with
	// Options.NoAllow).
	Allow string

	// UA, Client and Server are the phone's sipgo objects.
	UA     *sipgo.UserAgent
	Client *sipgo.Client
	Server *sipgo.Server

	mu        sync.Mutex
	received  []*sip.Request
	answer    AnswerFunc
	handlers  map[sip.RequestMethod]Handler
	referCode int
	changed   chan struct{}
	inbox     chan *sip.Request

	closeOnce sync.Once
	stop      func()
}

// NewPhone starts a phone named name listening on 127.0.0.1:0 over transport.
func NewPhone(t testing.TB, name, transport string, o Options) *Phone {
	t.Helper()
	if o.ClientTLS == nil {
		o.ClientTLS = ClientTLS()
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgenTLSConfig(o.ClientTLS),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(Quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(Quiet)))
	if err != nil {
		t.Fatal(err)
	}
	if o.SDP == nil {
		o.SDP = []byte(SDP)
	}
	allow := DefaultAllow
	if o.NoAllow {
		allow = ""
	}
	p := &Phone{
		T: t, Name: name, Transport: strings.ToUpper(transport), UA: ua, SDP: o.SDP, Allow: allow,
		handlers: map[sip.RequestMethod]Handler{}, changed: make(chan struct{}, 1), inbox: make(chan *sip.Request, 64),
	}
	if p.Server, err = sipgo.NewServer(ua, sipgo.WithServerLogger(Quiet)); err != nil {
		t.Fatal(err)
	}
	if p.Client, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(Quiet)); err != nil {
		t.Fatal(err)
	}
	p.Server.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.Record(req)
		p.mu.Lock()
		ans := p.answer
		p.mu.Unlock()
		if ans != nil {
			ans(req, tx)
			return
		}
		p.AnswerOK(req, tx)
	})
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO, sip.NOTIFY, sip.OPTIONS, sip.PRACK, sip.MESSAGE, sip.REFER} {
		p.Server.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			p.Record(req)
			p.mu.Lock()
			h := p.handlers[m]
			code := p.referCode
			p.mu.Unlock()
			switch {
			case h != nil:
				h(req, tx)
			case m == sip.REFER:
				if code == 0 {
					code = 405
				}
				_ = tx.Respond(sip.NewResponseFromRequest(req, code, StatusText(code), nil))
			default:
				_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			}
		})
	}
	p.Server.OnAck(func(req *sip.Request, _ sip.ServerTransaction) { p.Record(req) })
	p.Server.OnCancel(func(req *sip.Request, _ sip.ServerTransaction) { p.Record(req) })

	var wg sync.WaitGroup
	closeListener := func() {}
	switch {
	case o.DialOnly:
		p.Addr = "127.0.0.1:5999"
	case p.Transport == "UDP":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.Addr = c.LocalAddr().String()
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Server.ServeUDP(c) }()
		closeListener = func() { _ = c.Close() }
	case p.Transport == "TCP" || p.Transport == "TLS":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.Addr = l.Addr().String()
		wg.Add(1)
		if p.Transport == "TLS" {
			if o.ServerTLS == nil {
				o.ServerTLS = ServerTLS(t)
			}
			go func() { defer wg.Done(); _ = p.Server.ServeTLS(tls.NewListener(l, o.ServerTLS)) }()
		} else {
			go func() { defer wg.Done(); _ = p.Server.ServeTCP(l) }()
		}
		closeListener = func() { _ = l.Close() }
	default:
		t.Fatalf("phone transport %q", transport)
	}
	p.stop = func() {
		// The listener closes first and its serve goroutine ends before the user agent
		// closes: a request read after sipgo cleared its pool would make it open a socket
		// (and a reader goroutine) for the response that nothing closes. A request read
		// just before the listener closed may still be on its way to a handler and do so
		// all the same: the transports are closed once more after it had time to.
		closeListener()
		wg.Wait()
		_ = ua.Close()
		time.Sleep(20 * time.Millisecond)
		_ = ua.TransportLayer().Close()
	}
	if !o.ManualClose {
		t.Cleanup(p.Close)
	}
	return p
}

// Close stops the phone; it may be called more than once.
func (p *Phone) Close() { p.closeOnce.Do(p.stop) }

// Record records a received request and wakes up the waiters.
func (p *Phone) Record(req *sip.Request) {
	p.mu.Lock()
	p.received = append(p.received, req)
	p.mu.Unlock()
	select {
	case p.inbox <- req:
	default:
	}
	p.Signal()
}

// Inbox delivers the requests the phone records (up to 64 not yet read; later ones are
// dropped from the inbox but still recorded).
func (p *Phone) Inbox() <-chan *sip.Request { return p.inbox }

// Signal wakes up the waiters (WaitRequest, WaitFor) without recording a request.
func (p *Phone) Signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// SetAnswer sets how the phone answers initial INVITEs (nil: AnswerOK).
func (p *Phone) SetAnswer(f AnswerFunc) {
	p.mu.Lock()
	p.answer = f
	p.mu.Unlock()
}

// Handle sets how the phone answers requests with a method other than INVITE, ACK and
// CANCEL (nil: the default).
func (p *Phone) Handle(method sip.RequestMethod, h Handler) {
	p.mu.Lock()
	p.handlers[method] = h
	p.mu.Unlock()
}

// SetReferCode sets the status of the phone's answer to REFER (0: 405).
func (p *Phone) SetReferCode(code int) {
	p.mu.Lock()
	p.referCode = code
	p.mu.Unlock()
}

// Port returns the port the phone listens on.
func (p *Phone) Port() int {
	_, port, _ := net.SplitHostPort(p.Addr)
	n, _ := strconv.Atoi(port)
	return n
}

// ContactURI returns the URI a DN contact uses to reach this phone as user.
func (p *Phone) ContactURI(user, scheme string) string {
	u := fmt.Sprintf("%s:%s@%s", scheme, user, p.Addr)
	switch {
	case scheme == "sips":
	case p.Transport == "TCP":
		u += ";transport=tcp"
	case p.Transport == "TLS":
		u += ";transport=tls"
	}
	return u
}

// Contact returns the phone's Contact header for a URI scheme (sip or sips); a sip URI
// carries the transport parameter over TCP and TLS.
func (p *Phone) Contact(scheme string) *sip.ContactHeader {
	if scheme != "sips" {
		scheme = "sip"
	}
	u := sip.Uri{Scheme: scheme, User: p.Name, Host: "127.0.0.1", Port: p.Port()}
	if scheme == "sip" && p.Transport != "UDP" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", strings.ToLower(p.Transport))
	}
	return &sip.ContactHeader{Address: u}
}

// Tag is the To tag of the phone's responses.
func (p *Phone) Tag() string { return p.Name + "tag" }

// AnswerOK is the default answer: 180, then (20 ms later, so that the 180 arrives first over
// UDP) 200 with the phone's SDP and Allow.
func (p *Phone) AnswerOK(req *sip.Request, tx sip.ServerTransaction) {
	p.Ring(req, tx)
	time.Sleep(20 * time.Millisecond)
	var hdrs []sip.Header
	if p.Allow != "" {
		hdrs = append(hdrs, sip.NewHeader("Allow", p.Allow))
	}
	p.OK(req, tx, p.SDP, hdrs...)
}

// Ring sends 180 Ringing with the phone's To tag and hdrs.
func (p *Phone) Ring(req *sip.Request, tx sip.ServerTransaction, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
	res.To().Params.Add("tag", p.Tag())
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// OK answers an INVITE with 200, the phone's To tag and Contact, body as application/sdp,
// and hdrs.
func (p *Phone) OK(req *sip.Request, tx sip.ServerTransaction, body []byte, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.To().Params.Add("tag", p.Tag())
	res.AppendHeader(p.Contact(req.Recipient.Scheme))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// Requests returns the requests received with a method, in order.
func (p *Phone) Requests(method sip.RequestMethod) []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*sip.Request
	for _, r := range p.received {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// Received returns every request received, in order.
func (p *Phone) Received() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.received...)
}

// Count returns the number of requests received with a method.
func (p *Phone) Count(method sip.RequestMethod) int { return len(p.Requests(method)) }

// WaitRequest waits for the phone's nth (from 1) request with the method and fails the test
// if it does not come within the duration.
func (p *Phone) WaitRequest(method sip.RequestMethod, n int, within time.Duration) *sip.Request {
	p.T.Helper()
	var out *sip.Request
	p.WaitFor(within, fmt.Sprintf("%s #%d", method, n), func() bool {
		if rs := p.Requests(method); len(rs) >= n {
			out = rs[n-1]
			return true
		}
		return false
	})
	return out
}

// WaitFor waits until cond holds, checking it whenever the phone records a request or is
// signalled, and fails the test with what if it does not hold within the duration.
func (p *Phone) WaitFor(within time.Duration, what string, cond func() bool) {
	p.T.Helper()
	deadline := time.After(within)
	for !cond() {
		select {
		case <-p.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			if cond() {
				return
			}
			p.T.Fatalf("%s: no %s within %v", p.Name, what, within)
			return
		}
	}
}

// StatusText is the reason phrase of a status code in the phones' answers.
func StatusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 405:
		return "Method Not Allowed"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	}
	return "Status"
}
