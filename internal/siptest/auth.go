package siptest

import (
	"context"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Authenticate answers the 407 (or 401) challenge res to the UAC's INVITE as a caller with
// username and password would: it resends the INVITE with the same Call-ID, From tag and
// Request-URI, CSeq one higher, a new Via branch and Proxy-Authorization (Authorization for
// a 401) credentials (RFC 3261 §22.2, §22.3), and returns the new INVITE's UAC.
func (u *UAC) Authenticate(res *sip.Response, username, password string) *UAC {
	p := u.Phone
	p.T.Helper()
	chName, credName := "Proxy-Authenticate", "Proxy-Authorization"
	if res.StatusCode == 401 {
		chName, credName = "WWW-Authenticate", "Authorization"
	}
	h := res.GetHeader(chName)
	if h == nil {
		p.T.Fatalf("%s: %d %s carries no %s", p.Name, res.StatusCode, res.Reason, chName)
		return nil
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		p.T.Fatalf("%s: %s: %v", p.Name, chName, err)
		return nil
	}
	inv := u.Invite.Clone()
	cred, err := digest.Digest(chal, digest.Options{Method: string(sip.INVITE), URI: inv.Recipient.String(),
		Username: username, Password: password, Count: 1, Cnonce: sip.GenerateTagN(8)})
	if err != nil {
		p.T.Fatalf("%s: digest: %v", p.Name, err)
		return nil
	}
	inv.RemoveHeader("Via")
	inv.PrependHeader(p.via())
	inv.RemoveHeader(credName)
	inv.AppendHeader(sip.NewHeader(credName, cred.String()))
	inv.CSeq().SeqNo = u.cseq + 1
	inv.SetTransport(u.Invite.Transport())
	inv.SetDestination(u.Invite.Destination())
	tx, err := p.Client.TransactionRequest(context.Background(), inv, NoopBuild)
	if err != nil {
		p.T.Fatalf("%s INVITE with credentials: %v", p.Name, err)
		return nil
	}
	return &UAC{Phone: p, Invite: inv, Tx: tx, cseq: u.cseq + 1}
}
