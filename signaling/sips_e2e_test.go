package signaling

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// TestT2_SipsALegPlainBLeg_PerLeg: a sips caller reaches a plain sip DN; leg A keeps sips
// (R22) while leg B is sip over UDP (per-leg policy, R14 exception recorded).
func TestT2_SipsALegPlainBLeg_PerLeg_R22_R14(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "6000", inviteOpts{
		ruri: fmt.Sprintf("sips:6000@%s", b.tlsA), from: "sips:alice@127.0.0.1",
		contact: fmt.Sprintf("sips:alice@%s", alice.Addr),
	})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 || res.Contact().Address.Scheme != "sips" {
		t.Fatalf("A got %d contact %v, want 200 with sips Contact (R22)", res.StatusCode, res.Contact())
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	for name, u := range map[string]sip.Uri{"Request-URI": inv.Recipient, "From": inv.From().Address, "To": inv.To().Address, "Contact": inv.Contact().Address} {
		if u.Scheme != "sip" {
			t.Errorf("B-leg %s = %s, want sip:", name, u.String())
		}
	}
	if inv.Via().Transport != "UDP" {
		t.Errorf("B-leg Via %s", inv.Via().Transport)
	}
	rw := b.rec.rewrites("B1")
	if rw["From"].Rule != "R14" || !strings.HasPrefix(rw["From"].Before, "sips:") || !strings.HasPrefix(rw["From"].After, "sip:") {
		t.Errorf("From rewrite %+v", rw["From"])
	}
	if v := rw["Via"]; v.Before != "SIP/2.0/TLS" || v.After != "SIP/2.0/UDP" {
		t.Errorf("Via rewrite %+v", v)
	}
	// R24: an in-dialog request toward A keeps the sips Contact. B hangs up: A gets BYE.
	bye := byeFromPhone(t, bob, inv)
	if bye != 200 {
		t.Fatalf("BYE from B → %d", bye)
	}
	got := alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	if got.Recipient.Scheme != "sips" {
		t.Errorf("BYE to A R-URI %s: remote target was sips", got.Recipient.String())
	}
	if got.Contact() != nil && got.Contact().Address.Scheme != "sips" {
		t.Errorf("R24: BYE Contact %s", got.Contact().Address.String())
	}
}

func TestT2_SipsALegPlainDN_Strict_R19(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, func(c *Config) { c.Policy = dn.PolicyStrict }, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "6000", inviteOpts{ruri: fmt.Sprintf("sips:6000@%s", b.tlsA), from: "sips:alice@127.0.0.1", contact: fmt.Sprintf("sips:alice@%s", alice.Addr)})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 480 || !strings.Contains(hdr(res, "Warning"), `380`) || !strings.Contains(hdr(res, "Warning"), "SIPS Not Allowed") {
		t.Fatalf("strict: got %d Warning %q, want 480 + 380 SIPS Not Allowed", res.StatusCode, hdr(res, "Warning"))
	}
	if bob.Count(sip.INVITE) != 0 {
		t.Errorf("strict policy still sent a sip B-leg")
	}
}

// TestT3_PlainALegSipsDN: a plain caller reaches a sips-only DN: per-leg upgrades the B leg
// (R8); strict refuses with 480 + Warning 381 (R20).
func TestT3_PlainALegSipsDN_PerLeg_R8(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr)})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "5000", inviteOpts{})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	if res.Contact().Address.Scheme != "sip" {
		t.Errorf("A-leg Contact %s: plain caller must get sip (R7/R10)", res.Contact().Address.String())
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if inv.Recipient.Scheme != "sips" || inv.Contact().Address.Scheme != "sips" || inv.Via().Transport != "TLS" || inv.Transport() != "TLS" {
		t.Errorf("R8: B-leg %s Contact %s Via %s over %s", inv.Recipient.String(), inv.Contact().Address.String(), inv.Via().Transport, inv.Transport())
	}
	rw := b.rec.rewrites("B1")
	for _, h := range []string{"From", "To", "Contact", "Via"} {
		if rw[h].Rule != "R8" {
			t.Errorf("%s rewrite rule %q, want R8 (%+v)", h, rw[h].Rule, rw[h])
		}
	}
	if d := b.rec.decision("B1"); d.Reason != "dn contact sips" || d.Rule != "R3" || !d.Secure {
		t.Errorf("B1 decision %+v", d)
	}
	call.Request(sip.BYE, nil)
}

func TestT3_PlainALegSipsDN_Strict_R20(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr), Policy: dn.PolicyStrict})
	alice := newPhone(t, "alice", "UDP")
	res := alice.invite(b, "5000", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 480 || !strings.Contains(hdr(res, "Warning"), `381`) || !strings.Contains(hdr(res, "Warning"), "SIPS Required") {
		t.Fatalf("got %d %q, want 480 + Warning 381 SIPS Required", res.StatusCode, hdr(res, "Warning"))
	}
}

// TestT6_SipsRequestURIOverInsecureTransport: sips R-URI over UDP or TCP is refused with 480
// + Warning 380 (R4, T6, P11), never answered with a sips Contact.
func TestT6_SipsOverInsecure_R4(t *testing.T) {
	for _, tp := range []string{"UDP", "TCP"} {
		t.Run(tp, func(t *testing.T) {
			b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: "sip:5000@127.0.0.1:9"})
			alice := newPhone(t, "alice", tp)
			res := alice.invite(b, "5000", inviteOpts{ruri: fmt.Sprintf("sips:5000@%s", b.addr(tp)), contact: fmt.Sprintf("sips:alice@%s", alice.Addr)}).Wait(5 * time.Second)
			if res.StatusCode != 480 || !strings.Contains(hdr(res, "Warning"), "380") {
				t.Fatalf("got %d %q", res.StatusCode, hdr(res, "Warning"))
			}
		})
	}
}

func TestR21_SipsRequestURIWithSipContact_400(t *testing.T) {
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: "sip:5000@127.0.0.1:9"})
	alice := newPhone(t, "alice", "TLS")
	res := alice.invite(b, "5000", inviteOpts{ruri: fmt.Sprintf("sips:5000@%s", b.tlsA), contact: fmt.Sprintf("sip:alice@%s;transport=tls", alice.Addr)}).Wait(5 * time.Second)
	if res.StatusCode != 400 {
		t.Fatalf("got %d, want 400 (R21)", res.StatusCode)
	}
}

// TestR7_SipOverTLSStaysSip: best-effort TLS (sip: over TLS) keeps sip: Contacts (R7).
func TestR7_SipOverTLSStaysSip(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "6000", inviteOpts{ruri: fmt.Sprintf("sip:6000@%s;transport=tls", b.tlsA)})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 || res.Contact().Address.Scheme != "sip" {
		t.Fatalf("got %d contact %v", res.StatusCode, res.Contact())
	}
	if tp, _ := res.Contact().Address.UriParams.Get("transport"); tp != "tls" {
		t.Errorf("P5: Contact over TLS lacks transport=tls: %s", res.Contact().Address.String())
	}
	if d := b.rec.decision("A"); d.Rule != "R7" || d.Transport != "TLS" || d.Scheme != "sip" {
		t.Errorf("A decision %+v", d)
	}
	call.Ack()
	call.Request(sip.BYE, nil)
}

// TestP4_InteropStyleSipTransportTLS: a DN asking for sip:…;transport=tls gets that over TLS.
func TestP4_InteropStyleSipTransportTLS(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr), Style: dn.StyleSIPTransportTLS})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "5000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	tp, _ := inv.Recipient.UriParams.Get("transport")
	if inv.Recipient.Scheme != "sip" || tp != "tls" || inv.Transport() != "TLS" {
		t.Errorf("P4: got %s over %s", inv.Recipient.String(), inv.Transport())
	}
	call.Request(sip.BYE, nil)
}

// byeFromPhone makes the answering phone hang up the call it received.
func byeFromPhone(t *testing.T, p *phone, inv *sip.Request) int {
	t.Helper()
	req := sip.NewRequest(sip.BYE, inv.Contact().Address)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.Transport, Host: "127.0.0.1", Port: p.Port(), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	to := inv.From().AsTo()
	req.AppendHeader(&to)
	from := inv.To().AsFrom()
	from.Params = from.Params.Clone()
	from.Params.Add("tag", p.Name+"tag")
	req.AppendHeader(&from)
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 10, MethodName: sip.BYE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetTransport(p.Transport)
	req.SetDestination(inv.Source())
	res, err := p.Client.Do(t.Context(), req, prebuilt)
	if err != nil {
		t.Fatalf("BYE from %s: %v", p.Name, err)
	}
	return res.StatusCode
}

// TestR15_NoRetryAsSipAfter416: a sips leg B refused with 416 is relayed to the caller and
// never retried with a sip: URI.
func TestR15_NoRetryAsSipAfter416(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 416, "Unsupported URI Scheme", nil))
	})

	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr)})
	res := newPhone(t, "alice", "UDP").invite(b, "5000", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 416 {
		t.Fatalf("caller got %d, want the 416 relayed", res.StatusCode)
	}
	time.Sleep(200 * time.Millisecond)
	if n := bob.Count(sip.INVITE); n != 1 {
		t.Errorf("B got %d INVITEs, want exactly 1 (no automatic retry as sip:)", n)
	}
}

// TestR4_SipsTargetOverUDPRefused: a routing answer that asks for sips;transport=udp is
// refused rather than modified (RFC 3261 §19.1.5): the caller gets 480 naming R4.
func TestR4_SipsTargetOverUDPRefused(t *testing.T) {
	b := startB2BUA(t, func(c *Config) {
		c.Router = RouterFunc(func(context.Context, RouteRequest) (RouteDecision, error) {
			return RouteDecision{Targets: []Target{{URI: "sips:9@127.0.0.1:9;transport=udp"}}}, nil
		})
	})
	res := newPhone(t, "alice", "UDP").invite(b, "9", inviteOpts{}).Wait(5 * time.Second)
	if res.StatusCode != 480 || !strings.Contains(hdr(res, "Reason"), "R4") {
		t.Fatalf("got %d Reason %q, want 480 naming R4", res.StatusCode, hdr(res, "Reason"))
	}
	// A target that cannot be reached securely is a configuration failure, not an unavailable callee.
	if ev := b.rec.waitKind(t, EventCallEnded); ev.Outcome != OutcomeFailed {
		t.Errorf("outcome %q, want failed", ev.Outcome)
	}
}

// TestR35_SipsRecordRouteForcesTLS_P6: a callee on UDP whose 200 carries
// `Record-Route: <sips:proxy;lr>` puts its dialog behind a sips route: the ACK and the BYE on
// that leg go to the route over TLS, not over UDP (RFC 3261 §16.6 step 4, §12.1.2).
func TestR35_SipsRecordRouteForcesTLS_P6(t *testing.T) {
	proxy := newPhone(t, "proxy", "TLS")
	bob := newPhone(t, "bob", "UDP")
	rr := sip.NewHeader("Record-Route", "<sips:"+proxy.Addr+";lr>")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) { bob.OK(req, tx, []byte(testSDP), rr) })
	b := startB2BUA(t, nil, ext("6000", bob))
	call := newPhone(t, "alice", "UDP").invite(b, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	ack := proxy.WaitRequest(sip.ACK, 1, 3*time.Second)
	if ack.Transport() != "TLS" || ack.Via().Transport != "TLS" {
		t.Errorf("ACK went over %s (Via %s), want TLS to the sips route", ack.Transport(), ack.Via().Transport)
	}
	if r := ack.Route(); r == nil || r.Address.Scheme != "sips" {
		t.Errorf("ACK Route %v, want the sips route set", ack.Route())
	}
	if n := bob.Count(sip.ACK); n != 0 {
		t.Errorf("callee got %d ACKs straight over UDP", n)
	}
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
	if bye := proxy.WaitRequest(sip.BYE, 1, 3*time.Second); bye.Transport() != "TLS" {
		t.Errorf("BYE to B went over %s, want TLS to the sips route", bye.Transport())
	}
}
