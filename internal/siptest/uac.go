package siptest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// UAC is a call a phone places.
type UAC struct {
	// Phone is the calling phone.
	Phone *Phone
	// Invite is the INVITE sent.
	Invite *sip.Request
	// Tx is the INVITE client transaction.
	Tx sip.ClientTransaction
	// Provisional holds the provisional responses received so far.
	Provisional []*sip.Response
	// Final is the final response, once received.
	Final *sip.Response

	cseq uint32
}

// InviteOptions shape the INVITE a phone sends; empty fields take plain sip defaults.
type InviteOptions struct {
	// RURI is the full Request-URI (default sip:user@dest).
	RURI string
	// From is the From URI (default sip:<phone name>@127.0.0.1).
	From string
	// FromName is the From display name (none when empty).
	FromName string
	// Contact is the Contact URI (default the phone's sip Contact).
	Contact string
	// Headers are added to the INVITE.
	Headers []sip.Header
	// NoSDP sends the INVITE without a body.
	NoSDP bool
}

// Invite sends an INVITE with the phone's SDP to dest on the phone's transport.
func (p *Phone) Invite(dest, user string, o InviteOptions) *UAC {
	p.T.Helper()
	if o.RURI == "" {
		o.RURI = fmt.Sprintf("sip:%s@%s", user, dest)
	}
	if o.From == "" {
		o.From = fmt.Sprintf("sip:%s@127.0.0.1", p.Name)
	}
	if o.Contact == "" {
		o.Contact = p.Contact("sip").Address.String()
	}
	var ruri, from, contact sip.Uri
	Must(p.T, sip.ParseUri(o.RURI, &ruri))
	Must(p.T, sip.ParseUri(o.From, &from))
	Must(p.T, sip.ParseUri(o.Contact, &contact))
	req := sip.NewRequest(sip.INVITE, ruri)
	req.AppendHeader(p.via())
	fh := &sip.FromHeader{DisplayName: o.FromName, Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: ruri.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@" + p.Name)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	for _, h := range o.Headers {
		req.AppendHeader(h)
	}
	var body []byte
	if !o.NoSDP {
		body = p.SDP
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body)
	req.SetTransport(p.Transport)
	req.SetDestination(dest)
	tx, err := p.Client.TransactionRequest(context.Background(), req, NoopBuild)
	if err != nil {
		p.T.Fatalf("%s INVITE: %v", p.Name, err)
	}
	return &UAC{Phone: p, Invite: req, Tx: tx, cseq: 1}
}

func (p *Phone) via() *sip.ViaHeader {
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.Transport, Host: "127.0.0.1", Port: p.Port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	return via
}

// Call places a call (INVITE as Invite), waits up to 5 s for a 200, ACKs it and returns the
// call; it fails the test on any other outcome.
func (p *Phone) Call(dest, user string, o InviteOptions) *UAC {
	p.T.Helper()
	u := p.Invite(dest, user, o)
	defer u.Tx.Terminate()
	if res := u.Wait(5 * time.Second); res.StatusCode != 200 {
		p.T.Fatalf("%s INVITE → %d %s", p.Name, res.StatusCode, res.Reason)
	}
	u.Ack()
	return u
}

// Wait reads responses until a final one and fails the test if none comes within the
// duration.
func (u *UAC) Wait(within time.Duration) *sip.Response {
	u.Phone.T.Helper()
	deadline := time.After(within)
	for {
		select {
		case res := <-u.Tx.Responses():
			if res.IsProvisional() {
				u.Provisional = append(u.Provisional, res)
				continue
			}
			u.Final = res
			return res
		case <-u.Tx.Done():
			u.Phone.T.Fatalf("%s: INVITE transaction ended: %v", u.Phone.Name, u.Tx.Err())
			return nil
		case <-deadline:
			u.Phone.T.Fatalf("%s: no final response within %v", u.Phone.Name, within)
			return nil
		}
	}
}

// WaitProvisional waits for a provisional response with the code.
func (u *UAC) WaitProvisional(code int, within time.Duration) *sip.Response {
	u.Phone.T.Helper()
	for _, r := range u.Provisional {
		if r.StatusCode == code {
			return r
		}
	}
	deadline := time.After(within)
	for {
		select {
		case res := <-u.Tx.Responses():
			if res.IsProvisional() {
				u.Provisional = append(u.Provisional, res)
				if res.StatusCode == code {
					return res
				}
				continue
			}
			u.Final = res
			u.Phone.T.Fatalf("%s: final %d before %d", u.Phone.Name, res.StatusCode, code)
		case <-deadline:
			u.Phone.T.Fatalf("%s: no %d within %v", u.Phone.Name, code, within)
			return nil
		}
	}
}

// InDialog builds an in-dialog request after the 2xx (ACK takes the INVITE's CSeq); a body
// is sent as application/sdp.
func (u *UAC) InDialog(method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Request {
	res := u.Final
	req := sip.NewRequest(method, *res.Contact().Address.Clone())
	req.AppendHeader(u.Phone.via())
	req.AppendHeader(sip.HeaderClone(u.Invite.From()))
	req.AppendHeader(sip.HeaderClone(res.To()))
	req.AppendHeader(sip.HeaderClone(u.Invite.CallID()))
	if method == sip.ACK {
		req.AppendHeader(&sip.CSeqHeader{SeqNo: u.Invite.CSeq().SeqNo, MethodName: sip.ACK})
	} else {
		u.cseq++
		req.AppendHeader(&sip.CSeqHeader{SeqNo: u.cseq, MethodName: method})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(u.Invite.Contact()))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	req.SetBody(body) // Content-Length: 0 without a body, which stream transports need
	req.SetTransport(u.Phone.Transport)
	req.SetDestination(u.Invite.Destination())
	return req
}

// Ack acknowledges the 2xx.
func (u *UAC) Ack() {
	u.Phone.T.Helper()
	if err := u.Phone.Client.WriteRequest(u.InDialog(sip.ACK, nil), NoopBuild); err != nil {
		u.Phone.T.Fatalf("ACK: %v", err)
	}
}

// Request sends an in-dialog request and returns its final response.
func (u *UAC) Request(method sip.RequestMethod, body []byte, hdrs ...sip.Header) *sip.Response {
	u.Phone.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := u.Phone.Client.Do(ctx, u.InDialog(method, body, hdrs...), NoopBuild)
	if err != nil {
		u.Phone.T.Fatalf("%s %s: %v", u.Phone.Name, method, err)
	}
	return res
}

// Bye hangs up and returns the BYE's status.
func (u *UAC) Bye() int {
	u.Phone.T.Helper()
	return u.Request(sip.BYE, nil).StatusCode
}

// Cancel sends CANCEL for the INVITE and returns its response.
func (u *UAC) Cancel() *sip.Response {
	u.Phone.T.Helper()
	inv := u.Invite
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.SetBody(nil)
	c.SetTransport(u.Phone.Transport)
	c.SetDestination(inv.Destination())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := u.Phone.Client.Do(ctx, c, NoopBuild)
	if err != nil {
		u.Phone.T.Fatalf("CANCEL: %v", err)
	}
	return res
}

// TransportParam returns ";transport=tcp" or ";transport=tls" for a stream transport, "" for UDP.
func TransportParam(transport string) string {
	if strings.EqualFold(transport, "UDP") {
		return ""
	}
	return ";transport=" + strings.ToLower(transport)
}
