package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/siptest"
)

// register sends a REGISTER for number from ua over transport to sipsvc, with the given
// Request-URI and To scheme, one Contact and extra headers, answers the 401 challenge with
// phonePassword (MD5, the registrar's default), and returns the final response.
func register(t *testing.T, s *stack, ua *phone, transport, scheme, number, contact string, hdrs ...sip.Header) *sip.Response {
	t.Helper()
	var ruri, aor, cu sip.Uri
	must(t, sip.ParseUri(scheme+":"+s.sipAddr(transport), &ruri))
	must(t, sip.ParseUri(scheme+":"+number+"@127.0.0.1", &aor))
	req := sip.NewRequest(sip.REGISTER, ruri)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: transport, Host: "127.0.0.1", Port: ua.Port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader("reg-" + sip.GenerateTagN(8))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if strings.HasPrefix(contact, "<") { // a whole Contact value, with header parameters
		req.AppendHeader(sip.NewHeader("Contact", contact))
	} else {
		must(t, sip.ParseUri(contact, &cu))
		req.AppendHeader(&sip.ContactHeader{Address: cu})
	}
	req.AppendHeader(sip.NewHeader("Expires", "600"))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody(nil)
	req.SetTransport(transport)
	req.SetDestination(s.sipAddr(transport))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ua.Client.Do(ctx, req, siptest.NoopBuild)
	if err != nil {
		t.Fatalf("REGISTER: %v", err)
	}
	if res.StatusCode != 401 {
		return res
	}
	// Answer the challenge on the same flow: same Via host and port, new branch.
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatalf("REGISTER challenge: %v", err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: ruri.Addr(), Username: number,
		Password: phonePassword(number), Count: 1, Cnonce: sip.GenerateTagN(8)})
	if err != nil {
		t.Fatalf("REGISTER digest: %v", err)
	}
	req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	req.CSeq().SeqNo++
	via.Params.Add("branch", sip.GenerateBranch())
	res, err = ua.Client.Do(ctx, req, siptest.NoopBuild)
	if err != nil {
		t.Fatalf("REGISTER with credentials: %v", err)
	}
	return res
}

// TestRFC3327_PathIsPreloadedRoute: a device registers through an edge proxy that added Path
// entries; a call to the device then goes to the first Path entry (the edge), not to the
// device's contact nor over the REGISTER's connection (R33), with a Route set equal to the
// Path, in order (RFC 3327 §5.4, RFC 3261 §8.1.2 preloaded route, loose routing). A sips
// binding with a sips Path stays on TLS (R28, R35) and keeps its sips Request-URI.
func TestRFC3327_PathIsPreloadedRoute(t *testing.T) {
	tests := []struct {
		name      string
		transport string // of the REGISTER and of the edge
		scheme    string // of the Request-URI, To, Contact and Path
		contact   string // the device's Contact; %s is not used
		core      string // a second Path entry, never contacted
	}{
		{"R28_R35_sips_binding_sips_path_stays_on_TLS", "TLS", "sips", "sips:7789@127.0.0.1:5999", "sips:core.example.net;lr"},
		{"RFC3327_sip_binding_sip_path_over_TCP", "TCP", "sip", "sip:7789@127.0.0.1:5999;transport=tcp", "sip:core.example.net;transport=tcp;lr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startStack(t, stackOptions{})
			s.addDN(dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*"})
			edge := newPhone(t, "edge", tc.transport) // stands in for the proxy and the device behind it
			edge.setAnswer(answerOK)
			device := newPhone(t, "7789", tc.transport)
			edgeURI := tc.scheme + ":" + edge.Addr + ";lr"
			if tc.transport == "TCP" {
				edgeURI = "sip:" + edge.Addr + ";transport=tcp;lr"
			}
			res := register(t, s, device, tc.transport, tc.scheme, "7789", tc.contact,
				sip.NewHeader("Path", "<"+edgeURI+">, <"+tc.core+">"), sip.NewHeader("Supported", "path"))
			if res.StatusCode != 200 {
				t.Fatalf("REGISTER → %d %s", res.StatusCode, res.Reason)
			}
			wantPath := []string{"<" + edgeURI + ">", "<" + tc.core + ">"}
			var echoed []string
			for _, h := range res.GetHeaders("Path") {
				echoed = append(echoed, h.Value())
			}
			if !slices.Equal(echoed, wantPath) {
				t.Errorf("RFC 3327 §5.3: 200 Path = %q, want %q", echoed, wantPath)
			}

			caller := newPhone(t, "alice", "UDP")
			call := caller.invite(s, "7789", inviteOpts{})
			if final := call.Wait(5 * time.Second); final.StatusCode != 200 {
				t.Fatalf("call → %d", final.StatusCode)
			}
			call.Ack()
			inv := edge.WaitRequest(sip.INVITE, 1, 3*time.Second)
			var routes []string
			for _, h := range inv.GetHeaders("Route") {
				routes = append(routes, h.Value())
			}
			if !slices.Equal(routes, wantPath) {
				t.Errorf("RFC 3327 §5.4: INVITE Route = %q, want %q", routes, wantPath)
			}
			if inv.Recipient.Scheme != tc.scheme || inv.Recipient.Port != 5999 {
				t.Errorf("INVITE Request-URI %s: want the device's %s contact", inv.Recipient.String(), tc.scheme)
			}
			if inv.Via().Transport != tc.transport || inv.Transport() != tc.transport {
				t.Errorf("R35: INVITE Via %s over %s, want %s", inv.Via().Transport, inv.Transport(), tc.transport)
			}
			if n := device.Count(sip.INVITE); n != 0 {
				t.Errorf("R33 flow reuse bypassed the Path: the device got %d INVITEs directly", n)
			}
			if code := call.Bye(); code != 200 {
				t.Errorf("BYE → %d", code)
			}
		})
	}
}
