package registrar_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// TestRegister_Bindings walks one DN through several contacts, refresh, query, removal of
// one and removal of all.
func TestRegister_Bindings(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	p := h.phone("TCP", false)
	a, b, c := "sip:1000@127.0.0.1:5101;transport=tcp", "sip:1000@127.0.0.1:5102;transport=tcp", "sip:1000@127.0.0.1:5103;transport=tcp"

	// Several contacts in one REGISTER, with their own expiries.
	res := p.register(reg{number: "1000", contacts: []string{"<" + a + ">", "<" + b + ">;expires=120"}, expires: "600"}, "secret")
	wantStatus(t, res, 200)
	if got := contactsOf(res); len(got) != 2 {
		t.Fatalf("200 lists %v", got)
	}
	// Another device of the same DN, over another transport.
	q := h.phone("UDP", false)
	wantStatus(t, q.register(reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5104>"}}, "secret"), 200)
	res = p.register(reg{number: "1000", contacts: []string{"<" + c + ">"}, expires: "300"}, "secret")
	wantStatus(t, res, 200)
	want := map[string]string{a: "expires=600", b: "expires=120", c: "expires=300", "sip:1000@127.0.0.1:5104": "expires=3600"}
	got := contactsOf(res)
	if len(got) != 4 {
		t.Fatalf("200 lists %d bindings, want every current one (4): %v", len(got), got)
	}
	for _, v := range got {
		u := v[strings.Index(v, "<")+1 : strings.Index(v, ">")]
		if w, ok := want[u]; !ok || !strings.Contains(v, w) {
			t.Fatalf("Contact %q: want %q", v, w)
		}
	}

	// Refresh a: same Call-ID, higher CSeq, new expiry.
	h.clock.Add(100 * time.Second)
	res = p.register(reg{number: "1000", contacts: []string{"<" + a + ">"}, expires: "900"}, "secret")
	wantStatus(t, res, 200)
	for _, bd := range h.bindings("1000") {
		if bd.Contact == a && bd.Expires.Sub(h.clock.Now()) != 900*time.Second {
			t.Fatalf("refresh: expiry %s", bd.Expires.Sub(h.clock.Now()))
		}
	}
	if h.events.count(signaling.EventRegistrationRefresh) != 1 {
		t.Fatalf("events %v", h.events.kinds())
	}

	// Query: no Contact lists the bindings and changes nothing.
	res = p.register(reg{number: "1000"}, "secret")
	wantStatus(t, res, 200)
	if len(contactsOf(res)) != 4 {
		t.Fatalf("query lists %v", contactsOf(res))
	}

	// b expired (120 s) after another 30 s: gone from reads; Purge reports it.
	h.clock.Add(30 * time.Second)
	if n := len(h.bindings("1000")); n != 3 {
		t.Fatalf("%d bindings after b expired, want 3", n)
	}
	n, err := h.reg.Purge(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}

	// Expires: 0 removes one.
	res = p.register(reg{number: "1000", contacts: []string{"<" + c + ">"}, expires: "0"}, "secret")
	wantStatus(t, res, 200)
	if len(contactsOf(res)) != 2 || len(h.bindings("1000")) != 2 {
		t.Fatalf("after removing c: %v", contactsOf(res))
	}
	// Contact: * with Expires: 0 removes all.
	res = p.register(reg{number: "1000", contacts: []string{"*"}, expires: "0"}, "secret")
	wantStatus(t, res, 200)
	if len(contactsOf(res)) != 0 || len(h.bindings("1000")) != 0 {
		t.Fatalf("after Contact: *: %v / %v", contactsOf(res), h.bindings("1000"))
	}
	if n := h.events.count(signaling.EventRegistrationRemoved); n != 4 {
		t.Fatalf("%d removed events, want 4 (purge, expires 0, star ×2): %v", n, h.events.kinds())
	}
}

// TestRegister_Expires checks Min-Expires (423), clamping to MaxExpires and the contact
// parameter winning over the header.
func TestRegister_Expires(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1001", "*", "")
	tests := []struct {
		name    string
		contact string
		expires string
		want    int
		stored  time.Duration
		minHdr  string
	}{
		{"default", "<sip:1001@127.0.0.1:5201>", "", 200, time.Hour, ""},
		{"header", "<sip:1001@127.0.0.1:5202>", "120", 200, 120 * time.Second, ""},
		{"param wins", "<sip:1001@127.0.0.1:5203>;expires=90", "3000", 200, 90 * time.Second, ""},
		{"too brief header", "<sip:1001@127.0.0.1:5204>", "30", 423, 0, "60"},
		{"too brief param", "<sip:1001@127.0.0.1:5205>;expires=59", "", 423, 0, "60"},
		{"clamped", "<sip:1001@127.0.0.1:5206>", "99999", 200, 7200 * time.Second, ""},
		{"max uint32 clamped", "<sip:1001@127.0.0.1:5207>", "4294967295", 200, 7200 * time.Second, ""},
	}
	p := h.phone("UDP", false)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := p.register(reg{number: "1001", contacts: []string{tc.contact}, expires: tc.expires}, "")
			wantStatus(t, res, tc.want)
			if tc.minHdr != "" {
				if mh := res.GetHeader("Min-Expires"); mh == nil || mh.Value() != tc.minHdr {
					t.Fatalf("Min-Expires = %v, want %s", mh, tc.minHdr)
				}
			}
			uri := tc.contact[1:strings.Index(tc.contact, ">")]
			var found *dn.Binding
			for _, b := range h.bindings("1001") {
				if b.Contact == uri {
					found = &b
				}
			}
			if tc.want != 200 {
				if found != nil {
					t.Fatal("rejected REGISTER stored a binding")
				}
				return
			}
			if found == nil || found.Expires.Sub(h.clock.Now()) != tc.stored {
				t.Fatalf("binding %+v, want expiry %s", found, tc.stored)
			}
		})
	}
}

// TestRegister_BadInput: malformed or absurd requests get a 4xx and change nothing. These
// go over the wire; requests sipgo cannot parse are covered in TestServeRegister_Raw.
func TestRegister_BadInput(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1001", "*", "")
	p := h.phone("UDP", false)
	wantStatus(t, p.register(reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5300>"}}, ""), 200)
	before := h.bindings("1001")
	tests := []struct {
		name     string
		contacts []string
		expires  string
		want     int
	}{
		{"negative Expires", []string{"<sip:1001@127.0.0.1:5301>"}, "-1", 400},
		{"huge Expires", []string{"<sip:1001@127.0.0.1:5301>"}, "99999999999", 400},
		{"non-numeric Expires", []string{"<sip:1001@127.0.0.1:5301>"}, "soon", 400},
		{"bad expires param", []string{"<sip:1001@127.0.0.1:5301>;expires=x"}, "", 400},
		{"non-SIP contact", []string{"<mailto:a@b.example>"}, "", 400},
		{"star without Expires", []string{"*"}, "", 400},
		{"star with non-zero Expires", []string{"*"}, "60", 400},
		{"star with another contact", []string{"*", "<sip:1001@127.0.0.1:5301>"}, "0", 400},
		{"one bad among good", []string{"<sip:1001@127.0.0.1:5302>", "<sip:1001@127.0.0.1:5303>;expires=-5"}, "", 400},
		{"one too brief among good", []string{"<sip:1001@127.0.0.1:5302>", "<sip:1001@127.0.0.1:5303>;expires=5"}, "", 423},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, p.register(reg{number: "1001", contacts: tc.contacts, expires: tc.expires}, ""), tc.want)
			after := h.bindings("1001")
			if len(after) != len(before) || !reflect.DeepEqual(after[0], before[0]) {
				t.Fatalf("bindings changed: %+v", after)
			}
		})
	}
	// An old CSeq on the same Call-ID is out of order (RFC 3261 §10.3 step 7).
	req := p.request(sip.REGISTER, reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5300>"}})
	res := p.do(req)
	wantStatus(t, res, 401)
	req.CSeq().SeqNo = 1 // authorize makes it 2, the stored binding's CSeq
	authorize(t, req, challenge(t, res, "SHA-256"), "1001", testPassword("1001"), 1)
	wantStatus(t, p.resend(req), 500)
}

// TestRegister_SipsOverNonTLSRefused: a sips REGISTER (sips Request-URI or sips Contact)
// that did not arrive over TLS gets 480 with Warning 380 (docs/sips.md T6, P11).
func TestRegister_SipsOverNonTLSRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	for _, tp := range []string{"UDP", "TCP"} {
		for _, tc := range []struct {
			name    string
			ruri    string
			contact string
		}{
			{"sips Request-URI", "sips", "<sip:7789@127.0.0.1:5400>"},
			{"sips Request-URI and Contact", "sips", "<sips:7789@127.0.0.1:5400>"},
		} {
			t.Run(tp+"/"+tc.name, func(t *testing.T) {
				p := h.phone(tp, false)
				res := p.register(reg{number: "7789", ruriScheme: tc.ruri, contacts: []string{tc.contact}, transport: tp}, "")
				wantStatus(t, res, 480)
				if w := res.GetHeader("Warning"); w == nil || !strings.HasPrefix(w.Value(), "380 ") {
					t.Fatalf("Warning = %v, want 380", w)
				}
				if len(h.bindings("7789")) != 0 {
					t.Fatal("binding stored")
				}
			})
		}
	}
}

// TestRegister_T4_SipsBindingStoredWithoutTransport: the Genesys example: sips REGISTER over
// TLS with Contact ;transport=tls → Secure binding stored without transport.
func TestRegister_T4_SipsBindingStoredWithoutTransport(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "secret")
	p := h.phone("TLS", false)
	res := p.register(reg{number: "7789", aorScheme: "sips", ruriScheme: "sips",
		contacts: []string{"<sips:7789@127.0.0.1:5061;transport=tls>"}}, "secret")
	wantStatus(t, res, 200)
	bs := h.bindings("7789")
	if len(bs) != 1 {
		t.Fatalf("bindings %+v", bs)
	}
	b := bs[0]
	if b.Contact != "sips:7789@127.0.0.1:5061" || !b.Secure || b.Transport != "TLS" || !strings.HasPrefix(b.Source, "127.0.0.1:") {
		t.Fatalf("binding %+v", b)
	}
	if got := contactsOf(res); len(got) != 1 || !strings.HasPrefix(got[0], "<sips:7789@127.0.0.1:5061>;expires=") {
		t.Fatalf("200 Contact %v", got)
	}
}

func TestRegister_R26_SipsAORNeedsSipsContacts(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	p := h.phone("TLS", false)
	res := p.register(reg{number: "7789", aorScheme: "sips", ruriScheme: "sips",
		contacts: []string{"<sips:7789@127.0.0.1:5061>", "<sip:7789@127.0.0.1:5062;transport=tls>"}}, "")
	wantStatus(t, res, 400)
	if len(h.bindings("7789")) != 0 {
		t.Fatal("binding stored")
	}
}

// TestRegister_R27_SipAndSipsAORAreOneUser: a binding made under sips:7789 is the binding
// of sip:7789 too.
func TestRegister_R27_SipAndSipsAORAreOneUser(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "secret")
	p := h.phone("TLS", false)
	wantStatus(t, p.register(reg{number: "7789", aorScheme: "sips", ruriScheme: "sips",
		contacts: []string{"<sips:7789@127.0.0.1:5061>"}}, "secret"), 200)
	// A sip: AOR query over TLS sees the same binding.
	res := p.register(reg{number: "7789", aorScheme: "sip"}, "secret")
	wantStatus(t, res, 200)
	if got := contactsOf(res); len(got) != 1 || !strings.Contains(got[0], "sips:7789@127.0.0.1:5061") {
		t.Fatalf("sip: AOR sees %v", got)
	}
	// And so does the B2BUA's Directory view (the store).
	var dir signaling.Directory = h.store
	bs, err := dir.Bindings(context.Background(), "7789")
	if err != nil || len(bs) != 1 {
		t.Fatalf("Directory.Bindings = %v, %v", bs, err)
	}
}

func TestRegister_R28_SipsContactNeedsSipsRequestURI(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	p := h.phone("TLS", false)
	res := p.register(reg{number: "7789", ruriScheme: "sip", contacts: []string{"<sips:7789@127.0.0.1:5061>"}}, "")
	wantStatus(t, res, 400)
	if len(h.bindings("7789")) != 0 {
		t.Fatal("binding stored")
	}
}

func TestRegister_R28_SipsContactNeedsSipsPath(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	p := h.phone("TLS", false)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"<sip:edge.example.net;lr>", 400},
		{"<sips:edge.example.net;lr>, <sip:core.example.net;lr>", 400},
		{"<sips:edge.example.net;lr>", 200},
		{"<sips:edge.example.net;lr>,<sips:core.example.net;lr>", 200},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res := p.register(reg{number: "7789", ruriScheme: "sips", contacts: []string{"<sips:7789@127.0.0.1:5061>"},
				headers: []sip.Header{sip.NewHeader("Path", tc.path)}}, "")
			wantStatus(t, res, tc.want)
			if tc.want != 200 && len(h.bindings("7789")) != 0 {
				t.Fatal("binding stored")
			}
		})
	}
}

// TestRegister_R29_SchemeChangeReplacesBinding: the same device re-registering with the
// other scheme replaces its binding, both ways, and within one REGISTER the later wins.
func TestRegister_R29_SchemeChangeReplacesBinding(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	p := h.phone("TLS", false)
	steps := []struct {
		ruri     string
		contacts []string
		want     string
		secure   bool
	}{
		{"sip", []string{"<sip:7789@127.0.0.1:5061;transport=tls>"}, "sip:7789@127.0.0.1:5061;transport=tls", false},
		{"sips", []string{"<sips:7789@127.0.0.1:5061;transport=tls>"}, "sips:7789@127.0.0.1:5061", true},
		{"sip", []string{"<sip:7789@127.0.0.1:5061;transport=tls>"}, "sip:7789@127.0.0.1:5061;transport=tls", false},
		{"sips", []string{"<sip:7789@127.0.0.1:5061;transport=tls>", "<sips:7789@127.0.0.1:5061>"}, "sips:7789@127.0.0.1:5061", true},
	}
	for i, s := range steps {
		wantStatus(t, p.register(reg{number: "7789", ruriScheme: s.ruri, contacts: s.contacts}, ""), 200)
		bs := h.bindings("7789")
		if len(bs) != 1 || bs[0].Contact != s.want || bs[0].Secure != s.secure {
			t.Fatalf("step %d: bindings %+v, want one %s", i, bs, s.want)
		}
	}
}

// TestRegister_RestartPersistence registers against the bolt store, restarts the store and
// the registrar, and checks the binding is still there and refreshable.
func TestRegister_RestartPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sipsvc.db")
	st, err := store.OpenBolt(ctx, store.BoltConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, st)
	h.addDN("7789", "*", "secret")
	p := h.phone("TLS", false)
	wantStatus(t, p.register(reg{number: "7789", aorScheme: "sips", ruriScheme: "sips",
		contacts: []string{"<sips:7789@127.0.0.1:5061;transport=tls>"}}, "secret"), 200)
	before := h.bindings("7789")
	h.cancel()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := store.OpenBolt(ctx, store.BoltConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st2.Close() })
	h2 := newHarness(t, st2)
	after := h2.bindings("7789")
	if len(after) != 1 || after[0].Contact != before[0].Contact || after[0].Source != before[0].Source || !after[0].Secure ||
		!after[0].Expires.Equal(before[0].Expires) {
		t.Fatalf("after restart %+v, before %+v", after, before)
	}
	p2 := h2.phone("TLS", false)
	wantStatus(t, p2.register(reg{number: "7789", aorScheme: "sips", ruriScheme: "sips",
		contacts: []string{"<sips:7789@127.0.0.1:5061>"}}, "secret"), 200)
	if n := len(h2.bindings("7789")); n != 1 {
		t.Fatalf("%d bindings after re-register", n)
	}
}

// TestRegistrar_ListRemove covers the control-plane methods.
func TestRegistrar_ListRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1001", "*", "")
	p := h.phone("UDP", false)
	wantStatus(t, p.register(reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5501>", "<sip:1001@127.0.0.1:5502>"}}, ""), 200)
	ctx := context.Background()
	bs, err := h.reg.List(ctx, "1001")
	if err != nil || len(bs) != 2 {
		t.Fatalf("List = %v, %v", bs, err)
	}
	if _, err := h.reg.List(ctx, "4040"); !errors.Is(err, dn.ErrNotFound) {
		t.Fatalf("List(unknown) = %v", err)
	}
	if err := h.reg.Remove(ctx, "1001", "sip:1001@127.0.0.1:5501"); err != nil {
		t.Fatal(err)
	}
	if err := h.reg.Remove(ctx, "1001", dn.BindingKey("sip:1001@127.0.0.1:5502")); err != nil {
		t.Fatal(err)
	}
	if err := h.reg.Remove(ctx, "1001", "sip:1001@127.0.0.1:5502"); !errors.Is(err, dn.ErrNotFound) {
		t.Fatalf("second Remove = %v", err)
	}
	if n := h.events.count(signaling.EventRegistrationRemoved); n != 2 {
		t.Fatalf("%d removed events", n)
	}
}

// TestRegistrar_Run purges expired bindings in the background and stops with ctx.
func TestRegistrar_Run(t *testing.T) {
	h := newHarness(t, nil, func(c *registrar.Config) { c.PurgeInterval = 10 * time.Millisecond })
	h.addDN("1001", "*", "")
	p := h.phone("UDP", false)
	wantStatus(t, p.register(reg{number: "1001", contacts: []string{"<sip:1001@127.0.0.1:5501>"}, expires: "60"}, ""), 200)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.reg.Run(ctx) }()
	h.clock.Add(61 * time.Second)
	eventually(t, func() error {
		if h.events.count(signaling.EventRegistrationRemoved) != 1 {
			return errors.New("no removed event yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}
