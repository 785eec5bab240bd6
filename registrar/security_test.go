package registrar_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
)

// TestRegister_NoPasswordDeniedByDefault (issue 10): a self-registered DN without a
// password takes no REGISTER — no binding, no "Contact: *" removal — and is answered like
// an unknown DN (challenge, then 403). Config.OpenRegistration is the explicit opt-in.
func TestRegister_NoPasswordDeniedByDefault(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := newHarness(t, nil, func(c *registrar.Config) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	h.addDN("1001", "*", noPassword)
	if err := h.store.PutBinding(t.Context(), dn.Binding{Number: "1001", Contact: "sip:1001@127.0.0.1:5999",
		Key: "1001@127.0.0.1:5999", Transport: "UDP", Expires: h.clock.Now().Add(3600e9), Updated: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    reg
	}{
		{"add a binding", reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5100>"}}},
		{"remove all bindings", reg{number: "1001", contacts: []string{"*"}, expires: "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := h.phone("UDP", false)
			req := p.request(sip.REGISTER, tc.r)
			res := p.do(req)
			wantStatus(t, res, 401)
			for _, pw := range []string{"", "anything"} {
				authorize(t, req, challenge(t, res, "SHA-256"), "1001", pw, 1)
				wantStatus(t, p.resend(req), 403)
			}
			bs := h.bindings("1001")
			if len(bs) != 1 || bs[0].Key != "1001@127.0.0.1:5999" {
				t.Fatalf("bindings changed: %+v", bs)
			}
		})
	}
	if got := refusalCounts(t, reader); got[registrar.RefusalNoPassword] != 6 {
		t.Fatalf("refusals %v: want 6 no_password (two REGISTERs, each challenged and answered twice)", got)
	}

	open := newHarness(t, nil, func(c *registrar.Config) { c.OpenRegistration = true })
	open.addDN("1001", "*", noPassword)
	p := open.phone("UDP", false)
	wantStatus(t, p.do(p.request(sip.REGISTER, reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5100>"}})), 200)
}

// TestRegister_DigestURIMustMatchRequestURI (issue 10, RFC 2617 §3.2.2.5, RFC 7616): a
// right response computed for another URI than the Request-URI is refused with 403 and
// counted; the Request-URI itself (URI parameters aside) is accepted.
func TestRegister_DigestURIMustMatchRequestURI(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := newHarness(t, nil, func(c *registrar.Config) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	h.addDN("1000", "*", "secret")
	tests := []struct {
		name string
		uri  func(ruri sip.Uri) string
		want int
	}{
		{"other host", func(u sip.Uri) string { return "sip:registrar.example.net" }, 403},
		{"other port", func(u sip.Uri) string { return "sip:" + u.Host + ":" + strconv.Itoa(u.Port+1) }, 403},
		{"other user", func(u sip.Uri) string { return "sip:1001@" + u.Host + ":" + strconv.Itoa(u.Port) }, 403},
		{"other scheme", func(u sip.Uri) string { return "sips:" + u.Host + ":" + strconv.Itoa(u.Port) }, 403},
		{"not a URI", func(u sip.Uri) string { return "*" }, 403},
		{"the Request-URI", func(u sip.Uri) string { return u.String() }, 200},
		{"the Request-URI without parameters", func(u sip.Uri) string { return u.Addr() }, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := h.phone("TCP", false)
			req := p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100;transport=tcp>"}})
			res := p.do(req)
			chal := challenge(t, res, "SHA-256")
			cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: tc.uri(req.Recipient),
				Username: "1000", Password: "secret", Count: 1, Cnonce: "0a4f113b"})
			if err != nil {
				t.Fatal(err)
			}
			req.AppendHeader(sip.NewHeader("Authorization", cred.String()))
			req.CSeq().SeqNo++
			req.RemoveHeader("Via")
			wantStatus(t, p.resend(req), tc.want)
		})
	}
	if got := refusalCounts(t, reader); got[registrar.RefusalURIMismatch] != 5 {
		t.Fatalf("refusals %v: want 5 uri_mismatch", got)
	}
}

// TestRegister_Caps (issue 10): more Contacts in one REGISTER than MaxContactsPerRegister,
// or a REGISTER that would leave a DN with more than MaxBindingsPerDN bindings, gets 403
// with a Warning naming the cap and changes nothing; refreshing and removing bindings at
// the cap still work.
func TestRegister_Caps(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := newHarness(t, nil, func(c *registrar.Config) {
		c.MaxContactsPerRegister, c.MaxBindingsPerDN = 3, 4
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	h.addDN("1000", "*", "")
	p := h.phone("UDP", false)
	contacts := func(from, n int) []string {
		var out []string
		for i := range n {
			out = append(out, "<sip:1000@127.0.0.1:"+strconv.Itoa(5100+from+i)+">")
		}
		return out
	}
	overCap := func(res *sip.Response, what string) {
		t.Helper()
		wantStatus(t, res, 403)
		if w := res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), what) {
			t.Fatalf("Warning %v, want one naming %q", w, what)
		}
	}
	overCap(p.register(reg{number: "1000", contacts: contacts(0, 4)}, ""), "at most 3 Contacts in one REGISTER")
	if n := len(h.bindings("1000")); n != 0 {
		t.Fatalf("%d bindings stored by a REGISTER over the contacts cap", n)
	}
	wantStatus(t, p.register(reg{number: "1000", contacts: contacts(0, 3)}, ""), 200)
	overCap(p.register(reg{number: "1000", contacts: contacts(3, 2)}, ""), "at most 4 bindings per DN")
	if n := len(h.bindings("1000")); n != 3 {
		t.Fatalf("%d bindings, want 3: the refused REGISTER changed something", n)
	}
	wantStatus(t, p.register(reg{number: "1000", contacts: contacts(3, 1)}, ""), 200) // the 4th
	wantStatus(t, p.register(reg{number: "1000", contacts: contacts(0, 3)}, ""), 200) // refresh at the cap
	// Removing one and adding one in the same REGISTER keeps the count.
	swap := append(contacts(4, 1), "<sip:1000@127.0.0.1:5100>;expires=0")
	wantStatus(t, p.register(reg{number: "1000", contacts: swap}, ""), 200)
	if n := len(h.bindings("1000")); n != 4 {
		t.Fatalf("%d bindings, want 4", n)
	}
	if got := refusalCounts(t, reader); got[registrar.RefusalTooManyContacts] != 1 || got[registrar.RefusalTooManyBindings] != 1 {
		t.Fatalf("refusals %v: want one too_many_contacts, one too_many_bindings", got)
	}
}

// TestRegister_R4_SipsContactWithTransportUDPRefused (issue 13): a sips Contact with
// transport=udp is refused with 400 over a real TLS connection, not stored as a sips
// binding without its transport; transport=tls is still stored without it.
func TestRegister_R4_SipsContactWithTransportUDPRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7790", "*", "")
	p := h.phone("TLS", false)
	sipsReg := func(contact string) reg {
		return reg{number: "7790", ruriScheme: "sips", aorScheme: "sips", contacts: []string{contact}}
	}
	for _, tp := range []string{"udp", "UDP"} {
		res := p.register(sipsReg("<sips:7790@127.0.0.1:5600;transport="+tp+">"), "")
		wantStatus(t, res, 400)
		if n := len(h.bindings("7790")); n != 0 {
			t.Fatalf("R4: transport=%s stored %d bindings", tp, n)
		}
	}
	wantStatus(t, p.register(sipsReg("<sips:7790@127.0.0.1:5600;transport=tls>"), ""), 200)
	bs := h.bindings("7790")
	if len(bs) != 1 || !bs[0].Secure || strings.Contains(bs[0].Contact, "transport") {
		t.Fatalf("T4: bindings %+v: want one secure binding without transport", bs)
	}
}

// TestDigestAlgorithms (issue 12): the challenge offers the configured algorithms, one
// header each, in order — MD5 alone by default — and a DN's own DigestAlgorithms replace
// them for that DN only; an algorithm not offered is refused.
func TestDigestAlgorithms(t *testing.T) {
	algsOf := func(res *sip.Response) []string {
		var out []string
		for _, hd := range res.GetHeaders("WWW-Authenticate") {
			c, err := digest.ParseChallenge(hd.Value())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c.Algorithm)
		}
		return out
	}
	tests := []struct {
		name   string
		global []string // Config.Algorithms; nil is the default
		perDN  []string // the DN's DigestAlgorithms
		number string   // "4040" is unknown
		want   string
	}{
		{"default is MD5 alone", nil, nil, "1000", "MD5"},
		{"default for an unknown DN", nil, nil, "4040", "MD5"},
		{"global SHA-256 first", []string{"SHA-256", "MD5"}, nil, "1000", "SHA-256,MD5"},
		{"global SHA-256 only", []string{"sha-256"}, nil, "1000", "SHA-256"},
		{"per DN SHA-256 only", nil, []string{"SHA-256"}, "1000", "SHA-256"},
		{"per DN does not leak to an unknown DN", nil, []string{"SHA-256"}, "4040", "MD5"},
		{"per DN MD5 under a SHA-256 global", []string{"SHA-256"}, []string{"MD5"}, "1000", "MD5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, func(c *registrar.Config) { c.Algorithms = tc.global })
			h.addDN("1000", "*", "secret", func(d *dn.DN) { d.DigestAlgorithms = tc.perDN })
			p := h.phone("UDP", false)
			req := p.request(sip.REGISTER, reg{number: tc.number, contacts: []string{"<sip:" + tc.number + "@127.0.0.1:5100>"}})
			res := p.do(req)
			wantStatus(t, res, 401)
			if got := strings.Join(algsOf(res), ","); got != tc.want {
				t.Fatalf("challenges %s, want %s", got, tc.want)
			}
			if tc.number != "1000" {
				return
			}
			// Answer the first offered algorithm: accepted.
			authorize(t, req, challenge(t, res, algsOf(res)[0]), "1000", "secret", 1)
			wantStatus(t, p.resend(req), 200)
			// An algorithm not offered, with the right password: refused.
			other := "MD5"
			if strings.Contains(tc.want, "MD5") {
				other = "SHA-256"
			}
			if strings.Contains(tc.want, other) {
				return
			}
			req = p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5101>"}})
			res = p.do(req)
			c := challenge(t, res, algsOf(res)[0])
			c.Algorithm = other
			authorize(t, req, c, "1000", "secret", 1)
			wantStatus(t, p.resend(req), 403)
		})
	}
}

// TestRegister_NonceFromAnotherSourceNotCounted (issue 10): a nonce is bound to the source
// IP it was issued to. Wrong answers carrying a nonce fetched from another address (as a
// spoofed UDP source would) get a fresh challenge and are not counted, so they cannot make
// the real user's own address back off.
func TestRegister_NonceFromAnotherSourceNotCounted(t *testing.T) {
	h := newHarness(t, nil, func(c *registrar.Config) { c.AuthFailLimit = 2 })
	h.addDN("1000", "*", "secret")
	// The attacker's address, 127.0.0.2, fetches a challenge over a raw UDP socket.
	conn, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := "REGISTER sip:" + h.addr["UDP"] + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + conn.LocalAddr().String() + ";branch=z9hG4bK-spoof1\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:1000@127.0.0.1>\r\nFrom: <sip:1000@127.0.0.1>;tag=spoof\r\n" +
		"Call-ID: spoof@127.0.0.2\r\nCSeq: 1 REGISTER\r\nContact: <sip:1000@127.0.0.2:5999>\r\nContent-Length: 0\r\n\r\n"
	dst, _ := net.ResolveUDPAddr("udp", h.addr["UDP"])
	if _, err := conn.WriteTo([]byte(raw), dst); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	foreign := challenge(t, msg.(*sip.Response), "SHA-256")

	// Wrong answers with that nonce from the real user's address, 127.0.0.1.
	p := h.phone("UDP", false)
	r := reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5100>"}}
	for i := range 5 {
		req := p.request(sip.REGISTER, r)
		authorize(t, req, foreign, "1000", "guess"+strconv.Itoa(i), 1)
		wantStatus(t, p.resend(req), 401)
	}
	wantStatus(t, p.register(r, "secret"), 200)
}
