package registrar_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
)

// TestRegister_StaleNonce: a right answer to an expired nonce gets 401 stale=true, a wrong
// one a fresh 401 (stale=false: not counted toward the backoff, issue 10); neither changes
// anything.
func TestRegister_StaleNonce(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	tests := []struct {
		name     string
		password string
		want     int
		stale    bool
	}{
		{"right password", "secret", 401, true},
		{"wrong password", "nope", 401, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := h.phone("UDP", false)
			req := p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}})
			res := p.do(req)
			wantStatus(t, res, 401)
			chal := challenge(t, res, "SHA-256")
			h.clock.Add(5*time.Minute + time.Second) // default NonceTTL is 5 min
			authorize(t, req, chal, "1000", tc.password, 1)
			res = p.resend(req)
			wantStatus(t, res, tc.want)
			fresh := challenge(t, res, "SHA-256")
			if fresh.Stale != tc.stale || fresh.Nonce == chal.Nonce {
				t.Fatalf("want a fresh stale=%v challenge, got %+v", tc.stale, fresh)
			}
			if tc.stale {
				// The fresh nonce works.
				authorize(t, req, fresh, "1000", tc.password, 1)
				wantStatus(t, p.resend(req), 200)
			}
		})
	}
}

// TestRegister_NonceCountReplay: nc must grow per nonce; a replayed nc is refused as stale
// and writes nothing.
func TestRegister_NonceCountReplay(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	p := h.phone("TCP", false)
	req := p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100;transport=tcp>"}})
	res := p.do(req)
	chal := challenge(t, res, "SHA-256")
	authorize(t, req, chal, "1000", "secret", 1)
	wantStatus(t, p.resend(req), 200)

	// Replay nc=1 with another contact: refused, nothing added.
	req2 := p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5101;transport=tcp>"}})
	authorize(t, req2, chal, "1000", "secret", 1)
	res = p.resend(req2)
	wantStatus(t, res, 401)
	if c := challenge(t, res, "SHA-256"); !c.Stale {
		t.Fatalf("replay: want stale=true, got %+v", c)
	}
	if n := len(h.bindings("1000")); n != 1 {
		t.Fatalf("replayed REGISTER changed bindings: %d", n)
	}
	// nc=2 on the same nonce is fine.
	authorize(t, req2, chal, "1000", "secret", 2)
	wantStatus(t, p.resend(req2), 200)
	if n := len(h.bindings("1000")); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
}

// TestRegister_UnknownDNIndistinguishable: an unknown, a disabled, a fixed-contact and a
// password-less self-registered DN get the same challenge as a real one, then 403 — also
// with the right password. This is what leaves svwar nothing to enumerate by REGISTER.
func TestRegister_UnknownDNIndistinguishable(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	h.addDN("1002", "*", "secret", func(d *dn.DN) { d.Disabled = true })
	h.addDN("5000", "sips:5000@127.0.0.1:5071", "secret")
	h.addDN("1003", "*", noPassword) // issue 10: refused like an unknown DN

	shape := func(res *sip.Response) string {
		var parts []string
		for _, hd := range res.GetHeaders("WWW-Authenticate") {
			c, err := registrarParse(hd.Value())
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, c)
		}
		return res.Reason + "|" + strings.Join(parts, "|")
	}
	p := h.phone("UDP", false)
	known := p.do(p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}))
	wantStatus(t, known, 401)
	for _, number := range []string{"4040", "1002", "5000", "1003"} {
		t.Run(number, func(t *testing.T) {
			req := p.request(sip.REGISTER, reg{number: number, contacts: []string{"<sip:" + number + "@127.0.0.1:5100>"}})
			res := p.do(req)
			wantStatus(t, res, 401)
			if a, b := shape(known), shape(res); a != b {
				t.Fatalf("challenge differs from a known DN's:\n known %s\n   got %s", a, b)
			}
			authorize(t, req, challenge(t, res, "SHA-256"), number, "secret", 1)
			wantStatus(t, p.resend(req), 403)
			if len(h.bindings(number)) != 0 {
				t.Fatal("binding stored")
			}
		})
	}
}

// registrarParse reduces a challenge to what a client can compare: parameter names and
// values except the nonce, plus the nonce length.
func registrarParse(v string) (string, error) {
	c, err := parseChallenge(v)
	if err != nil {
		return "", err
	}
	n := len(c.Nonce)
	c.Nonce = ""
	return c.String() + " nonce-len=" + itoa(n), nil
}

// TestRegister_BruteForceBackoff (issue 10): AuthFailLimit wrong answers to our nonces for
// one user from one source start a backoff: 503 with Retry-After, even for the right
// password; it doubles with each further failure; other users from the same source are
// not refused; each backoff is logged and counted (MetricRefusals, reason backoff).
func TestRegister_BruteForceBackoff(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := newHarness(t, nil, func(c *registrar.Config) {
		c.AuthFailLimit, c.LockoutBackoff, c.Lockout = 3, 10*time.Second, time.Minute
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	h.addDN("1000", "*", "secret")
	p := h.phone("UDP", false)
	r := reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}
	for i := range 3 {
		if res := p.register(r, "guess"+itoa(i)); res.StatusCode != 403 {
			t.Fatalf("attempt %d: %d", i, res.StatusCode)
		}
	}
	backingOff := func(retryAfter string) {
		t.Helper()
		res := p.register(r, "secret")
		wantStatus(t, res, 503)
		if h := res.GetHeader("Retry-After"); h == nil || h.Value() != retryAfter {
			t.Fatalf("Retry-After %v, want %s", h, retryAfter)
		}
	}
	backingOff("10")
	// Another user from the same source is not refused.
	wantStatus(t, p.do(p.request(sip.REGISTER, reg{number: "4040"})), 401)
	if len(h.bindings("1000")) != 0 {
		t.Fatal("binding stored while backing off")
	}
	// The backoff ends; the next failure doubles it.
	h.clock.Add(10 * time.Second)
	wantStatus(t, p.register(r, "wrong again"), 403)
	backingOff("20")
	if n := strings.Count(h.logs.String(), "backing off"); n != 2 {
		t.Fatalf("backoff logged %d times, want twice:\n%s", n, h.logs)
	}
	h.clock.Add(20 * time.Second)
	wantStatus(t, p.register(r, "secret"), 200)

	got := refusalCounts(t, reader)
	if got[registrar.RefusalBadCredentials] != 4 || got[registrar.RefusalBackoff] != 2 {
		t.Fatalf("refusals %v: want 4 bad_credentials, 2 backoff", got)
	}
}

// TestRegister_MadeUpNonceLocksNobodyOut (issue 10): wrong answers to nonces we never issued
// get a fresh challenge and are not counted, so they cannot lock the real user out, even
// from the same source.
func TestRegister_MadeUpNonceLocksNobodyOut(t *testing.T) {
	h := newHarness(t, nil, func(c *registrar.Config) { c.AuthFailLimit = 3 })
	h.addDN("1000", "*", "secret")
	p := h.phone("UDP", false)
	r := reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}
	for i := range 10 {
		for _, user := range []string{"1000", "4040"} {
			req := p.request(sip.REGISTER, reg{number: user, contacts: r.contacts})
			fake := &digest.Challenge{Realm: realm, Nonce: "bWFkZS11cC1ub25jZQ" + itoa(i), Algorithm: "SHA-256", QOP: []string{"auth"}}
			authorize(t, req, fake, user, "guess"+itoa(i), 1)
			res := p.resend(req)
			wantStatus(t, res, 401)
			if c := challenge(t, res, "SHA-256"); c.Stale {
				t.Fatal("a made-up nonce answered stale=true")
			}
		}
	}
	wantStatus(t, p.register(r, "secret"), 200)
}

// refusalCounts reads the MetricRefusals counter by reason.
func refusalCounts(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != registrar.MetricRefusals {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T", m.Name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				v, _ := dp.Attributes.Value(registrar.AttrRefusal)
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

// TestAuthorizeCall covers the INVITE side: 407 for DNs with a password, trust by source
// IP and by TLS client certificate, and pass-through for the rest.
func TestAuthorizeCall(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	h.addDN("1001", "*", noPassword)
	h.addDN("1002", "*", "secret", func(d *dn.DN) { d.Disabled = true })
	tests := []struct {
		name      string
		transport string
		cert      bool
		from      string
		password  string // answer a 407 with this
		trunk     func(*dn.DN)
		want      int
		caller    string
		class     string // X-Caller-Class, when set
		rule      string // X-Caller-Rule, when set
	}{
		{name: "password DN answers 407 with SHA-256", transport: "UDP", from: "1000", password: "secret", want: 200, caller: "1000"},
		{name: "password DN wrong password", transport: "TCP", from: "1000", password: "nope", want: 403},
		{name: "password DN no answer", transport: "TCP", from: "1000", want: 407},
		// R-issue 10: a From user naming a DN is only a claim unless proved: a DN without a
		// password, or a disabled one, makes the caller anonymous (signaling decides what
		// an anonymous caller may reach).
		{name: "no password DN is anonymous", transport: "UDP", from: "1001", want: 200, caller: "-", class: "anonymous"},
		{name: "unknown user", transport: "UDP", from: "555", want: 200, caller: "-", class: "anonymous"},
		{name: "disabled DN is anonymous", transport: "UDP", from: "1002", want: 200, caller: "-", class: "anonymous"},
		// RFC 3261 §19.1.4: sip:%31000@h is sip:1000@h, so an escaped From user gets the
		// challenge of DN 1000 and cannot slip past it as an unknown user.
		{name: "escaped From user is challenged as its DN", transport: "UDP", from: "%31000", want: 407},
		{name: "escaped From user authenticates as its DN", transport: "UDP", from: "%31000", password: "secret", want: 200, caller: "1000", class: "authenticated"},
		{name: "password DN authenticated class", transport: "TCP", from: "1000", password: "secret", want: 200, caller: "1000", class: "authenticated"},
		{name: "trunk by source IP", transport: "UDP", from: "+4930123",
			trunk: func(d *dn.DN) { d.TrustedSources = []string{"127.0.0.0/8"} }, want: 200, caller: "trunk", class: "trusted", rule: "source 127.0.0.1 in trusted_sources of DN trunk"},
		{name: "trunk sources not matching: anonymous", transport: "UDP", from: "trunk",
			trunk: func(d *dn.DN) { d.TrustedSources = []string{"192.0.2.0/24"} }, want: 200, caller: "-", class: "anonymous"},
		{name: "trunk by source IP wins over From DN password", transport: "TCP", from: "1000",
			trunk: func(d *dn.DN) { d.TrustedSources = []string{"127.0.0.1"} }, want: 200, caller: "trunk"},
		{name: "trunk by TLS client certificate", transport: "TLS", cert: true, from: "+4930123",
			trunk: func(d *dn.DN) { d.TrustedCertSubjects = []string{"trunk.example.net"} }, want: 200, caller: "trunk", class: "trusted",
			rule: "certificate subject trunk.example.net in trusted_cert_subjects of DN trunk"},
		{name: "trunk certificate required but absent", transport: "TLS", from: "1000",
			trunk: func(d *dn.DN) { d.TrustedCertSubjects = []string{"trunk.example.net"} }, want: 407},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_ = h.store.DeleteDN(ctx, "trunk")
			if tc.trunk != nil {
				h.addDN("trunk", "sip:gw@192.0.2.1", "", func(d *dn.DN) { d.Type = dn.TypeTrunk; tc.trunk(d) })
			}
			p := h.phone(tc.transport, tc.cert)
			req := p.request(sip.INVITE, reg{number: tc.from})
			res := p.do(req)
			if res.StatusCode == 407 && tc.password != "" {
				authorize(t, req, challenge(t, res, "SHA-256"), dn.NormalizeUser(tc.from), tc.password, 1)
				res = p.resend(req)
			}
			wantStatus(t, res, tc.want)
			if tc.want == 200 {
				if got := res.GetHeader("X-Caller").Value(); got != tc.caller {
					t.Fatalf("caller %q, want %q", got, tc.caller)
				}
				if got := res.GetHeader("X-Caller-Class").Value(); tc.class != "" && got != tc.class {
					t.Fatalf("class %q, want %q", got, tc.class)
				}
				if h := res.GetHeader("X-Caller-Rule"); tc.rule != "" && (h == nil || h.Value() != tc.rule) {
					t.Fatalf("rule %v, want %q", h, tc.rule)
				}
			}
			if tc.want == 407 && len(res.GetHeaders("Proxy-Authenticate")) != 2 {
				t.Fatalf("407 without two Proxy-Authenticate challenges:\n%s", res)
			}
		})
	}
}
