package signaling

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

func TestBasicCallUDP(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "6000", inviteOpts{})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	if string(res.Body()) != testSDP {
		t.Errorf("answer SDP changed:\n%q", res.Body())
	}
	call.WaitProvisional(180, time.Second)
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if string(inv.Body()) != testSDP {
		t.Errorf("offer SDP changed")
	}
	if got := inv.CallID().Value(); got == call.Invite.CallID().Value() {
		t.Errorf("leg B reuses leg A's Call-ID")
	}
	if mf := inv.MaxForwards().Val(); mf != 69 {
		t.Errorf("Max-Forwards on B = %d, want 69", mf)
	}
	if inv.From().DisplayName != "alice display" || inv.From().Address.User != "alice" {
		t.Errorf("caller identity not carried: %s", inv.From().Value())
	}
	if inv.To().Address.User != "6000" {
		t.Errorf("To is not the target: %s", inv.To().Value())
	}
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	bye := call.Request(sip.BYE, nil)
	if bye.StatusCode != 200 {
		t.Fatalf("BYE → %d", bye.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	b.rec.waitKind(t, EventCallEnded)
	if n := len(b.s.ListCalls(nil, CallFilter{})); n != 0 {
		t.Errorf("%d calls left", n)
	}
}

// TestT1_SipsBothLegs follows docs/sips.md T1 with the seed's example INVITE: a sips A-leg over
// TLS, a DN whose contact is sips.
func TestT1_SipsBothLegs_R8_R22(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s;transport=tls", bob.Addr)})
	alice := newPhone(t, "7789", "TLS")
	call := alice.invite(b, "5000", inviteOpts{
		ruri:    fmt.Sprintf("sips:5000@%s;transport=TCP", b.tlsA),
		from:    "sips:7789@127.0.0.1",
		contact: fmt.Sprintf("sips:7789@%s;transport=TCP", alice.Addr),
		headers: []sip.Header{sip.NewHeader("Supported", "replaces,100rel,eventlist,timer"), sip.NewHeader("Session-Expires", "1800"), sip.NewHeader("Min-SE", "90")},
	})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("final %d %s", res.StatusCode, res.Reason)
	}
	if c := res.Contact(); c == nil || c.Address.Scheme != "sips" {
		t.Errorf("R22: 200 Contact = %v, want sips", res.Contact())
	}
	if se := hdr(res, "Session-Expires"); se != "1800;refresher=uas" {
		t.Errorf("Session-Expires = %q", se)
	}
	if r := call.Provisional; len(r) > 0 {
		for _, p := range r {
			if p.StatusCode == 180 && (p.Contact() == nil || p.Contact().Address.Scheme != "sips") {
				t.Errorf("R22: 180 Contact = %v, want sips", p.Contact())
			}
		}
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if inv.Recipient.Scheme != "sips" || inv.From().Address.Scheme != "sips" || inv.To().Address.Scheme != "sips" || inv.Contact().Address.Scheme != "sips" {
		t.Errorf("R8: B-leg URIs not sips: %s / %s / %s / %s", inv.Recipient.String(), inv.From().Value(), inv.To().Value(), inv.Contact().Value())
	}
	if _, ok := inv.Recipient.UriParams.Get("transport"); ok {
		t.Errorf("R6: transport param emitted on sips R-URI: %s", inv.Recipient.String())
	}
	if v := inv.Via(); v.Transport != "TLS" {
		t.Errorf("R8: Via transport %s", v.Transport)
	}
	if inv.Transport() != "TLS" {
		t.Errorf("B-leg arrived over %s", inv.Transport())
	}
	d := b.rec.decision("B1")
	if d == nil || d.Scheme != "sips" || d.Transport != "TLS" {
		t.Fatalf("B1 decision %+v", d)
	}
	if d := b.rec.decision("A"); d == nil || d.Scheme != "sips" || d.Rule != "R22" {
		t.Errorf("A decision %+v", d)
	}
	rw := b.rec.rewrites("B1")
	if r, ok := rw["Request-URI"]; !ok || r.Rule != "R6" || !strings.Contains(r.Before, "transport=tls") {
		t.Errorf("R6 rewrite missing: %+v", rw)
	}
	if bye := call.Request(sip.BYE, nil); bye.StatusCode != 200 {
		t.Errorf("BYE %d", bye.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
}
