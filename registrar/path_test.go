package registrar_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
)

// headerValues returns the values of every header called name in a response, in order.
func headerValues(res *sip.Response, name string) []string {
	var out []string
	for _, h := range res.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// TestRegister_RFC3327_PathStoredAndEchoed: the Path values of a REGISTER are stored with
// each binding, in order, across Path headers and comma-separated values; the 200 OK echoes
// them only when the UA sent "Supported: path" (RFC 3327 §5.3); a refresh without Path
// clears them; a Path that cannot be routed to is refused with 400 and stores nothing.
func TestRegister_RFC3327_PathStoredAndEchoed(t *testing.T) {
	tests := []struct {
		name      string
		ruri      string // Request-URI scheme
		contacts  []string
		path      []string // Path header values, one header each
		supported string   // Supported header; "" means none
		code      int
		wantPath  []string // stored on every binding
		wantEcho  []string // Path header values of the 200
	}{
		{
			name: "RFC3327_order_kept_across_headers_and_commas", ruri: "sip",
			contacts: []string{"<sip:7789@127.0.0.1:5070;transport=tls>", "<sip:7789@127.0.0.1:5071;transport=tls>"},
			path:     []string{"<sip:edge.example.net;lr>, <sip:core.example.net:5070;lr>", "<sip:third.example.net;lr>"},
			code:     200,
			wantPath: []string{"sip:edge.example.net;lr", "sip:core.example.net:5070;lr", "sip:third.example.net;lr"},
		},
		{
			name: "RFC3327_echoed_with_supported_path", ruri: "sip",
			contacts:  []string{"<sip:7789@127.0.0.1:5070;transport=tls>"},
			path:      []string{"<sip:edge.example.net;lr>,<sip:core.example.net;lr>"},
			supported: "outbound, path",
			code:      200,
			wantPath:  []string{"sip:edge.example.net;lr", "sip:core.example.net;lr"},
			wantEcho:  []string{"<sip:edge.example.net;lr>", "<sip:core.example.net;lr>"},
		},
		{
			name: "R28_sips_binding_keeps_sips_path", ruri: "sips",
			contacts:  []string{"<sips:7789@127.0.0.1:5061>"},
			path:      []string{"<sips:edge.example.net;lr>"},
			supported: "path",
			code:      200,
			wantPath:  []string{"sips:edge.example.net;lr"},
			wantEcho:  []string{"<sips:edge.example.net;lr>"},
		},
		{
			name: "RFC3327_no_path_no_echo", ruri: "sip",
			contacts: []string{"<sip:7789@127.0.0.1:5070;transport=tls>"}, supported: "path", code: 200,
		},
		{
			name: "RFC3327_malformed_path_refused", ruri: "sip",
			contacts: []string{"<sip:7789@127.0.0.1:5070;transport=tls>"}, path: []string{"<http://edge.example.net>"}, code: 400,
		},
		{
			name: "R4_sips_path_over_udp_refused", ruri: "sip",
			contacts: []string{"<sip:7789@127.0.0.1:5070;transport=tls>"}, path: []string{"<sips:edge.example.net;transport=udp;lr>"}, code: 400,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.addDN("7789", "*", "")
			p := h.phone("TLS", false)
			var hdrs []sip.Header
			for _, v := range tc.path {
				hdrs = append(hdrs, sip.NewHeader("Path", v))
			}
			if tc.supported != "" {
				hdrs = append(hdrs, sip.NewHeader("Supported", tc.supported))
			}
			res := p.register(reg{number: "7789", ruriScheme: tc.ruri, contacts: tc.contacts, headers: hdrs}, "")
			wantStatus(t, res, tc.code)
			bs := h.bindings("7789")
			if tc.code != 200 {
				if len(bs) != 0 {
					t.Fatalf("refused REGISTER stored %+v", bs)
				}
				return
			}
			if len(bs) != len(tc.contacts) {
				t.Fatalf("%d bindings, want %d: %+v", len(bs), len(tc.contacts), bs)
			}
			for _, b := range bs {
				if !slices.Equal(b.Path, tc.wantPath) {
					t.Errorf("binding %s Path = %q, want %q", b.Contact, b.Path, tc.wantPath)
				}
			}
			if got := headerValues(res, "Path"); !slices.Equal(got, tc.wantEcho) {
				t.Errorf("200 Path = %q, want %q\n%s", got, tc.wantEcho, res)
			}
			if got := headerValues(res, "Service-Route"); len(got) != 0 {
				t.Errorf("Service-Route %q without registrar.service_route", got)
			}
		})
	}
}

// TestRegister_RFC3327_RefreshReplacesPath: a refresh stores the new REGISTER's Path (none
// clears it), and a query or removal does not echo a Path.
func TestRegister_RFC3327_RefreshReplacesPath(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("7789", "*", "")
	p := h.phone("TCP", false)
	contact := []string{"<sip:7789@127.0.0.1:5070;transport=tcp>"}
	supported := sip.NewHeader("Supported", "path")
	wantStatus(t, p.register(reg{number: "7789", contacts: contact,
		headers: []sip.Header{sip.NewHeader("Path", "<sip:old.example.net;lr>"), supported}}, ""), 200)
	wantStatus(t, p.register(reg{number: "7789", contacts: contact,
		headers: []sip.Header{sip.NewHeader("Path", "<sip:new.example.net;lr>"), supported}}, ""), 200)
	if bs := h.bindings("7789"); len(bs) != 1 || !slices.Equal(bs[0].Path, []string{"sip:new.example.net;lr"}) {
		t.Fatalf("after refresh with a new Path: %+v", bs)
	}
	query := p.register(reg{number: "7789", headers: []sip.Header{supported}}, "")
	wantStatus(t, query, 200)
	if got := headerValues(query, "Path"); len(got) != 0 {
		t.Errorf("query echoes Path %q", got)
	}
	wantStatus(t, p.register(reg{number: "7789", contacts: contact}, ""), 200)
	if bs := h.bindings("7789"); len(bs) != 1 || len(bs[0].Path) != 0 {
		t.Fatalf("after refresh without Path: %+v", bs)
	}
}

// TestRegister_R34_ServiceRoute: with registrar.service_route set, every 200 OK to a
// REGISTER carries Service-Route in the configured order, as sips URIs when the REGISTER's
// Contacts are all sips and as sip URIs otherwise (RFC 5630 §5.2: SIP URIs allow both SIP
// and SIPS); refused REGISTERs carry none.
func TestRegister_R34_ServiceRoute(t *testing.T) {
	routes := []string{"sip:edge.example.net;lr", "sips:core.example.net:5061;lr"}
	tests := []struct {
		name      string
		transport string
		ruri      string
		aor       string
		contacts  []string
		expires   string
		code      int
		want      []string
	}{
		{"R34_sips_contact_gets_sips_routes", "TLS", "sips", "sips", []string{"<sips:7789@127.0.0.1:5061>"}, "", 200,
			[]string{"<sips:edge.example.net;lr>", "<sips:core.example.net:5061;lr>"}},
		{"R34_sip_contact_gets_sip_routes_allow_both", "TLS", "sip", "sip", []string{"<sip:7789@127.0.0.1:5061;transport=tls>"}, "", 200,
			[]string{"<sip:edge.example.net;lr>", "<sip:core.example.net:5061;lr>"}},
		{"R34_sip_contact_over_udp_gets_sip_routes", "UDP", "sip", "sip", []string{"<sip:7789@127.0.0.1:5070>"}, "", 200,
			[]string{"<sip:edge.example.net;lr>", "<sip:core.example.net:5061;lr>"}},
		{"R34_mixed_contacts_get_sip_routes", "TLS", "sips", "sip", []string{"<sips:7789@127.0.0.1:5061>", "<sip:7789@127.0.0.1:5062;transport=tls>"}, "", 200,
			[]string{"<sip:edge.example.net;lr>", "<sip:core.example.net:5061;lr>"}},
		{"R34_query_gets_sip_routes", "TLS", "sips", "sips", nil, "", 200,
			[]string{"<sip:edge.example.net;lr>", "<sip:core.example.net:5061;lr>"}},
		{"R34_remove_all_gets_sip_routes", "UDP", "sip", "sip", []string{"*"}, "0", 200,
			[]string{"<sip:edge.example.net;lr>", "<sip:core.example.net:5061;lr>"}},
		{"R34_R28_refused_register_gets_none", "TLS", "sip", "sip", []string{"<sips:7789@127.0.0.1:5061>"}, "", 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, func(c *registrar.Config) { c.ServiceRoute = routes })
			h.addDN("7789", "*", "")
			p := h.phone(tc.transport, false)
			res := p.register(reg{number: "7789", ruriScheme: tc.ruri, aorScheme: tc.aor, contacts: tc.contacts, expires: tc.expires}, "")
			wantStatus(t, res, tc.code)
			if got := headerValues(res, "Service-Route"); !slices.Equal(got, tc.want) {
				t.Errorf("Service-Route = %q, want %q\n%s", got, tc.want, res)
			}
		})
	}
}

// TestNew_R34_BadServiceRoute: registrar.New refuses a Service-Route entry it could not
// return, naming the entry.
func TestNew_R34_BadServiceRoute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []string
		want   string
	}{
		{"R34_R4_udp", []string{"sip:edge.example.net;lr", "sip:core.example.net;transport=udp;lr"}, "service_route[1]"},
		{"R34_scheme", []string{"tel:+15551234"}, "service_route[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registrar.New(registrar.Config{Store: store.NewMemory(), ServiceRoute: tc.routes})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%q) = %v, want an error naming %s", tc.routes, err, tc.want)
			}
		})
	}
	if _, err := registrar.New(registrar.Config{Store: store.NewMemory(), ServiceRoute: []string{"sips:edge.example.net;lr"}}); err != nil {
		t.Fatalf("New(good route): %v", err)
	}
}
