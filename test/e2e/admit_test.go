package e2e

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
)

// TestAnonymousCallers (issue 10, "who may place a call") runs the production default,
// anonymous callers reach only DNs with allow_anonymous, over real sockets with the real
// registrar as the authenticator.
func TestAnonymousCallers(t *testing.T) {
	t.Parallel()
	var trunkAddr atomic.Pointer[string] // the trunk phone's address, read by the router
	router := newTestRouter(func(_ context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
		targets := []*routingv1.Target{{Destination: &routingv1.Target_Dn{Dn: req.GetDialed()}}}
		if req.GetDialed() == "6000" { // a router that would send the caller to a trunk and a URI
			targets = []*routingv1.Target{
				{Destination: &routingv1.Target_Uri{Uri: "sip:gw@" + *trunkAddr.Load()}},
				{Destination: &routingv1.Target_Dn{Dn: "trunk1"}},
			}
		}
		return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: &routingv1.TargetList{Targets: targets}}}, nil
	})
	s := startStack(t, stackOptions{router: router, defaultAdmission: true})
	bob := s.addPhone("2000", "bob", "UDP") // exists, does not allow anonymous callers
	trunk := s.callerPhone("trunk", "UDP")
	ta := net.JoinHostPort("127.0.0.1", strconv.Itoa(trunk.Port()))
	trunkAddr.Store(&ta)
	s.addDN(dn.DN{Number: "trunk1", Type: dn.TypeTrunk, Contact: "sip:gw@" + ta, TrustedSources: []string{"192.0.2.0/24"}})
	open := s.addPhone("6001", "open", "UDP")
	setAllowAnonymous(t, s, "6001")
	s.addDN(dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "sip:6000@192.0.2.9", AllowAnonymous: true})
	md5, sha := dn.HashPassword("7789", testRealm, "secret")
	s.addDN(dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*", HA1MD5: md5, HA1SHA256: sha})
	closed := closedTCPPort(t)
	s.addDN(dn.DN{Number: "6002", Type: dn.TypeExtension, Contact: "sip:6002@" + closed + ";transport=tcp", AllowAnonymous: true})
	alice := s.callerPhone("alice", "UDP")

	t.Run("unknown and forbidden DNs answer alike and nothing rings", func(t *testing.T) {
		var first *sip.Response
		for _, number := range []string{"9999", "2000", "trunk1"} {
			_, res := placeCall(s, alice, number)
			if res.StatusCode != 407 || len(res.GetHeaders("Proxy-Authenticate")) == 0 {
				t.Fatalf("INVITE %s: %d %s, want the 407 challenge", number, res.StatusCode, res.Reason)
			}
			if first == nil {
				first = res
			} else if res.Reason != first.Reason || len(res.GetHeaders("Proxy-Authenticate")) != len(first.GetHeaders("Proxy-Authenticate")) {
				t.Errorf("INVITE %s answered %d %q with %d challenges, unknown DN got %d %q with %d: a scanner can tell them apart",
					number, res.StatusCode, res.Reason, len(res.GetHeaders("Proxy-Authenticate")), first.StatusCode, first.Reason, len(first.GetHeaders("Proxy-Authenticate")))
			}
		}
		time.Sleep(200 * time.Millisecond)
		if n := bob.Count(sip.INVITE); n != 0 {
			t.Errorf("DN 2000 got %d INVITEs from an anonymous caller", n)
		}
		if n := trunk.Count(sip.INVITE); n != 0 {
			t.Errorf("the trunk got %d INVITEs from an anonymous caller", n)
		}
		if n := len(router.routeRequests()); n != 0 {
			t.Errorf("the router was asked %d times for refused anonymous calls", n)
		}
	})

	t.Run("DN with allow_anonymous rings; the router is told the caller is anonymous", func(t *testing.T) {
		u, res := placeCall(s, alice, "6001")
		if res.StatusCode != 200 {
			t.Fatalf("caller got %d, want 200", res.StatusCode)
		}
		open.WaitRequest(sip.INVITE, 1, time.Second)
		reqs := router.routeRequests()
		if len(reqs) == 0 || reqs[len(reqs)-1].GetCallerClass() != routingv1.CallerClass_CALLER_CLASS_ANONYMOUS || reqs[len(reqs)-1].GetCallerDn() != "" {
			t.Errorf("router was not told the caller is anonymous: %v", reqs)
		}
		u.Bye()
	})

	t.Run("router answer with a trunk and a URI is refused for an anonymous caller", func(t *testing.T) {
		_, res := placeCall(s, alice, "6000")
		if res.StatusCode != 407 {
			t.Fatalf("caller got %d, want 407", res.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
		if n := trunk.Count(sip.INVITE); n != 0 {
			t.Errorf("the trunk got %d INVITEs from an anonymous caller", n)
		}
	})

	t.Run("From naming a trunk whose trusted_sources do not match is anonymous", func(t *testing.T) {
		u := alice.invite(s, "trunk1", inviteOpts{from: "sip:trunk1@127.0.0.1"})
		if res := u.Wait(5 * time.Second); res.StatusCode != 407 {
			t.Fatalf("caller got %d, want 407", res.StatusCode)
		}
		u = alice.invite(s, "2000", inviteOpts{from: "sip:trunk1@127.0.0.1"})
		if res := u.Wait(5 * time.Second); res.StatusCode != 407 {
			t.Fatalf("caller got %d, want 407", res.StatusCode)
		}
		if n := bob.Count(sip.INVITE) + trunk.Count(sip.INVITE); n != 0 {
			t.Errorf("%d INVITEs reached a DN", n)
		}
	})

	t.Run("escaped From user is challenged as the DN it names (RFC 3261 §19.1.4)", func(t *testing.T) {
		before := open.Count(sip.INVITE)
		u := alice.invite(s, "6001", inviteOpts{from: "sip:%37789@127.0.0.1"})
		if res := u.Wait(5 * time.Second); res.StatusCode != 407 {
			t.Fatalf("From sip:%%37789 got %d, want the 407 of DN 7789", res.StatusCode)
		}
		if open.Count(sip.INVITE) != before {
			t.Errorf("a caller impersonating DN 7789 rang 6001")
		}
	})

	t.Run("a failure carries no internal detail to an anonymous caller", func(t *testing.T) {
		_, res := placeCall(s, alice, "6002")
		if res.StatusCode < 400 {
			t.Fatalf("caller got %d, want a failure", res.StatusCode)
		}
		if h := res.GetHeader("Reason"); h != nil {
			t.Errorf("Reason %q reached an anonymous caller", h.Value())
		}
		if h := res.GetHeader("Warning"); h != nil {
			t.Errorf("Warning %q reached an anonymous caller", h.Value())
		}
	})
}

// setAllowAnonymous sets allow_anonymous on a DN of the store.
func setAllowAnonymous(t *testing.T, s *stack, number string) {
	t.Helper()
	d, err := s.store.Lookup(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	d.AllowAnonymous = true
	if err := s.store.UpdateDN(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// closedTCPPort returns a loopback host:port on which nothing listens.
func closedTCPPort(t *testing.T) string {
	t.Helper()
	l := listenTCP(t)
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
