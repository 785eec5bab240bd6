package signaling

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/sips"
)

// TestRouteTransport_SipsTargetBehindSipRoute_R11: the Request-URI of every in-dialog
// request is the remote target; when it is sips, the first hop (the top route) is reached
// over TLS whatever the route's scheme or transport parameter says (R11, R37; RFC 3261
// §8.1.2), at the route's explicit port or 5061. A sip target keeps the route's transport
// (R35), and a sips top route alone means TLS too (R13). With a sips target every sip:
// route entry becomes sips: by its scheme alone (R12, RFC 5630 §5.1.1).
func TestRouteTransport_SipsTargetBehindSipRoute_R11(t *testing.T) {
	tests := []struct {
		name, arrived, contact, route      string
		wantTransport, wantDest, wantRoute string
	}{
		{"R11_sips_target_route_transport_tcp", "TCP", "sips:alice@192.0.2.1", "sip:198.51.100.9:5070;transport=tcp;lr", "TLS", "198.51.100.9:5070", "sips:198.51.100.9:5070;transport=tcp;lr"},
		{"R11_sips_target_route_transport_udp", "UDP", "sips:alice@192.0.2.1", "sip:198.51.100.9:5070;transport=udp;lr", "TLS", "198.51.100.9:5070", "sips:198.51.100.9:5070;lr"},
		{"R11_sips_target_route_default_port", "UDP", "sips:alice@192.0.2.1", "sip:198.51.100.9;lr", "TLS", "198.51.100.9:5061", "sips:198.51.100.9;lr"},
		{"R11_sips_target_over_TLS_route_transport_tcp", "TLS", "sips:alice@192.0.2.1", "sip:198.51.100.9:5070;transport=tcp;lr", "TLS", "198.51.100.9:5070", "sips:198.51.100.9:5070;transport=tcp;lr"},
		{"R35_sip_target_keeps_route_transport", "UDP", "sip:alice@192.0.2.1", "sip:198.51.100.9:5070;transport=tcp;lr", "TCP", "198.51.100.9:5070", "sip:198.51.100.9:5070;transport=tcp;lr"},
		{"R13_sips_route_sip_target", "TCP", "sip:alice@192.0.2.1;transport=tcp", "sips:198.51.100.9;lr", "TLS", "198.51.100.9:5061", "sips:198.51.100.9;lr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := mustURI(t, tc.contact)
			ruri := "sip:5000@198.51.100.1"
			if tc.arrived == "TLS" {
				ruri = "sips:5000@198.51.100.1"
			}
			dec, err := sips.DecideInbound(sips.Inbound{RequestURI: mustURI(t, ruri), Contact: &ct, Transport: tc.arrived})
			if err != nil {
				t.Fatal(err)
			}
			l := &leg{dir: inbound, dec: dec, transport: tc.arrived, remoteTarget: ct, routeSet: []sip.Uri{mustURI(t, tc.route)}}
			l.setDialogDestLocked("10.0.0.2:40000")
			if l.transport != tc.wantTransport || l.dest != tc.wantDest {
				t.Errorf("transport %s dest %s, want %s %s", l.transport, l.dest, tc.wantTransport, tc.wantDest)
			}
			if got := l.routeSet[0].String(); got != tc.wantRoute {
				t.Errorf("route %s, want %s (R12)", got, tc.wantRoute)
			}
		})
	}
}

// TestRefreshTargetToSipsBehindRoute_R11: a target refresh to a sips Contact in a dialog
// with a sip route set moves its in-dialog requests to TLS (R11).
func TestRefreshTargetToSipsBehindRoute_R11(t *testing.T) {
	l := &leg{dir: inbound, transport: "TCP", remoteTarget: mustURI(t, "sip:alice@192.0.2.1"),
		routeSet: []sip.Uri{mustURI(t, "sip:198.51.100.9:5070;transport=tcp;lr")}}
	l.setDialogDestLocked("")
	if l.transport != "TCP" {
		t.Fatalf("sip target: transport %s, want TCP", l.transport)
	}
	req := sip.NewRequest(sip.INVITE, mustURI(t, "sip:b2bua@198.51.100.1"))
	req.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sips:alice@192.0.2.1")})
	l.refreshTarget(req)
	if l.transport != "TLS" || l.dest != "198.51.100.9:5070" {
		t.Errorf("after refresh to sips: transport %s dest %s, want TLS 198.51.100.9:5070", l.transport, l.dest)
	}
}

// TestR11_SipsContactBehindSipRecordRoute (issue 13): a caller over plain TCP with a sips
// Contact behind a sip: Record-Route that names transport=tcp. The BYE sipsvc sends it has
// the sips Request-URI, so it goes to the route (the first hop) over TLS, with Via TLS, and
// nothing reaches the route or the caller in the clear (R11, R37).
func TestR11_SipsContactBehindSipRecordRoute(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b := startB2BUA(t, nil, ext("6000", bob))
	alice := newPhone(t, "alice", "TCP")
	aliceTLS := newPhone(t, "alice", "TLS") // where alice's sips Contact points
	proxyTLS := newPhone(t, "proxy", "TLS") // the Record-Route's host and port, over TLS
	rr := sip.NewHeader("Record-Route", fmt.Sprintf("<sip:%s;transport=tcp;lr>", proxyTLS.Addr))
	call := alice.invite(b, "6000", inviteOpts{contact: fmt.Sprintf("sips:alice@%s", aliceTLS.Addr), headers: []sip.Header{rr}})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("A got %d", res.StatusCode)
	}
	call.Ack()
	bob.WaitRequest(sip.INVITE, 1, time.Second)
	ci := onlyCall(t, b, CallFilter{})
	waitState(t, b, ci.ID, StateTalking)
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	bye := proxyTLS.WaitRequest(sip.BYE, 1, 3*time.Second)
	if bye.Transport() != "TLS" || bye.Via().Transport != "TLS" || bye.Recipient.Scheme != "sips" {
		t.Errorf("BYE to A: %s over %s, Via %s; want sips over TLS to the route (R11)", bye.Recipient.String(), bye.Transport(), bye.Via().Transport)
	}
	// R12: the recorded sip: route is sent as sips: (same host and port, lr kept).
	if r := bye.Route(); r == nil || r.Address.Scheme != "sips" || hostPort(r.Address, "TLS") != proxyTLS.Addr {
		t.Errorf("BYE to A Route %v, want the recorded route as sips (R12)", bye.Route())
	}
	if n := alice.Count(sip.BYE) + aliceTLS.Count(sip.BYE); n != 0 {
		t.Errorf("R37: %d BYE bypassed the route", n)
	}
}
