package signaling

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// sipsExt is a DN reached with sips over TLS at a TLS phone.
func sipsExt(number string, p *phone, policy dn.Policy) dn.DN {
	return dn.DN{Number: number, Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:%s@%s", number, p.Addr), Policy: policy}
}

// TestR11_R37_SipsContactOverTCPReachedOverTLS (issue 13): a caller with a sip: Request-URI
// and a sips: Contact over plain TCP gets a sips Contact (R22), and the requests sipsvc later
// sends to that sips URI go over TLS to it, with Via TLS, never back over the plain TCP
// connection (R11, R37: a sips URI is reached over TLS, or not at all).
func TestR11_R37_SipsContactOverTCPReachedOverTLS(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("6000", bob))
	alice := newPhone(t, "alice", "TCP")
	aliceTLS := newPhone(t, "alice", "TLS") // where alice's sips Contact points
	call := alice.invite(b, "6000", inviteOpts{contact: fmt.Sprintf("sips:alice@%s", aliceTLS.Addr)})
	res := call.Wait(5 * time.Second)
	if res.StatusCode != 200 || res.Contact().Address.Scheme != "sips" {
		t.Fatalf("A got %d Contact %v, want 200 with a sips Contact (R22)", res.StatusCode, res.Contact())
	}
	call.Ack()
	if d := b.rec.decision("A"); d == nil || d.Transport != "TLS" || d.Secure || d.Scheme != "sips" {
		t.Errorf("leg A decision %+v: want sips reached over TLS, not secure (sip Request-URI, R25)", d)
	}
	bob.WaitRequest(sip.INVITE, 1, time.Second)
	ci := b.s.ListCalls(context.Background(), CallFilter{})
	if len(ci) != 1 {
		t.Fatalf("%d calls", len(ci))
	}
	waitState(t, b, ci[0].ID, StateTalking)
	if err := b.s.ReleaseCall(context.Background(), ci[0].ID); err != nil {
		t.Fatal(err)
	}
	bye := aliceTLS.WaitRequest(sip.BYE, 1, 3*time.Second)
	if bye.Transport() != "TLS" || bye.Via().Transport != "TLS" || bye.Recipient.Scheme != "sips" {
		t.Errorf("BYE to A: %s over %s, Via %s; want sips over TLS (R11)", bye.Recipient.String(), bye.Transport(), bye.Via().Transport)
	}
	if n := alice.Count(sip.BYE); n != 0 {
		t.Errorf("R37: %d BYE to the sips Contact went over plain TCP", n)
	}
}

// TestStrictPolicyFollowsRequestURI (issue 13): under the strict policy what the caller asked
// for is its Request-URI scheme and the transport it used (RFC 5630 §4, R19, R20, R38), not
// its Contact: over real sockets, with the decisions made from the INVITEs themselves.
func TestStrictPolicyFollowsRequestURI_R19_R20(t *testing.T) {
	tests := []struct {
		name       string
		callerTP   string
		sipsDN     bool // the strict DN is reached with sips (else sip)
		sipsCtc    bool // the caller's Contact is sips
		wantStatus int
		wantWarn   string
	}{
		{"R20_tcp_caller_sips_contact_to_strict_sips_DN_480_381", "TCP", true, true, 480, `381`},
		{"R19_udp_caller_sips_contact_to_strict_sip_DN_bridged", "UDP", false, true, 200, ""},
		{"R7_R20_sip_over_tls_to_strict_sips_DN_480_381", "TLS", true, false, 480, `381`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var bob *phone
			var d dn.DN
			if tc.sipsDN {
				bob = newPhone(t, "bob", "TLS")
				d = sipsExt("5000", bob, dn.PolicyStrict)
			} else {
				bob = newPhone(t, "bob", "UDP")
				d = ext("5000", bob)
				d.Policy = dn.PolicyStrict
			}
			b := startB2BUA(t, nil, d)
			alice := newPhone(t, "alice", tc.callerTP)
			o := inviteOpts{}
			if tc.sipsCtc {
				o.contact = fmt.Sprintf("sips:alice@%s", alice.Addr)
			}
			call := alice.invite(b, "5000", o)
			res := call.Wait(5 * time.Second)
			if res.StatusCode != tc.wantStatus || !strings.Contains(hdr(res, "Warning"), tc.wantWarn) {
				t.Fatalf("got %d Warning %q, want %d %q", res.StatusCode, hdr(res, "Warning"), tc.wantStatus, tc.wantWarn)
			}
			if a := b.rec.decision("A"); a == nil || a.Secure {
				t.Errorf("leg A decision %+v: a sip Request-URI is never secure (R25)", a)
			}
			if tc.wantStatus != 200 {
				if n := bob.Count(sip.INVITE); n != 0 {
					t.Errorf("strict policy still sent %d INVITE to the DN", n)
				}
				return
			}
			call.Ack()
			call.Request(sip.BYE, nil)
		})
	}
}

// TestMakeCall_StrictSipsDNs_R14 (issue 13): a third-party call between two sips DNs under
// the strict policy rings both over TLS with sips (both legs secure); one from a strict sips
// DN to a sip DN is refused before anyone rings (R19), and so is one from a sip DN to a
// strict sips DN (R20).
func TestMakeCall_StrictSipsDNs_R14(t *testing.T) {
	t.Run("R14_sips_to_sips_allowed", func(t *testing.T) {
		alice, bob := newPhone(t, "alice", "TLS"), newPhone(t, "bob", "TLS")
		b := startB2BUA(t, func(c *Config) { c.Policy = dn.PolicyStrict }, sipsExt("5002", alice, ""), sipsExt("5000", bob, dn.PolicyStrict))
		ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "5002", To: "5000"})
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, b, ci.ID, StateTalking)
		for _, p := range []*phone{alice, bob} {
			inv := p.WaitRequest(sip.INVITE, 1, time.Second)
			if inv.Recipient.Scheme != "sips" || inv.Transport() != "TLS" || inv.Via().Transport != "TLS" {
				t.Errorf("%s: INVITE %s over %s, want sips over TLS", p.Name, inv.Recipient.String(), inv.Transport())
			}
		}
		for _, leg := range []string{"B1", "B2"} {
			if d := b.rec.decision(leg); d == nil || !d.Secure {
				t.Errorf("leg %s decision %+v, want secure", leg, d)
			}
		}
		if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("R19_strict_sips_origin_to_sip_DN_refused", func(t *testing.T) {
		alice, carol := newPhone(t, "alice", "TLS"), newPhone(t, "carol", "UDP")
		b := startB2BUA(t, nil, sipsExt("5002", alice, dn.PolicyStrict), ext("6000", carol))
		ci, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "5002", To: "6000"})
		if err != nil {
			t.Fatal(err)
		}
		ev := b.rec.waitKind(t, EventCallEnded)
		if !strings.Contains(ev.Cause, "R19") || ev.Outcome != OutcomeRejected {
			t.Errorf("call %s ended %q (%s), want the R19 refusal named, outcome rejected", ci.ID, ev.Cause, ev.Outcome)
		}
		if n := alice.Count(sip.INVITE) + carol.Count(sip.INVITE); n != 0 {
			t.Errorf("R19: %d INVITEs for a pair the strict policy refuses", n)
		}
	})
	t.Run("R20_sip_origin_to_strict_sips_DN_refused", func(t *testing.T) {
		carol, bob := newPhone(t, "carol", "UDP"), newPhone(t, "bob", "TLS")
		b := startB2BUA(t, nil, ext("6000", carol), sipsExt("5000", bob, dn.PolicyStrict))
		if _, err := b.s.MakeCall(context.Background(), MakeCallRequest{From: "6000", To: "5000"}); err != nil {
			t.Fatal(err)
		}
		if ev := b.rec.waitKind(t, EventCallEnded); !strings.Contains(ev.Cause, "R20") {
			t.Errorf("call ended %q, want the R20 refusal named", ev.Cause)
		}
		if n := carol.Count(sip.INVITE) + bob.Count(sip.INVITE); n != 0 {
			t.Errorf("R20: %d INVITEs for a pair the strict policy refuses", n)
		}
	})
}

// connected places a call from a phone to a DN and waits until it talks; it returns the
// call's id.
func connected(t *testing.T, b *b2bua, from *phone, user string, o inviteOpts) (*uac, string) {
	t.Helper()
	before := map[string]bool{}
	for _, c := range b.s.ListCalls(context.Background(), CallFilter{}) {
		before[c.ID] = true
	}
	call := from.invite(b, user, o)
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("%s → %s: %d", from.Name, user, res.StatusCode)
	}
	call.Ack()
	for _, c := range b.s.ListCalls(context.Background(), CallFilter{}) {
		if !before[c.ID] {
			waitState(t, b, c.ID, StateTalking)
			return call, c.ID
		}
	}
	t.Fatalf("no new call")
	return nil, ""
}

// sipsInvite is the INVITE options of a phone calling with sips over TLS.
func sipsInvite(b *b2bua, p *phone, user string) inviteOpts {
	return inviteOpts{ruri: fmt.Sprintf("sips:%s@%s", user, b.tlsA), from: fmt.Sprintf("sips:%s@127.0.0.1", p.Name),
		contact: fmt.Sprintf("sips:%s@%s", p.Name, p.Addr)}
}

// TestAttendedTransferStrict_R14_R19: attended transfer joins two existing legs without an
// INVITE; under the strict policy a sips party is joined with a sips far party, never with a
// sip one (R14, R19): that transfer fails with ErrPolicyRefused and leaves both calls as they
// were.
func TestAttendedTransferStrict_R14_R19(t *testing.T) {
	for _, tc := range []struct {
		name    string
		farSIPS bool
		wantErr error
	}{
		{"R14_sips_party_sips_far_joined", true, nil},
		{"R19_sips_party_sip_far_refused", false, ErrPolicyRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob := newPhone(t, "alice", "TLS"), newPhone(t, "bob", "TLS")
			dave := newPhone(t, "dave", "TLS")
			var carol *phone
			var carolDN dn.DN
			if tc.farSIPS {
				carol = newPhone(t, "carol", "TLS")
				carolDN = sipsExt("3000", carol, "")
			} else {
				carol = newPhone(t, "carol", "UDP")
				carolDN = ext("3000", carol)
			}
			b := startB2BUA(t, func(c *Config) { c.Policy = dn.PolicyStrict }, sipsExt("2000", bob, ""), carolDN)
			_, c1 := connected(t, b, alice, "2000", sipsInvite(b, alice, "2000"))
			consultOpts := sipsInvite(b, dave, "3000")
			if !tc.farSIPS {
				consultOpts = inviteOpts{}
				dave = newPhone(t, "dave", "UDP")
			}
			_, c2 := connected(t, b, dave, "3000", consultOpts)
			err := b.s.TransferCall(context.Background(), TransferRequest{CallID: c1, LegID: "A", ConsultCallID: c2})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("attended transfer: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil {
				nthRequest(t, alice, sip.INVITE, 1) // the party is re-pointed to the far party
				return
			}
			if !errors.Is(err, ErrWrongState) || !strings.Contains(err.Error(), "R19") {
				t.Errorf("refusal %v: want ErrWrongState too, and the rule named", err)
			}
			time.Sleep(200 * time.Millisecond)
			if n := alice.Count(sip.INVITE) + carol.Count(sip.INVITE); n != 1 {
				t.Errorf("a refused join still sent re-INVITEs (%d INVITEs at alice and carol, want carol's first)", n)
			}
			if ci, err := b.s.GetCall(context.Background(), c1); err != nil || ci.State != StateTalking {
				t.Errorf("call 1 after a refused transfer: %+v %v", ci, err)
			}
		})
	}
}

// TestReferTransfer_R17: inside a sips dialog sipsvc never sends a REFER whose Refer-To is a
// sip: URI (R17), nor rewrites it to sips (R38). A DN target is referred in the dialog's own
// scheme (sips). A sip: URI target is refused under the strict policy, and under per-leg
// sipsvc calls the target itself instead.
func TestReferTransfer_R17(t *testing.T) {
	tests := []struct {
		name      string
		policy    dn.Policy
		target    func(carol *phone) string
		wantRefer string // the Refer-To prefix, "" when no REFER may be sent
		wantErr   error
		wantCall  bool // sipsvc calls the target itself
	}{
		{"R17_dn_target_referred_as_sips", dn.PolicyPerLeg, func(*phone) string { return "3000" }, "<sips:3000@", nil, false},
		{"R17_sips_uri_target_referred", dn.PolicyStrict, func(c *phone) string { return "sips:3000@" + c.Addr }, "<sips:3000@", nil, false},
		{"R17_strict_sip_uri_target_refused", dn.PolicyStrict, func(c *phone) string { return "sip:3000@" + c.Addr }, "", ErrPolicyRefused, false},
		{"R17_R14_per_leg_sip_uri_target_rerouted", dn.PolicyPerLeg, func(c *phone) string { return "sip:3000@" + c.Addr }, "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alice, bob, carol := newPhone(t, "alice", "TLS"), newPhone(t, "bob", "TLS"), newPhone(t, "carol", "UDP")
			b := startB2BUA(t, func(c *Config) { c.Policy = tc.policy }, sipsExt("2000", bob, ""), ext("3000", carol))
			alice.SetReferCode(202)
			o := sipsInvite(b, alice, "2000")
			o.headers = []sip.Header{sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, REFER, NOTIFY")}
			_, id := connected(t, b, alice, "2000", o)
			err := b.s.TransferCall(context.Background(), TransferRequest{CallID: id, LegID: "A", Target: tc.target(carol)})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("transfer: %v, want %v", err, tc.wantErr)
			}
			if tc.wantRefer != "" {
				refer := alice.WaitRequest(sip.REFER, 1, 2*time.Second)
				if rt := hdr(refer, "Refer-To"); !strings.HasPrefix(rt, tc.wantRefer) {
					t.Errorf("Refer-To %q, want %s…", rt, tc.wantRefer)
				}
				return
			}
			if tc.wantCall {
				inv := carol.WaitRequest(sip.INVITE, 1, 2*time.Second)
				if inv.Recipient.Scheme != "sip" {
					t.Errorf("target called with %s", inv.Recipient.String())
				}
			}
			time.Sleep(100 * time.Millisecond)
			if n := alice.Count(sip.REFER); n != 0 {
				t.Errorf("R17: %d REFER with a sip Refer-To sent inside a sips dialog", n)
			}
			if !tc.wantCall && carol.Count(sip.INVITE) != 0 {
				t.Errorf("a refused transfer still called the target")
			}
		})
	}
}

// TestPolicyRefusalIsObservable: a strict-policy refusal leaves a sipsvc.policy.refused span
// event naming the rule: on the call span when a leg is not dialled (R19), on the leg span
// when a transfer of that leg is refused (R17); and the call's outcome is rejected.
func TestPolicyRefusalIsObservable(t *testing.T) {
	t.Run("R19_leg_not_dialled", func(t *testing.T) {
		bob := newPhone(t, "bob", "UDP")
		b, sink := tracedB2BUA(t, func(c *Config) { c.Policy = dn.PolicyStrict }, ext("6000", bob))
		alice := newPhone(t, "alice", "TLS")
		if res := alice.invite(b, "6000", sipsInvite(b, alice, "6000")).Wait(5 * time.Second); res.StatusCode != 480 {
			t.Fatalf("final %d, want 480", res.StatusCode)
		}
		if ev := b.rec.waitKind(t, EventCallEnded); ev.Outcome != OutcomeRejected {
			t.Errorf("outcome %q, want rejected", ev.Outcome)
		}
		call := spanOne(t, sink.wait(t, 1), sc.SpanCall, "")
		evs := call.EventsNamed(sc.EventPolicyRefused)
		if len(evs) != 1 || evs[0].Attributes[string(sc.AttrSIPRule)] != "R19" {
			t.Errorf("call span %s events %+v, want one naming R19", sc.EventPolicyRefused, evs)
		}
	})
	t.Run("R17_refer_refused", func(t *testing.T) {
		alice, bob, carol := newPhone(t, "alice", "TLS"), newPhone(t, "bob", "TLS"), newPhone(t, "carol", "UDP")
		b, sink := tracedB2BUA(t, func(c *Config) { c.Policy = dn.PolicyStrict }, sipsExt("2000", bob, ""))
		o := sipsInvite(b, alice, "2000")
		o.headers = []sip.Header{sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, REFER, NOTIFY")}
		_, id := connected(t, b, alice, "2000", o)
		err := b.s.TransferCall(context.Background(), TransferRequest{CallID: id, LegID: "A", Target: "sip:3000@" + carol.Addr})
		if !errors.Is(err, ErrPolicyRefused) {
			t.Fatalf("transfer: %v, want ErrPolicyRefused", err)
		}
		if err := b.s.ReleaseCall(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		a := spanOne(t, sink.wait(t, 1), sc.SpanLegInbound, "A")
		evs := a.EventsNamed(sc.EventPolicyRefused)
		if len(evs) != 1 || evs[0].Attributes[string(sc.AttrSIPRule)] != "R17" {
			t.Errorf("leg A span %s events %+v, want one naming R17", sc.EventPolicyRefused, evs)
		}
	})
}

// TestR16_NoRecursionOnSchemeChanging3xx: a sips callee that redirects (302) to a sip: Contact
// is not followed: the redirect target never gets an INVITE, the callee got exactly one, and
// the caller gets a final failure (R16, R14: no silent downgrade through a 3xx).
func TestR16_NoRecursionOnSchemeChanging3xx(t *testing.T) {
	bob, carol := newPhone(t, "bob", "TLS"), newPhone(t, "carol", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 302, "Moved Temporarily", nil)
		res.To().Params.Add("tag", "bobtag")
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "carol", Host: "127.0.0.1", Port: carol.Port()}})
		_ = tx.Respond(res)
	})
	b := startB2BUA(t, nil, sipsExt("5000", bob, ""))
	alice := newPhone(t, "alice", "TLS")
	res := alice.invite(b, "5000", sipsInvite(b, alice, "5000")).Wait(5 * time.Second)
	if res.StatusCode < 300 {
		t.Fatalf("caller got %d, want the redirect as a final failure", res.StatusCode)
	}
	time.Sleep(200 * time.Millisecond)
	if n := carol.Count(sip.INVITE); n != 0 {
		t.Errorf("R16: the sip: redirect target got %d INVITE", n)
	}
	if n := bob.Count(sip.INVITE); n != 1 {
		t.Errorf("callee got %d INVITEs, want 1", n)
	}
}

// TestSetDialogDestLocked_SipsReachedOverTLS_R11: an inbound leg whose decision is sips over
// TLS, reached by an INVITE over TCP or UDP, sends its in-dialog requests over TLS to the
// remote target (default port 5061), never back over the plain connection; a sip leg keeps
// the caller's connection (R33).
func TestSetDialogDestLocked_SipsReachedOverTLS_R11(t *testing.T) {
	tests := []struct {
		name, arrived, contact  string
		wantTransport, wantDest string
	}{
		{"R11_sips_contact_over_TCP", "TCP", "sips:alice@192.0.2.1", "TLS", "192.0.2.1:5061"},
		{"R11_sips_contact_over_UDP", "UDP", "sips:alice@192.0.2.1:5071", "TLS", "192.0.2.1:5071"},
		{"R33_sip_contact_over_TCP_keeps_connection", "TCP", "sip:alice@192.0.2.1;transport=tcp", "TCP", "10.0.0.2:40000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := mustURI(t, tc.contact)
			dec, err := sips.DecideInbound(sips.Inbound{RequestURI: mustURI(t, "sip:5000@198.51.100.1"), Contact: &ct, Transport: tc.arrived})
			if err != nil {
				t.Fatal(err)
			}
			l := &leg{dir: inbound, dec: dec, transport: tc.arrived, remoteTarget: ct}
			l.setDialogDestLocked("10.0.0.2:40000")
			if l.transport != tc.wantTransport || l.dest != tc.wantDest {
				t.Errorf("transport %s dest %s, want %s %s", l.transport, l.dest, tc.wantTransport, tc.wantDest)
			}
		})
	}
}
