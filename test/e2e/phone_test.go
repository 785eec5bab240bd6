package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// phone is a sipgo user agent acting as a SIP phone on loopback (adapted from the signaling
// package's test harness). It answers INVITEs with its answer mode, answers re-INVITEs at
// once, answers BYE, NOTIFY, OPTIONS… with 200 and REFER with 405 (it does not allow REFER),
// and records every request it receives.
type phone struct {
	t         testing.TB
	name      string
	transport string // UDP, TCP or TLS
	addr      string // host:port it listens on
	sdp       string // its offer / answer

	ua  *sipgo.UserAgent
	cli *sipgo.Client
	srv *sipgo.Server

	mu       sync.Mutex
	received []*sip.Request
	answer   answerMode
	answered bool          // it has sent a 2xx to an initial INVITE
	changed  chan struct{} // signalled (non-blocking) on each request and on CANCEL
	talk     chan struct{} // signalled on NOTIFY Event: talk
	cancels  int           // INVITE transactions cancelled by the peer
	// allowRefer puts REFER in the phone's Allow and accepts REFER with 202.
	allowRefer bool

	closeOnce sync.Once
	stop      func()
}

// answerMode answers an initial INVITE.
type answerMode func(p *phone, req *sip.Request, tx sip.ServerTransaction)

// answerOK rings, then answers with the phone's SDP.
func answerOK(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	p.ring(req, tx, nil)
	time.Sleep(20 * time.Millisecond) // let the 180 arrive first over UDP
	p.ok(req, tx)
}

// answerOnTalk rings (with Allow-Events: talk when advertise is set) and answers only when
// it receives NOTIFY Event: talk, as a phone that lets a controller take it off-hook.
func answerOnTalk(advertise bool) answerMode {
	return func(p *phone, req *sip.Request, tx sip.ServerTransaction) {
		var hdrs []sip.Header
		if advertise {
			hdrs = append(hdrs, sip.NewHeader("Allow-Events", "talk, hold"))
		}
		p.ring(req, tx, hdrs)
		select {
		case <-p.talk:
			p.ok(req, tx)
		case <-tx.Done():
		case <-time.After(10 * time.Second):
			_ = tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		}
	}
}

// ringUntilCancel rings until the INVITE is cancelled. sipgo answers CANCEL (200) and the
// INVITE (487) inside the server transaction; the phone observes it with tx.OnCancel.
func ringUntilCancel(p *phone, req *sip.Request, tx sip.ServerTransaction) {
	tx.OnCancel(func(*sip.Request) {
		p.mu.Lock()
		p.cancels++
		p.mu.Unlock()
		p.signal()
	})
	p.ring(req, tx, nil)
	select {
	case <-tx.Done():
	case <-time.After(15 * time.Second):
	}
}

// rejectWith answers every INVITE with a final error status.
func rejectWith(code int, reason string) answerMode {
	return func(p *phone, req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
}

// phoneSDP is a phone's session description: the session name and media port identify it.
func phoneSDP(name string, port int) string {
	return "v=0\r\no=" + name + " 1 1 IN IP4 127.0.0.1\r\ns=" + name + "\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
}

var sdpPorts = struct {
	sync.Mutex
	next int
}{next: 20000}

func newPhone(t testing.TB, name, transport string) *phone {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgenTLSConfig(clientTLS()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	sdpPorts.Lock()
	sdpPorts.next += 2
	port := sdpPorts.next
	sdpPorts.Unlock()
	p := &phone{
		t: t, name: name, transport: strings.ToUpper(transport), ua: ua, sdp: phoneSDP(name, port),
		answer: answerOK, changed: make(chan struct{}, 1), talk: make(chan struct{}, 4),
	}
	if p.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	if p.cli, err = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		if tag, _ := req.To().Params.Get("tag"); tag != "" {
			p.reinvite(req, tx)
			return
		}
		p.mu.Lock()
		ans := p.answer
		p.mu.Unlock()
		ans(p, req, tx)
	})
	for _, m := range []sip.RequestMethod{sip.BYE, sip.UPDATE, sip.INFO, sip.OPTIONS, sip.PRACK, sip.MESSAGE} {
		p.srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			p.record(req)
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	}
	p.srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if header(req, "Event") == "talk" {
			select {
			case p.talk <- struct{}{}:
			default:
			}
		}
	})
	p.srv.OnRefer(func(req *sip.Request, tx sip.ServerTransaction) {
		p.record(req)
		p.mu.Lock()
		refer := p.allowRefer
		p.mu.Unlock()
		if refer {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	})
	p.srv.OnAck(func(req *sip.Request, _ sip.ServerTransaction) { p.record(req) })
	p.srv.OnCancel(func(req *sip.Request, _ sip.ServerTransaction) { p.record(req) })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	switch p.transport {
	case "UDP":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.addr = c.LocalAddr().String()
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.srv.ServeUDP(c) }()
		go func() { <-ctx.Done(); _ = c.Close() }()
	case "TCP", "TLS":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.addr = l.Addr().String()
		wg.Add(1)
		if p.transport == "TLS" {
			go func() { defer wg.Done(); _ = p.srv.ServeTLS(tls.NewListener(l, serverTLS(t))) }()
		} else {
			go func() { defer wg.Done(); _ = p.srv.ServeTCP(l) }()
		}
		go func() { <-ctx.Done(); _ = l.Close() }()
	default:
		t.Fatalf("phone transport %q", transport)
	}
	p.stop = func() {
		cancel()
		_ = ua.Close()
		wg.Wait()
	}
	return p
}

// close stops the phone (the stack calls it after sipsvc has stopped).
func (p *phone) close() { p.closeOnce.Do(p.stop) }

func (p *phone) record(req *sip.Request) {
	p.mu.Lock()
	p.received = append(p.received, req)
	p.mu.Unlock()
	p.signal()
}

func (p *phone) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *phone) setAnswer(a answerMode) {
	p.mu.Lock()
	p.answer = a
	p.mu.Unlock()
}

func (p *phone) port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// contactURI is the URI a DN contact uses to reach this phone.
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

func (p *phone) contact(scheme string) *sip.ContactHeader {
	u := sip.Uri{Scheme: scheme, User: p.name, Host: "127.0.0.1", Port: p.port()}
	if scheme == "sip" && p.transport != "UDP" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", strings.ToLower(p.transport))
	}
	return &sip.ContactHeader{Address: u}
}

func (p *phone) tag() string { return p.name + "tag" }

// ring sends 180 Ringing with a To tag and a Contact (so that in-dialog NOTIFY can reach it).
func (p *phone) ring(req *sip.Request, tx sip.ServerTransaction, hdrs []sip.Header) {
	res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
	res.To().Params.Add("tag", p.tag())
	res.AppendHeader(p.contact(req.Recipient.Scheme))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// ok answers an initial INVITE with the phone's SDP; its Allow has REFER only when
// allowRefer is set.
func (p *phone) ok(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", []byte(p.sdp))
	res.To().Params.Add("tag", p.tag())
	res.AppendHeader(p.contact(req.Recipient.Scheme))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	p.mu.Lock()
	allow := "INVITE, ACK, BYE, CANCEL, UPDATE, INFO, NOTIFY"
	if p.allowRefer {
		allow += ", REFER"
	}
	p.answered = true
	p.mu.Unlock()
	res.AppendHeader(sip.NewHeader("Allow", allow))
	_ = tx.Respond(res)
}

// reinvite answers a re-INVITE with the phone's SDP, mirroring a hold offer.
func (p *phone) reinvite(req *sip.Request, tx sip.ServerTransaction) {
	body := p.sdp
	offer := string(req.Body())
	switch {
	case strings.Contains(offer, "a=sendonly"):
		body = strings.Replace(body, "a=sendrecv", "a=recvonly", 1)
	case strings.Contains(offer, "a=inactive"):
		body = strings.Replace(body, "a=sendrecv", "a=inactive", 1)
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", []byte(body))
	res.AppendHeader(p.contact(req.Recipient.Scheme))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	_ = tx.Respond(res)
}

// requests returns the requests received with a method, in order.
func (p *phone) requests(method sip.RequestMethod) []*sip.Request {
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

func (p *phone) count(method sip.RequestMethod) int { return len(p.requests(method)) }

// waitRequest waits for the phone's nth (from 1) request with the method.
func (p *phone) waitRequest(method sip.RequestMethod, n int, within time.Duration) *sip.Request {
	p.t.Helper()
	deadline := time.After(within)
	for {
		if rs := p.requests(method); len(rs) >= n {
			return rs[n-1]
		}
		select {
		case <-p.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("%s: no %s #%d within %v (got %d)", p.name, method, n, within, p.count(method))
			return nil
		}
	}
}

// waitCancelled waits until an INVITE of the phone has been cancelled.
func (p *phone) waitCancelled(within time.Duration) {
	p.t.Helper()
	deadline := time.After(within)
	for {
		p.mu.Lock()
		n := p.cancels
		p.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-p.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("%s: INVITE not cancelled within %v", p.name, within)
		}
	}
}

func (p *phone) hasAnswered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answered
}

// uac is a call a phone places into sipsvc.
type uac struct {
	p     *phone
	inv   *sip.Request
	tx    sip.ClientTransaction
	prov  []*sip.Response
	final *sip.Response
	cseq  uint32
}

// inviteOpts shape the INVITE a phone sends; empty fields take plain sip defaults.
type inviteOpts struct {
	ruri    string // full Request-URI
	from    string // From URI
	contact string // Contact URI
}

// invite sends an INVITE with the phone's SDP to sipsvc (on the phone's transport).
func (p *phone) invite(s *stack, user string, o inviteOpts) *uac {
	p.t.Helper()
	dest := s.sipAddr(p.transport)
	if o.ruri == "" {
		o.ruri = fmt.Sprintf("sip:%s@%s", user, dest)
		if p.transport != "UDP" {
			o.ruri += ";transport=" + strings.ToLower(p.transport)
		}
	}
	if o.from == "" {
		o.from = fmt.Sprintf("sip:%s@127.0.0.1", p.name)
	}
	if o.contact == "" {
		o.contact = p.contact("sip").Address.String()
	}
	var ruri, from, contact sip.Uri
	must(p.t, sip.ParseUri(o.ruri, &ruri))
	must(p.t, sip.ParseUri(o.from, &from))
	must(p.t, sip.ParseUri(o.contact, &contact))
	req := sip.NewRequest(sip.INVITE, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.transport, Host: "127.0.0.1", Port: p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	fh := &sip.FromHeader{DisplayName: p.name, Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + p.name)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(p.sdp))
	req.SetTransport(p.transport)
	req.SetDestination(dest)
	tx, err := p.cli.TransactionRequest(context.Background(), req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		p.t.Fatalf("%s INVITE: %v", p.name, err)
	}
	return &uac{p: p, inv: req, tx: tx, cseq: 1}
}

// wait reads responses until a final one.
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

func (u *uac) inDialog(method sip.RequestMethod) *sip.Request {
	res := u.final
	req := sip.NewRequest(method, *res.Contact().Address.Clone())
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
	req.SetBody(nil) // Content-Length: 0, which stream transports need
	req.SetTransport(u.p.transport)
	req.SetDestination(u.inv.Destination())
	return req
}

// ack acknowledges the 2xx.
func (u *uac) ack() {
	u.p.t.Helper()
	if err := u.p.cli.WriteRequest(u.inDialog(sip.ACK), func(*sipgo.Client, *sip.Request) error { return nil }); err != nil {
		u.p.t.Fatalf("ACK: %v", err)
	}
}

// bye hangs up and returns the BYE's status.
func (u *uac) bye() int {
	u.p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := u.p.cli.Do(ctx, u.inDialog(sip.BYE), func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		u.p.t.Fatalf("%s BYE: %v", u.p.name, err)
	}
	return res.StatusCode
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// byeAsCallee hangs up a call the phone answered (inv is the INVITE it received) and
// returns the BYE's status.
func (p *phone) byeAsCallee(s *stack, inv *sip.Request) int {
	p.t.Helper()
	req := sip.NewRequest(sip.BYE, inv.Contact().Address)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.transport, Host: "127.0.0.1", Port: p.port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	to := inv.From().AsTo()
	req.AppendHeader(&to)
	from := inv.To().AsFrom()
	from.Params = from.Params.Clone()
	from.Params.Add("tag", p.tag())
	req.AppendHeader(&from)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(p.transport)
	req.SetDestination(s.sipAddr(p.transport))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.cli.Do(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		p.t.Fatalf("BYE from %s: %v", p.name, err)
	}
	return res.StatusCode
}
