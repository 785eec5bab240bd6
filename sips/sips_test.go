package sips

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// uri parses s or fails the test.
func uri(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

// uriPtr is uri for the optional URIs of Inbound; "" means absent.
func uriPtr(t testing.TB, s string) *sip.Uri {
	t.Helper()
	if s == "" {
		return nil
	}
	u := uri(t, s)
	return &u
}

// readRequest parses a raw SIP request from testdata.
func readRequest(t testing.TB, name string) *sip.Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sip.NewParser().ParseSIP(b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("%s is a %T, not a request", name, m)
	}
	return req
}

// inboundOfRequest builds an Inbound as signaling does: Request-URI, top Record-Route,
// Contact, and the transport the request arrived on.
func inboundOfRequest(req *sip.Request, transport string) Inbound {
	in := Inbound{RequestURI: req.Recipient, Transport: transport}
	if rr := req.RecordRoute(); rr != nil {
		u := rr.Address
		in.TopRecordRoute = &u
	}
	if ct := req.Contact(); ct != nil {
		u := ct.Address
		in.Contact = &u
	}
	return in
}

// TestDecideInbound covers the inbound leg (sipsvc is UAS): the scheme of our response
// Contact, the transport, the secure flag, and which requests are refused and why.
func TestDecideInbound(t *testing.T) {
	seed := readRequest(t, "genesys_invite.sip")
	esc01 := readRequest(t, "rfc4475/esc01.dat")
	unkscm := readRequest(t, "rfc4475/unkscm.dat")

	tests := []struct {
		name string
		in   Inbound
		// want is checked when wantErr is nil.
		want    Decision
		wantErr error
	}{
		{
			name: "R22_T1_seed_invite_sips_transport_TCP_over_TLS",
			in:   inboundOfRequest(seed, "TLS"),
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R22"},
		},
		{
			name: "R2_esc01_user_part_sips_is_not_sips",
			in:   inboundOfRequest(esc01, "UDP"),
			want: Decision{Scheme: "sip", Transport: UDP, Secure: false, Rule: "R7"},
		},
		{
			name: "R2_esc01_over_TLS_stays_sip_R7",
			in:   inboundOfRequest(esc01, "TLS"),
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "R7"},
		},
		{
			name:    "R18_tel_scheme_416",
			in:      Inbound{RequestURI: uri(t, "tel:+15551234567"), Transport: "UDP"},
			wantErr: ErrUnsupportedScheme,
		},
		{
			name:    "R18_rfc4475_unkscm_416",
			in:      inboundOfRequest(unkscm, "TCP"),
			wantErr: ErrUnsupportedScheme,
		},
		{
			name:    "R18_urn_scheme_416",
			in:      Inbound{RequestURI: uri(t, "urn:service:sos"), Transport: "TLS"},
			wantErr: ErrUnsupportedScheme,
		},
		{
			name:    "R4_T6_P11_sips_ruri_over_UDP_refused",
			in:      Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50"), Contact: uriPtr(t, "sips:7789@172.21.83.24"), Transport: "UDP"},
			wantErr: ErrSIPSOverInsecure,
		},
		{
			name:    "T6_sips_ruri_over_TCP_refused",
			in:      Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50;transport=tcp"), Contact: uriPtr(t, "sips:7789@172.21.83.24"), Transport: "TCP"},
			wantErr: ErrSIPSOverInsecure,
		},
		{
			name:    "T6_sips_ruri_no_transport_known_refused",
			in:      Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50")},
			wantErr: ErrSIPSOverInsecure,
		},
		{
			name:    "R21_sips_ruri_sip_contact",
			in:      Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50"), Contact: uriPtr(t, "sip:7789@172.21.83.24:5061;transport=tls"), Transport: "TLS"},
			wantErr: ErrInconsistentContact,
		},
		{
			name: "R21_sips_ruri_no_contact_accepted",
			in:   Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50"), Transport: "TLS"},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R22"},
		},
		{
			name: "R22_sips_ruri_sip_record_route_still_sips",
			in: Inbound{RequestURI: uri(t, "sips:5000@172.21.83.50"), TopRecordRoute: uriPtr(t, "sip:edge.example;lr"),
				Contact: uriPtr(t, "sips:7789@172.21.83.24"), Transport: "TLS"},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R22"},
		},
		{
			// R25: the Request-URI is sip, so the leg is not secure even over TLS.
			name: "R22_R25_record_route_sips_over_TLS_not_secure",
			in: Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50"), TopRecordRoute: uriPtr(t, "sips:edge.example;lr"),
				Contact: uriPtr(t, "sip:7789@172.21.83.24"), Transport: "TLS"},
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			// R11, R37: the sips route is reached over TLS although the INVITE came over TCP.
			name: "R22_P6_R37_record_route_sips_over_TCP_reached_over_TLS_not_secure",
			in: Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50"), TopRecordRoute: uriPtr(t, "sips:edge.example;lr"),
				Transport: "TCP"},
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			name: "R22_R25_contact_sips_without_record_route_not_secure",
			in:   Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50"), Contact: uriPtr(t, "sips:7789@172.21.83.24"), Transport: "TLS"},
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			// Issue 13: a sips Contact over plain TCP is reached over TLS, never over TCP.
			name: "R11_R37_contact_sips_over_TCP_reached_over_TLS",
			in:   inboundOfRequest(readRequest(t, "sip_ruri_sips_contact.sip"), "TCP"),
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			name: "R4_R11_contact_sips_over_UDP_reached_over_TLS",
			in:   inboundOfRequest(readRequest(t, "sip_ruri_sips_contact.sip"), "UDP"),
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			name: "R25_record_route_sips_message_over_TLS_not_secure",
			in:   inboundOfRequest(readRequest(t, "sip_ruri_sips_record_route.sip"), "TLS"),
			want: Decision{Scheme: "sips", Asked: "sip", Transport: TLS, Secure: false, Rule: "R22"},
		},
		{
			name: "R22_sip_record_route_masks_sips_contact",
			in: Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50"), TopRecordRoute: uriPtr(t, "sip:edge.example;lr"),
				Contact: uriPtr(t, "sips:7789@172.21.83.24"), Transport: "TLS"},
			want: Decision{Scheme: "sip", Asked: "sip", Transport: TLS, Secure: false, Rule: "R7"},
		},
		{
			name: "R7_sip_over_tls_best_effort",
			in:   Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50;transport=tls"), Contact: uriPtr(t, "sip:7789@172.21.83.24;transport=tls"), Transport: "TLS"},
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "R7"},
		},
		{
			name: "R7_sip_over_UDP_plain",
			in:   Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50"), Contact: uriPtr(t, "sip:7789@172.21.83.24"), Transport: "UDP"},
			want: Decision{Scheme: "sip", Transport: UDP, Secure: false, Rule: "R7"},
		},
		{
			name: "R7_sip_over_TCP_plain",
			in:   Inbound{RequestURI: uri(t, "sip:5000@172.21.83.50;transport=tcp"), Transport: "tcp"},
			want: Decision{Scheme: "sip", Transport: TCP, Secure: false, Rule: "R7"},
		},
		{
			name: "R1_scheme_and_transport_case_insensitive",
			in:   Inbound{RequestURI: sip.Uri{Scheme: "SIPS", User: "5000", Host: "172.21.83.50"}, Contact: &sip.Uri{Scheme: "Sips", User: "7789", Host: "172.21.83.24"}, Transport: "tls"},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R22"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideInbound(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DecideInbound error = %v, want %v", err, tc.wantErr)
				}
				if got != (Decision{}) {
					t.Errorf("refused request still got a decision %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideInbound: unexpected error %v", err)
			}
			checkDecision(t, got, tc.want)
		})
	}
}

// checkDecision compares everything but the free-text Reason, which must be non-empty.
func checkDecision(t *testing.T, got, want Decision) {
	t.Helper()
	if got.Scheme != want.Scheme || got.Transport != want.Transport || got.Secure != want.Secure || got.Rule != want.Rule {
		t.Errorf("decision = {%s %s secure=%v %s}, want {%s %s secure=%v %s}",
			got.Scheme, got.Transport, got.Secure, got.Rule, want.Scheme, want.Transport, want.Secure, want.Rule)
	}
	if got.Reason == "" {
		t.Errorf("decision %+v has no reason", got)
	}
	if want.Asked != "" && got.Asked != want.Asked {
		t.Errorf("asked = %q, want %q", got.Asked, want.Asked)
	}
	// R25: the secure flag is exactly "a SIPS Request-URI over TLS"; a sip Request-URI over
	// TLS (best-effort) or with a sips Contact/Record-Route is not.
	if got.Secure != (got.Asked == "sips" && got.Transport == TLS) {
		t.Errorf("R25: secure=%v for a %s Request-URI over %s", got.Secure, got.Asked, got.Transport)
	}
	// R11, R37: a sips leg is always reached over TLS.
	if got.Scheme == "sips" && got.Transport != TLS {
		t.Errorf("R11: sips leg over %s", got.Transport)
	}
}

// TestDecideOutbound covers originated legs (sipsvc is UAC): fixed DN contacts, registered
// bindings and the interop styles.
func TestDecideOutbound(t *testing.T) {
	tests := []struct {
		name       string
		out        Outbound
		want       Decision
		wantErr    error
		wantPort   int // DefaultPort of the chosen transport, 0 = not checked
		targetText string
	}{
		{name: "R3_sips_no_transport_is_TLS_5061", targetText: "sips:7789@172.21.83.24",
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R3"}, wantPort: 5061},
		{name: "P2_sips_no_transport_aastra_TLS", targetText: "sips:7789@phone.example",
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R3"}, wantPort: 5061},
		{name: "R5_sips_transport_tcp_is_TLS", targetText: "sips:5000@172.21.83.50:5314;transport=tcp",
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R5"}, wantPort: 5061},
		{name: "R5_P3_sips_transport_TCP_uppercase_is_TLS", targetText: "sips:5000@172.21.83.50:5314;transport=TCP",
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R5"}},
		{name: "R6_P1_sips_transport_tls_accepted_is_TLS", targetText: "sips:5000@10.0.0.5;transport=tls",
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R6"}, wantPort: 5061},
		{name: "R4_sips_transport_udp_refused", targetText: "sips:b@10.0.0.5;transport=udp", wantErr: ErrSIPSOverUDP},
		{name: "R4_sips_transport_UDP_uppercase_refused", targetText: "sips:b@10.0.0.5;transport=UDP", wantErr: ErrSIPSOverUDP},
		// RFC 3261 §19.1.4: parameter names are case-insensitive; sipgo keeps them as written.
		{name: "R4_sips_Transport_param_name_case_refused", targetText: "sips:b@10.0.0.5;Transport=udp", wantErr: ErrSIPSOverUDP},
		{name: "R40_sip_no_transport_is_UDP_5060", targetText: "sip:6000@10.0.0.6",
			want: Decision{Scheme: "sip", Transport: UDP, Rule: "R40"}, wantPort: 5060},
		{name: "R40_sip_transport_tcp_is_TCP", targetText: "sip:6000@10.0.0.6:5060;transport=tcp",
			want: Decision{Scheme: "sip", Transport: TCP, Rule: "R40"}, wantPort: 5060},
		{name: "R40_sip_transport_udp_is_UDP", targetText: "sip:6000@10.0.0.6;transport=udp",
			want: Decision{Scheme: "sip", Transport: UDP, Rule: "R40"}},
		{name: "R40_sip_Transport_TCP_param_name_case", targetText: "sip:6000@10.0.0.6;Transport=TCP",
			want: Decision{Scheme: "sip", Transport: TCP, Rule: "R40"}},
		{name: "R7_P1_sip_transport_tls_best_effort", targetText: "sip:6000@10.0.0.6;transport=tls",
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "R7"}, wantPort: 5061},
		{name: "P4_style_sips_explicit", targetText: "sips:5000@10.0.0.5", out: Outbound{Style: dn.StyleSIPS},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R3"}},
		{name: "P4_style_sip_transport_tls_on_sips_contact", targetText: "sips:5000@10.0.0.5", out: Outbound{Style: dn.StyleSIPTransportTLS},
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "P4"}},
		{name: "P4_style_sip_best_effort_on_sips_contact", targetText: "sips:5000@10.0.0.5;transport=tcp", out: Outbound{Style: dn.StyleSIP},
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "P4"}},
		{name: "P4_style_does_not_rescue_R4", targetText: "sips:5000@10.0.0.5;transport=udp", out: Outbound{Style: dn.StyleSIP}, wantErr: ErrSIPSOverUDP},
		{name: "P4_style_ignored_on_plain_sip_contact", targetText: "sip:6000@10.0.0.6", out: Outbound{Style: dn.StyleSIPTransportTLS},
			want: Decision{Scheme: "sip", Transport: UDP, Rule: "R40"}},
		{name: "T4_R8_registered_sips_binding_always_sips_TLS", targetText: "sips:7789@172.21.83.24:5061",
			out:  Outbound{Registered: true, RegisteredSecure: true, RegisteredTransport: "TLS"},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R8"}},
		{name: "T4_R8_registered_secure_flag_upgrades_sip_contact", targetText: "sip:7789@172.21.83.24:5061",
			out:  Outbound{Registered: true, RegisteredSecure: true, RegisteredTransport: "TLS"},
			want: Decision{Scheme: "sips", Transport: TLS, Secure: true, Rule: "R8"}},
		{name: "T4_P4_registered_sips_binding_with_style", targetText: "sips:7789@172.21.83.24:5061",
			out:  Outbound{Registered: true, RegisteredSecure: true, Style: dn.StyleSIPTransportTLS},
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "P4"}},
		{name: "R32_registered_sip_binding_over_TCP", targetText: "sip:1000@192.0.2.10:40000;transport=tcp",
			out:  Outbound{Registered: true, RegisteredTransport: "tcp"},
			want: Decision{Scheme: "sip", Transport: TCP, Rule: "R32"}},
		{name: "R32_R7_registered_sip_binding_over_TLS_stays_sip", targetText: "sip:1000@192.0.2.10:40000;transport=tls",
			out:  Outbound{Registered: true, RegisteredTransport: "TLS"},
			want: Decision{Scheme: "sip", Transport: TLS, Secure: false, Rule: "R32"}},
		{name: "R32_registered_sip_binding_unknown_transport_from_param", targetText: "sip:1000@192.0.2.10:40000;transport=tcp",
			out:  Outbound{Registered: true},
			want: Decision{Scheme: "sip", Transport: TCP, Rule: "R32"}},
		{name: "R32_registered_sip_binding_defaults_UDP", targetText: "sip:1000@192.0.2.10:40000",
			out:  Outbound{Registered: true},
			want: Decision{Scheme: "sip", Transport: UDP, Rule: "R32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out
			out.Target = uri(t, tc.targetText)
			before := out.Target.String()
			got, err := DecideOutbound(out)
			if out.Target.String() != before {
				t.Errorf("DecideOutbound changed its input target to %s", out.Target.String())
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DecideOutbound(%s) error = %v, want %v", tc.targetText, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecideOutbound(%s): %v", tc.targetText, err)
			}
			checkDecision(t, got, tc.want)
			if tc.wantPort != 0 {
				if p := DefaultPort(got.Transport); p != tc.wantPort {
					t.Errorf("DefaultPort(%s) = %d, want %d", got.Transport, p, tc.wantPort)
				}
			}
		})
	}
}

// TestT5_TransportParamParsing is docs/sips.md T5: transport=tls, TCP and none on a sips URI all
// give TLS; transport=udp is refused (R4).
func TestT5_TransportParamParsing(t *testing.T) {
	tests := []struct {
		name, target string
		refused      bool
	}{
		{"T5_R6_sips_transport_tls", "sips:x@h;transport=tls", false},
		{"T5_R5_sips_transport_TCP", "sips:x@h;transport=TCP", false},
		{"T5_R3_sips_no_transport", "sips:x@h", false},
		{"T5_R4_sips_transport_udp", "sips:x@h;transport=udp", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecideOutbound(Outbound{Target: uri(t, tc.target)})
			if tc.refused {
				if !errors.Is(err, ErrSIPSOverUDP) {
					t.Fatalf("%s: error %v, want ErrSIPSOverUDP", tc.target, err)
				}
				return
			}
			if err != nil || d.Transport != TLS || d.Scheme != "sips" || DefaultPort(d.Transport) != 5061 {
				t.Fatalf("%s: %+v, %v; want sips over TLS to 5061", tc.target, d, err)
			}
		})
	}
}

// TestDefaultPort is RFC 3261 §19.1.2 Table 1 (R3).
func TestDefaultPort(t *testing.T) {
	tests := []struct {
		name, transport string
		want            int
	}{
		{"R3_TLS_5061", "TLS", 5061},
		{"R3_tls_lowercase_5061", "tls", 5061},
		{"R3_TCP_5060", "TCP", 5060},
		{"R3_UDP_5060", "UDP", 5060},
		{"R3_unknown_5060", "", 5060},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DefaultPort(tc.transport); got != tc.want {
				t.Errorf("DefaultPort(%q) = %d, want %d", tc.transport, got, tc.want)
			}
		})
	}
}

// TestIsSIPS: scheme detection is on the scheme only (R1, R2).
func TestIsSIPS(t *testing.T) {
	tests := []struct {
		name, uri string
		want      bool
	}{
		{"R1_sips", "sips:a@h", true},
		{"R1_sip_is_not_sips", "sip:a@h", false},
		{"R1_uppercase_SIPS", "SIPS:a@h", true},
		{"R2_esc01_user_part_sips_is_not_sips", "sip:sips%3Auser%40example.com@example.net", false},
		{"R2_host_named_sips_is_not_sips", "sip:a@sips.example.com", false},
		{"R7_sip_transport_tls_is_not_sips", "sip:a@h;transport=tls", false},
		{"R18_tel_is_not_sips", "tel:+15551234567", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := uri(t, tc.uri)
			if got := IsSIPS(&u); got != tc.want {
				t.Errorf("IsSIPS(%s) = %v, want %v", tc.uri, got, tc.want)
			}
		})
	}
}

// TestCheckPolicy covers the strict policy (R19, R20) and the per-leg exception (R14) on
// decisions derived from real requests and DN contacts: what the caller asked for is its
// Request-URI scheme and the transport it used (RFC 5630 §4), never its Contact or
// Record-Route, and the decisions are made by DecideInbound / DecideOutbound, not by the test.
func TestCheckPolicy(t *testing.T) {
	r19 := &Refusal{Status: 480, Reason: "Temporarily Unavailable", Warning: `380 "SIPS Not Allowed"`, Rule: "R19"}
	r20 := &Refusal{Status: 480, Reason: "Temporarily Unavailable", Warning: `381 "SIPS Required"`, Rule: "R20"}
	tests := []struct {
		name      string
		request   string // testdata file
		transport string // the transport it arrived on
		dnContact string
		policy    dn.Policy
		want      *Refusal
	}{
		{"R19_strict_sips_A_sip_B_480_380", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6", dn.PolicyStrict, r19},
		{"R20_R38_strict_sip_A_sips_B_480_381", "sip_ruri_plain.sip", "UDP", "sips:5000@10.0.0.5", dn.PolicyStrict, r20},
		{"R14_strict_sips_both_legs_bridged", "genesys_invite.sip", "TLS", "sips:5000@10.0.0.5", dn.PolicyStrict, nil},
		{"R14_strict_sip_both_legs_bridged", "sip_ruri_plain.sip", "UDP", "sip:6000@10.0.0.6", dn.PolicyStrict, nil},
		{"R14_per_leg_sips_A_sip_B_bridged", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6", dn.PolicyPerLeg, nil},
		{"R8_per_leg_sip_A_sips_B_bridged", "sip_ruri_plain.sip", "UDP", "sips:5000@10.0.0.5", dn.PolicyPerLeg, nil},
		{"per_leg_default_policy_bridges", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6", dn.PolicyDefault, nil},
		// Issue 13: a sips Contact does not make the caller "sips".
		{"R20_strict_sip_ruri_sips_contact_over_TCP_to_sips_DN_381", "sip_ruri_sips_contact.sip", "TCP", "sips:5000@10.0.0.5", dn.PolicyStrict, r20},
		{"R19_strict_sip_ruri_sips_contact_over_UDP_to_sip_DN_bridged", "sip_ruri_sips_contact.sip", "UDP", "sip:6000@10.0.0.6", dn.PolicyStrict, nil},
		{"R20_strict_sip_ruri_sips_record_route_to_sips_DN_381", "sip_ruri_sips_record_route.sip", "TLS", "sips:5000@10.0.0.5", dn.PolicyStrict, r20},
		// R25, R7: best-effort TLS (sip: over TLS) is not sips.
		{"R7_R20_strict_sip_ruri_over_TLS_to_sips_DN_381", "sip_ruri_plain.sip", "TLS", "sips:5000@10.0.0.5", dn.PolicyStrict, r20},
		{"R7_R19_strict_sips_A_to_sip_transport_tls_DN_380", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6;transport=tls", dn.PolicyStrict, r19},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := decidePair(t, inboundOfRequest(readRequest(t, tc.request), tc.transport), tc.dnContact)
			got := CheckPolicy(tc.policy, a, b)
			switch {
			case tc.want == nil && got != nil:
				t.Fatalf("CheckPolicy(A %+v, B %+v) = %+v, want bridged", a, b, *got)
			case tc.want != nil && got == nil:
				t.Fatalf("CheckPolicy(A %+v, B %+v) = bridged, want %+v", a, b, *tc.want)
			case tc.want != nil && *got != *tc.want:
				t.Fatalf("CheckPolicy = %+v, want %+v", *got, *tc.want)
			}
		})
	}
}

// decidePair returns the inbound decision for in and the outbound decision for a DN whose
// contact is dnContact: the two legs of one call.
func decidePair(t *testing.T, in Inbound, dnContact string) (a, b Decision) {
	t.Helper()
	a, err := DecideInbound(in)
	if err != nil {
		t.Fatal(err)
	}
	target, err := dn.ParseContact(dnContact)
	if err != nil {
		t.Fatal(err)
	}
	b, err = DecideOutbound(Outbound{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// TestLegPairs runs docs/sips.md T1–T3 through the pure rules: the inbound decision, the outbound
// decision for the DN's contact, and the policy check between the two.
func TestLegPairs(t *testing.T) {
	seed := readRequest(t, "genesys_invite.sip")
	plainA := inboundOfRequest(readRequest(t, "sip_ruri_plain.sip"), "UDP")
	tests := []struct {
		name            string
		in              Inbound
		dnContact       string
		policy          dn.Policy
		wantA, wantB    string // schemes
		wantBTransport  string
		wantRefusalRule string
	}{
		{"T1_R8_R22_sips_A_sips_B", inboundOfRequest(seed, "TLS"), "sips:5000@10.0.0.5:5061", dn.PolicyPerLeg, "sips", "sips", TLS, ""},
		{"T2_R14_per_leg_sips_A_plain_B", inboundOfRequest(seed, "TLS"), "sip:6000@10.0.0.6:5060", dn.PolicyPerLeg, "sips", "sip", UDP, ""},
		{"T2_R19_strict_sips_A_plain_B_refused", inboundOfRequest(seed, "TLS"), "sip:6000@10.0.0.6:5060", dn.PolicyStrict, "sips", "sip", UDP, "R19"},
		{"T3_R8_per_leg_plain_A_sips_B_upgraded", plainA, "sips:5000@10.0.0.5:5061", dn.PolicyPerLeg, "sip", "sips", TLS, ""},
		{"T3_R20_strict_plain_A_sips_B_refused", plainA, "sips:5000@10.0.0.5:5061", dn.PolicyStrict, "sip", "sips", TLS, "R20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := decidePair(t, tc.in, tc.dnContact)
			if a.Scheme != tc.wantA || b.Scheme != tc.wantB || b.Transport != tc.wantBTransport {
				t.Errorf("A=%s B=%s over %s, want A=%s B=%s over %s", a.Scheme, b.Scheme, b.Transport, tc.wantA, tc.wantB, tc.wantBTransport)
			}
			r := CheckPolicy(tc.policy, a, b)
			switch {
			case tc.wantRefusalRule == "" && r != nil:
				t.Errorf("refused %+v, want bridged", *r)
			case tc.wantRefusalRule != "" && (r == nil || r.Rule != tc.wantRefusalRule || r.Status != 480):
				t.Errorf("refusal %+v, want 480 by %s", r, tc.wantRefusalRule)
			}
		})
	}
}

// TestPartyURI: From/To of a leg carry the leg's scheme and no parameters (R8).
func TestPartyURI(t *testing.T) {
	tests := []struct {
		name, user, host string
		port             int
		scheme, want     string
	}{
		{"R8_sips_from", "7789", "172.21.83.24", 0, "sips", "sips:7789@172.21.83.24"},
		{"R8_sips_to_with_port", "5000", "172.21.83.50", 5314, "sips", "sips:5000@172.21.83.50:5314"},
		{"R14_per_leg_sip", "7789", "b2bua.example", 0, "sip", "sip:7789@b2bua.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := PartyURI(tc.user, tc.host, tc.port, tc.scheme)
			if got := u.String(); got != tc.want {
				t.Errorf("PartyURI = %s, want %s", got, tc.want)
			}
		})
	}
}

// assertNoTransportTLSOnSIPS is R6 as an invariant over any generated URI.
func assertNoTransportTLSOnSIPS(t testing.TB, u sip.Uri) {
	t.Helper()
	if !IsSIPS(&u) {
		return
	}
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "transport") && !strings.EqualFold(kv.V, "tcp") {
			t.Errorf("R6: %s carries transport=%s on a sips URI", u.String(), kv.V)
		}
	}
}

// FuzzOutboundURIs checks the R4/R6 invariants of DecideOutbound and TargetURI on arbitrary
// target URIs: a sips target over UDP is refused, and a written sips Request-URI never carries
// a transport other than tcp, nor two transport parameters.
func FuzzOutboundURIs(f *testing.F) {
	for _, s := range []string{
		"sips:7789@172.21.83.24", "sips:5000@172.21.83.50:5314;transport=TCP", "sips:x@h;transport=tls",
		"sips:x@h;Transport=UDP", "sip:x@h;transport=tls", "sip:x@h;transport=tcp;transport=udp", "tel:+1555",
		"sips:x@[2001:db8::1]:5061;transport=tls;lr", "sips:x@h;transport=tcp;transport=tls", "sip:sips%3Auser%40example.com@example.net",
	} {
		for _, style := range []dn.Style{dn.StyleDefault, dn.StyleSIPTransportTLS, dn.StyleSIP} {
			f.Add(s, string(style), false)
		}
		f.Add(s, "", true)
	}
	f.Fuzz(func(t *testing.T, s, style string, registeredSecure bool) {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			return
		}
		st := dn.Style(style)
		d, err := DecideOutbound(Outbound{Target: u, Registered: registeredSecure, RegisteredSecure: registeredSecure, Style: st})
		if err != nil {
			if !errors.Is(err, ErrSIPSOverUDP) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		got := TargetURI(u, d, st)
		if got.Scheme != d.Scheme {
			t.Fatalf("scheme %q, decision %q", got.Scheme, d.Scheme)
		}
		if d.Scheme == "sips" && d.Transport != TLS {
			t.Fatalf("R11: sips leg over %s", d.Transport)
		}
		assertNoTransportTLSOnSIPS(t, got)
		if d.Scheme == "sips" && countParam(got, "transport") > 1 {
			t.Fatalf("%s has several transport parameters", got.String())
		}
	})
}
