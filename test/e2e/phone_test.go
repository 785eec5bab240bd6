package e2e

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/internal/siptest"
)

// phone is a test phone (siptest.Phone) with e2e's answer modes. It answers INVITEs with its
// answer mode, answers re-INVITEs at once, answers BYE, NOTIFY, OPTIONS… with 200 and REFER
// with 405 (it does not allow REFER), and records every request it receives.
type phone struct {
	*siptest.Phone
	sdp string // its offer / answer

	mu       sync.Mutex
	answered bool          // it has sent a 2xx to an initial INVITE
	talk     chan struct{} // signalled on NOTIFY Event: talk
	cancels  int           // INVITE transactions cancelled by the peer
	// allowRefer puts REFER in the phone's Allow and accepts REFER with 202.
	allowRefer bool
}

// uac is a call a phone places into sipsvc.
type uac = siptest.UAC

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
		p.Signal()
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

// newPhone starts a phone; the stack closes it after sipsvc has stopped.
func newPhone(t testing.TB, name, transport string) *phone {
	t.Helper()
	sdpPorts.Lock()
	sdpPorts.next += 2
	port := sdpPorts.next
	sdpPorts.Unlock()
	sdp := phoneSDP(name, port)
	p := &phone{Phone: siptest.NewPhone(t, name, transport, siptest.Options{SDP: []byte(sdp), ManualClose: true}), sdp: sdp, talk: make(chan struct{}, 4)}
	p.setAnswer(answerOK)
	p.Handle(sip.NOTIFY, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if header(req, "Event") == "talk" {
			select {
			case p.talk <- struct{}{}:
			default:
			}
		}
	})
	p.Handle(sip.REFER, func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		refer := p.allowRefer
		p.mu.Unlock()
		if refer {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	})
	return p
}

// setAnswer sets the phone's answer mode for initial INVITEs; re-INVITEs are answered at once.
func (p *phone) setAnswer(a answerMode) {
	p.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag != "" {
			p.reinvite(req, tx)
			return
		}
		a(p, req, tx)
	})
}

// ring sends 180 Ringing with a To tag and a Contact (so that in-dialog NOTIFY can reach it).
func (p *phone) ring(req *sip.Request, tx sip.ServerTransaction, hdrs []sip.Header) {
	p.Ring(req, tx, append([]sip.Header{p.Contact(req.Recipient.Scheme)}, hdrs...)...)
}

// ok answers an initial INVITE with the phone's SDP; its Allow has REFER only when
// allowRefer is set.
func (p *phone) ok(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	allow := siptest.DefaultAllow
	if p.allowRefer {
		allow += ", REFER"
	}
	p.answered = true
	p.mu.Unlock()
	p.OK(req, tx, []byte(p.sdp), sip.NewHeader("Allow", allow))
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
	res.AppendHeader(p.Contact(req.Recipient.Scheme))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	_ = tx.Respond(res)
}

// waitCancelled waits until an INVITE of the phone has been cancelled.
func (p *phone) waitCancelled(within time.Duration) {
	p.T.Helper()
	p.WaitFor(within, "cancelled INVITE", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cancels > 0
	})
}

func (p *phone) hasAnswered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answered
}

// inviteOpts shape the INVITE a phone sends; empty fields take plain sip defaults.
type inviteOpts struct {
	ruri    string // full Request-URI
	from    string // From URI
	contact string // Contact URI
}

// invite sends an INVITE with the phone's SDP to sipsvc (on the phone's transport).
func (p *phone) invite(s *stack, user string, o inviteOpts) *uac {
	p.T.Helper()
	dest := s.sipAddr(p.Transport)
	if o.ruri == "" {
		o.ruri = "sip:" + user + "@" + dest + siptest.TransportParam(p.Transport)
	}
	return p.Invite(dest, user, siptest.InviteOptions{RURI: o.ruri, From: o.from, FromName: p.Name, Contact: o.contact})
}

var (
	must   = siptest.Must
	header = siptest.Header
)

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// byeAsCallee hangs up a call the phone answered (inv is the INVITE it received) and
// returns the BYE's status.
func (p *phone) byeAsCallee(s *stack, inv *sip.Request) int {
	p.T.Helper()
	req := sip.NewRequest(sip.BYE, inv.Contact().Address)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.Transport, Host: "127.0.0.1", Port: p.Port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	to := inv.From().AsTo()
	req.AppendHeader(&to)
	from := inv.To().AsFrom()
	from.Params = from.Params.Clone()
	from.Params.Add("tag", p.Tag())
	req.AppendHeader(&from)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(p.Transport)
	req.SetDestination(s.sipAddr(p.Transport))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.Client.Do(ctx, req, siptest.NoopBuild)
	if err != nil {
		p.T.Fatalf("BYE from %s: %v", p.Name, err)
	}
	return res.StatusCode
}
