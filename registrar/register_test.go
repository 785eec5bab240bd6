package registrar_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

var transports = []string{"UDP", "TCP", "TLS"}

// TestRegister_Digest registers with SHA-256 (sipgo's DoDigestAuth takes the first
// challenge) and MD5 (computed by hand) over UDP, TCP and TLS.
func TestRegister_Digest(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	for _, tp := range transports {
		for _, alg := range []string{"SHA-256", "MD5"} {
			t.Run(tp+"/"+alg, func(t *testing.T) {
				p := h.phone(tp, false)
				contact := "sip:1000@127.0.0.1:5" + map[string]string{"UDP": "100", "TCP": "200", "TLS": "300"}[tp]
				if alg == "MD5" {
					contact += "1"
				}
				if tp != "UDP" {
					contact += ";transport=" + strings.ToLower(tp)
				}
				r := reg{number: "1000", contacts: []string{"<" + contact + ">"}}
				var res *sip.Response
				if alg == "SHA-256" {
					res = p.register(r, "secret")
				} else {
					req := p.request(sip.REGISTER, r)
					res = p.do(req)
					wantStatus(t, res, 401)
					authorize(t, req, challenge(t, res, "MD5"), "1000", "secret", 1)
					res = p.resend(req)
				}
				wantStatus(t, res, 200)
				var b *dn.Binding
				for _, x := range h.bindings("1000") {
					if x.Contact == contact {
						b = &x
					}
				}
				if b == nil {
					t.Fatalf("binding %s not stored: %+v", contact, h.bindings("1000"))
				}
				if b.Transport != tp || !strings.HasPrefix(b.Source, "127.0.0.1:") || b.Secure {
					t.Fatalf("binding = %+v", b)
				}
				if got := b.Expires.Sub(h.clock.Now()); got != time.Hour {
					t.Fatalf("expiry %s, want default 1h", got)
				}
				found := false
				for _, c := range contactsOf(res) {
					if strings.Contains(c, contact) && strings.Contains(c, "expires=3600") {
						found = true
					}
				}
				if !found {
					t.Fatalf("200 OK does not list %s with expires=3600: %v", contact, contactsOf(res))
				}
			})
		}
	}
	if n := h.events.count(signaling.EventRegistrationAdded); n != 6 {
		t.Fatalf("%d added events, want 6: %v", n, h.events.kinds())
	}
}

// TestRegister_ChallengeShape checks the 401: SHA-256 first, then MD5, qop=auth, one nonce.
func TestRegister_ChallengeShape(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	p := h.phone("UDP", false)
	res := p.do(p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}))
	wantStatus(t, res, 401)
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 {
		t.Fatalf("%d challenges, want 2", len(hs))
	}
	sha, md := challenge(t, res, "SHA-256"), challenge(t, res, "MD5")
	if !strings.Contains(hs[0].Value(), "SHA-256") {
		t.Fatalf("first challenge is not SHA-256: %s", hs[0].Value())
	}
	if sha.Realm != realm || sha.Nonce != md.Nonce || !sha.SupportsQOP("auth") || sha.Stale || md.Stale {
		t.Fatalf("challenges = %+v / %+v", sha, md)
	}
	if len(h.bindings("1000")) != 0 {
		t.Fatal("challenged REGISTER stored a binding")
	}
}

func TestRegister_WrongPassword(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			p := h.phone(tp, false)
			res := p.register(reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}, "wrong")
			wantStatus(t, res, 403)
		})
	}
	if len(h.bindings("1000")) != 0 || len(h.events.kinds()) != 0 {
		t.Fatal("a failed REGISTER changed something")
	}
}
