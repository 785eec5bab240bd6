package signaling

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// sipsCall sets up a sips call over TLS on both legs: alice (sips R-URI over TLS) → DN 5000
// whose contact is bob's sips URI.
func sipsCall(t *testing.T) (*b2bua, *phone, *phone, *uac, *sip.Request, CallInfo) {
	t.Helper()
	bob := newPhone(t, "bob", "TLS")
	b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr)})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "5000", inviteOpts{
		ruri: fmt.Sprintf("sips:5000@%s", b.tlsA), from: "sips:alice@127.0.0.1", contact: fmt.Sprintf("sips:alice@%s", alice.Addr),
	})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	ci := onlyCall(t, b, CallFilter{DN: "5000"})
	for _, l := range ci.Legs {
		if !l.Decision.Secure {
			t.Fatalf("leg %s of the sips call is not secure: %+v", l.ID, l.Decision)
		}
	}
	return b, alice, bob, call, inv, ci
}

// TestSipsDialog_RequestsOverInsecureTransportRefused_R4_R25_T6_P11: requests of a sips dialog
// must arrive over TLS. A re-INVITE (with a new c= address) or a BYE for the TLS call sent
// over UDP or TCP gets 480 + Warning 380, is not relayed, and does not end the call.
func TestSipsDialog_RequestsOverInsecureTransportRefused_R4_R25_T6_P11(t *testing.T) {
	b, alice, bob, call, _, ci := sipsCall(t)
	moved := []byte(strings.Replace(testSDP, "c=IN IP4 127.0.0.1", "c=IN IP4 192.0.2.66", 1))
	for _, tp := range []string{"UDP", "TCP"} {
		other := newPhone(t, "alice", tp) // the caller's identity, another transport
		for _, m := range []sip.RequestMethod{sip.INVITE, sip.BYE} {
			t.Run(tp+" "+string(m), func(t *testing.T) {
				var body []byte
				if m == sip.INVITE {
					body = moved
				}
				res := sendFrom(t, other, call.InDialog(m, body), b.addr(tp))
				if res.StatusCode != 480 || !strings.Contains(hdr(res, "Warning"), `380 sipsvc "SIPS Not Allowed"`) {
					t.Fatalf("got %d Warning %q, want 480 + 380", res.StatusCode, hdr(res, "Warning"))
				}
			})
		}
	}
	if n := bob.Count(sip.INVITE); n != 1 {
		t.Errorf("bob got %d INVITEs: a refused re-INVITE was relayed", n)
	}
	if n := bob.Count(sip.BYE) + alice.Count(sip.BYE); n != 0 {
		t.Errorf("a BYE over an insecure transport ended the call")
	}
	if got, err := b.s.GetCall(context.Background(), ci.ID); err != nil || got.State != StateTalking {
		t.Fatalf("call after the refused requests: %+v %v", got, err)
	}
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE over TLS → %d", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestSipsDialog_BestEffortTLSIsNotSecure_R7_R25: a sip: Request-URI over TLS is best-effort
// TLS, not a secure dialog, so a BYE for it over UDP is not refused for its transport.
func TestSipsDialog_BestEffortTLSIsNotSecure_R7_R25(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("6000", bob))
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "6000", inviteOpts{ruri: fmt.Sprintf("sip:6000@%s;transport=tls", b.tlsA)})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	ci := onlyCall(t, b, CallFilter{DN: "6000"})
	if ci.Legs[0].Decision.Secure {
		t.Fatalf("leg A of sip: over TLS is secure: %+v", ci.Legs[0].Decision)
	}
	if res := sendFrom(t, newPhone(t, "alice", "UDP"), call.InDialog(sip.BYE, nil), b.udp); res.StatusCode != 200 {
		t.Fatalf("BYE over UDP for a best-effort TLS call → %d, want 200", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
}

// TestSipsDialog_SipContactTargetRefresh400_R21_R23_R24: a target refresh (re-INVITE, UPDATE)
// in a sips dialog whose Contact is sip: (sip:…;transport=tls) would downgrade the dialog: it
// gets 400, is not relayed, and the next request to that party still goes to its sips URI.
// From the caller (leg A) and from the callee (leg B).
func TestSipsDialog_SipContactTargetRefresh400_R21_R23_R24(t *testing.T) {
	b, alice, bob, call, inv, _ := sipsCall(t)
	bobCSeq := uint32(10)
	tests := []struct {
		name string
		send func() *sip.Response
	}{
		{"re-INVITE from A's peer", func() *sip.Response {
			req := call.InDialog(sip.INVITE, []byte(testSDP))
			req.ReplaceHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "7789", Host: "127.0.0.1", Port: alice.Port(), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
			return sendFrom(t, alice, req, b.tlsA)
		}},
		{"UPDATE from A's peer", func() *sip.Response {
			req := call.InDialog(sip.UPDATE, nil)
			req.ReplaceHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "7789", Host: "127.0.0.1", Port: alice.Port(), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
			return sendFrom(t, alice, req, b.tlsA)
		}},
		{"re-INVITE from B's peer", func() *sip.Response {
			bobCSeq++
			return sendFrom(t, bob, calleeRequest(bob, inv, sip.INVITE, bobCSeq, fmt.Sprintf("sip:7789@%s;transport=tls", bob.Addr), []byte(testSDP)), b.tlsA)
		}},
		{"UPDATE from B's peer", func() *sip.Response {
			bobCSeq++
			return sendFrom(t, bob, calleeRequest(bob, inv, sip.UPDATE, bobCSeq, fmt.Sprintf("sip:7789@%s;transport=tls", bob.Addr), nil), b.tlsA)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := tt.send(); res.StatusCode != 400 {
				t.Fatalf("got %d, want 400", res.StatusCode)
			}
		})
	}
	if n := bob.Count(sip.INVITE) + bob.Count(sip.UPDATE) + alice.Count(sip.INVITE) + alice.Count(sip.UPDATE); n != 1 {
		t.Errorf("%d INVITE/UPDATEs reached the phones, want only the first INVITE", n)
	}
	// The dialogs are unchanged: requests to both parties still go to their sips targets.
	if res := call.Request(sip.INFO, []byte("to bob")); res.StatusCode != 200 {
		t.Fatalf("INFO from alice → %d", res.StatusCode)
	}
	if got := bob.WaitRequest(sip.INFO, 1, 2*time.Second); got.Recipient.Scheme != "sips" || got.Transport() != "TLS" {
		t.Errorf("INFO to bob: %s over %s", got.Recipient.String(), got.Transport())
	}
	bobCSeq++
	if res := sendFrom(t, bob, calleeRequest(bob, inv, sip.INFO, bobCSeq, "", []byte("to alice")), b.tlsA); res.StatusCode != 200 {
		t.Fatalf("INFO from bob → %d", res.StatusCode)
	}
	if got := alice.WaitRequest(sip.INFO, 1, 2*time.Second); got.Recipient.Scheme != "sips" || got.Transport() != "TLS" {
		t.Errorf("INFO to alice: %s over %s", got.Recipient.String(), got.Transport())
	}
	call.Request(sip.BYE, nil)
}

// TestR9_SipsRecordRouteMakesOurContactSips_P6: the callee on UDP answers with
// `Record-Route: <sips:proxy;lr>`: the leg now runs over TLS, and the re-INVITE sipsvc sends
// on it (an API hold) carries a sips Contact on our TLS listener, not sip: on UDP.
func TestR9_SipsRecordRouteMakesOurContactSips_P6(t *testing.T) {
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
	proxy.WaitRequest(sip.ACK, 1, 3*time.Second)
	ci := onlyCall(t, b, CallFilter{DN: "6000"})
	if err := b.s.HoldCall(context.Background(), ci.ID, "B1"); err != nil {
		t.Fatalf("hold: %v", err)
	}
	reinv := proxy.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if reinv.Transport() != "TLS" {
		t.Errorf("re-INVITE over %s, want TLS to the sips route", reinv.Transport())
	}
	_, tlsPort, _ := net.SplitHostPort(b.tlsA)
	ct := reinv.Contact()
	if ct == nil || ct.Address.Scheme != "sips" || strconv.Itoa(ct.Address.Port) != tlsPort {
		t.Fatalf("R9: re-INVITE Contact %v, want sips on our TLS port %s", ct, tlsPort)
	}
	if _, ok := ct.Address.UriParams.Get("transport"); ok {
		t.Errorf("R6: transport parameter on a sips Contact: %s", ct.Address.String())
	}
	call.Request(sip.BYE, nil)
}

// TestR25_SecureFlagDerived: a leg's "secure" flag is derived from what went over the wire:
// as UAS, the request arrived over TLS and its Request-URI is sips; as UAC, we sent it over
// TLS to a sips Request-URI. sip: over TLS (R7, P4 style) and a sips Record-Route alone are
// not secure.
func TestR25_SecureFlagDerived(t *testing.T) {
	tests := []struct {
		name      string
		caller    string // caller transport
		ruri      string // "%s" is the B2BUA's address on that transport
		headers   func(alice *phone) []sip.Header
		dnContact func(bob *phone) string
		bobTP     string
		style     dn.Style
		wantA     bool
		wantB     bool
	}{
		{name: "sips over TLS both legs", caller: "TLS", ruri: "sips:5000@%s", bobTP: "TLS",
			dnContact: func(bob *phone) string { return "sips:5000@" + bob.Addr }, wantA: true, wantB: true},
		{name: "sip over TLS (best effort)", caller: "TLS", ruri: "sip:5000@%s;transport=tls", bobTP: "UDP",
			dnContact: func(bob *phone) string { return bob.ContactURI("5000", "sip") }},
		{name: "sip R-URI over TLS with a sips Record-Route", caller: "TLS", ruri: "sip:5000@%s;transport=tls", bobTP: "UDP",
			headers: func(alice *phone) []sip.Header {
				return []sip.Header{sip.NewHeader("Record-Route", "<sips:"+alice.Addr+";lr>")}
			},
			dnContact: func(bob *phone) string { return bob.ContactURI("5000", "sip") }},
		{name: "plain caller, sips DN (B leg secure)", caller: "UDP", ruri: "sip:5000@%s", bobTP: "TLS",
			dnContact: func(bob *phone) string { return "sips:5000@" + bob.Addr }, wantB: true},
		{name: "sips DN in sip;transport=tls style (P4)", caller: "UDP", ruri: "sip:5000@%s", bobTP: "TLS", style: dn.StyleSIPTransportTLS,
			dnContact: func(bob *phone) string { return "sips:5000@" + bob.Addr }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bob := newPhone(t, "bob", tt.bobTP)
			b := startB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: tt.dnContact(bob), Style: tt.style})
			alice := newPhone(t, "alice", tt.caller)
			o := inviteOpts{ruri: fmt.Sprintf(tt.ruri, b.addr(tt.caller))}
			if strings.HasPrefix(tt.ruri, "sips:") {
				o.from, o.contact = "sips:alice@127.0.0.1", "sips:alice@"+alice.Addr
			}
			if tt.headers != nil {
				o.headers = tt.headers(alice)
			}
			call := alice.invite(b, "5000", o)
			if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
				t.Fatalf("final %d", res.StatusCode)
			}
			call.Ack()
			inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second)
			ci := onlyCall(t, b, CallFilter{DN: "5000"})
			if len(ci.Legs) != 2 {
				t.Fatalf("legs %+v", ci.Legs)
			}
			if got := ci.Legs[0].Decision.Secure; got != tt.wantA {
				t.Errorf("leg A secure = %v, want %v (arrived over %s to %s)", got, tt.wantA, tt.caller, call.Invite.Recipient.String())
			}
			if got := ci.Legs[1].Decision.Secure; got != tt.wantB {
				t.Errorf("leg B secure = %v, want %v (sent over %s to %s)", got, tt.wantB, inv.Transport(), inv.Recipient.String())
			}
			if d := b.rec.decision("B1"); d == nil || d.Secure != tt.wantB {
				t.Errorf("B1 scheme-decided event %+v, want Secure %v", d, tt.wantB)
			}
			call.Request(sip.BYE, nil)
		})
	}
}

// TestDialogRefusal_SpanAttribute: a refused in-dialog request is marked on its server
// transaction span with sipsvc.dialog.refusal naming the rule: R25 for a sips dialog's BYE
// over UDP, R24 for a sip Contact in a target refresh, cseq for an out-of-order CSeq.
func TestDialogRefusal_SpanAttribute(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr)})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "5000", inviteOpts{
		ruri: fmt.Sprintf("sips:5000@%s", b.tlsA), from: "sips:alice@127.0.0.1", contact: fmt.Sprintf("sips:alice@%s", alice.Addr),
	})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	// A sips Request-URI over UDP is refused by the edge guard before any dialog is looked
	// up; with a sip: Request-URI the BYE passes the guard and must be refused by the
	// dialog's own check (a sips dialog takes requests over TLS only, R25).
	bye := call.InDialog(sip.BYE, nil)
	bye.Recipient.Scheme = "sip"
	if res := sendFrom(t, newPhone(t, "alice", "UDP"), bye, b.udp); res.StatusCode != 480 {
		t.Fatalf("BYE over UDP → %d", res.StatusCode)
	}
	refresh := call.InDialog(sip.UPDATE, nil)
	refresh.ReplaceHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: alice.Port(), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
	if res := sendFrom(t, alice, refresh, b.tlsA); res.StatusCode != 400 {
		t.Fatalf("UPDATE with a sip Contact → %d", res.StatusCode)
	}
	high := call.InDialog(sip.INFO, nil)
	high.CSeq().SeqNo = 50
	if res := sendFrom(t, alice, high, b.tlsA); res.StatusCode != 200 {
		t.Fatalf("INFO 50 → %d", res.StatusCode)
	}
	old := call.InDialog(sip.INFO, nil)
	old.CSeq().SeqNo = 49
	if res := sendFrom(t, alice, old, b.tlsA); res.StatusCode != 500 {
		t.Fatalf("INFO 49 after 50 → %d", res.StatusCode)
	}
	hangUp(t, alice, call, b.tlsA, 100)
	got := map[string]string{}
	for _, s := range sink.wait(t, 1) {
		if v := s.Str(string(attrDialogRefusal)); v != "" {
			got[s.Str(string(sc.AttrSIPMethod))] = v
		}
	}
	want := map[string]string{"BYE": "R25", "UPDATE": "R24", "INFO": "cseq"}
	for m, rule := range want {
		if got[m] != rule {
			t.Errorf("%s span refusal %q, want %q (all: %v)", m, got[m], rule, got)
		}
	}
}
