package sips

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestServiceRoute covers the scheme of the Service-Route a registrar returns (R34,
// RFC 5630 §5.2): sips URIs for a sips-only binding, sip URIs when the binding allows both.
func TestServiceRoute(t *testing.T) {
	tests := []struct {
		name     string
		routes   []string
		sipsOnly bool
		want     []string
	}{
		{"R34_sips_only_binding_gets_sips_from_sip_config", []string{"sip:edge.example.net;lr"}, true, []string{"sips:edge.example.net;lr"}},
		{"R34_sips_only_binding_keeps_sips_config", []string{"sips:edge.example.net:5061;lr"}, true, []string{"sips:edge.example.net:5061;lr"}},
		{"R34_plain_binding_gets_sip_from_sips_config_allow_both", []string{"sips:edge.example.net;lr"}, false, []string{"sip:edge.example.net;lr"}},
		{"R34_plain_binding_keeps_sip_config", []string{"sip:edge.example.net:5060;lr"}, false, []string{"sip:edge.example.net:5060;lr"}},
		{"R34_order_and_params_kept", []string{"sip:a.example;lr;transport=tcp", "sips:b.example;lr"}, true,
			[]string{"sips:a.example;lr;transport=tcp", "sips:b.example;lr"}},
		{"R34_R6_sips_route_drops_transport_tls", []string{"sip:edge.example.net;transport=tls;lr"}, true, []string{"sips:edge.example.net;lr"}},
		{"R34_plain_binding_keeps_transport_tls", []string{"sips:edge.example.net;lr;transport=TLS"}, false, []string{"sip:edge.example.net;lr;transport=TLS"}},
		{"R34_no_routes", nil, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := make([]sip.Uri, len(tc.routes))
			for i, r := range tc.routes {
				in[i] = uri(t, r)
			}
			before := uriStrings(in)
			got := uriStrings(ServiceRoute(in, tc.sipsOnly))
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ServiceRoute(%v, sipsOnly=%v) = %v, want %v", tc.routes, tc.sipsOnly, got, tc.want)
			}
			if after := uriStrings(in); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("ServiceRoute changed its input: %v → %v", before, after)
			}
		})
	}
}

// TestRouteSet covers the preloaded Route set built from a binding's Path (RFC 3327 §5.4):
// kept in order, upgraded to sips on a sips leg (R12), refused when an entry cannot be used.
func TestRouteSet(t *testing.T) {
	sipsLeg := Decision{Scheme: "sips", Transport: TLS, Secure: true}
	sipLeg := Decision{Scheme: "sip", Transport: TCP}
	tests := []struct {
		name    string
		path    []string
		d       Decision
		want    []string
		wantErr string
	}{
		{"RFC3327_no_path", nil, sipLeg, nil, ""},
		{"RFC3327_order_kept_on_sip_leg", []string{"sip:edge.example.net;lr", "sip:core.example.net:5070;lr"}, sipLeg,
			[]string{"sip:edge.example.net;lr", "sip:core.example.net:5070;lr"}, ""},
		{"R28_R35_sips_path_on_sips_leg_stays_sips", []string{"sips:edge.example.net;lr", "sips:core.example.net;lr"}, sipsLeg,
			[]string{"sips:edge.example.net;lr", "sips:core.example.net;lr"}, ""},
		{"R12_sip_entries_become_sips_on_sips_leg", []string{"sip:edge.example.net:5061;lr"}, sipsLeg, []string{"sips:edge.example.net:5061;lr"}, ""},
		{"R12_R6_transport_tls_dropped_on_sips_leg", []string{"sip:edge.example.net;lr;transport=tls"}, sipsLeg, []string{"sips:edge.example.net;lr"}, ""},
		{"R12_R4_transport_udp_dropped_when_sip_entry_becomes_sips", []string{"sip:edge.example.net;lr;transport=udp"}, sipsLeg, []string{"sips:edge.example.net;lr"}, ""},
		{"R13_sips_entry_kept_on_sip_leg", []string{"sips:edge.example.net;lr"}, sipLeg, []string{"sips:edge.example.net;lr"}, ""},
		{"R4_sips_entry_with_udp_refused", []string{"sip:a.example;lr", "sips:edge.example.net;lr;transport=udp"}, sipLeg, nil, "path[1]"},
		{"RFC3327_not_a_sip_uri_refused", []string{"http://edge.example.net"}, sipLeg, nil, "path[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RouteSet(tc.path, tc.d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RouteSet(%v) error = %v, want one naming %s", tc.path, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RouteSet(%v): %v", tc.path, err)
			}
			if s := uriStrings(got); strings.Join(s, ",") != strings.Join(tc.want, ",") {
				t.Errorf("RouteSet(%v, %s) = %v, want %v", tc.path, tc.d.Scheme, s, tc.want)
			}
		})
	}
}

func uriStrings(us []sip.Uri) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.String())
	}
	return out
}

// TestParseServiceRoute covers which configured Service-Route entries are accepted (R34, R4).
func TestParseServiceRoute(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // "" means accepted
	}{
		{"R34_sip_loose_route", "sip:edge.example.net;lr", ""},
		{"R34_sips_with_port", "sips:edge.example.net:5061;lr", ""},
		{"R34_sip_transport_tcp", "sip:edge.example.net;transport=tcp;lr", ""},
		{"R34_R4_sip_transport_udp_could_become_sips", "sip:edge.example.net;transport=udp;lr", "transport=udp"},
		{"R34_R4_sips_transport_udp", "sips:edge.example.net;transport=udp", "R4"},
		{"R34_not_sip", "http://edge.example.net", "scheme"},
		{"R34_no_host", "sip:", "no host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseServiceRoute(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ParseServiceRoute(%q) = %v, want accepted", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ParseServiceRoute(%q) = %v, want an error mentioning %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
