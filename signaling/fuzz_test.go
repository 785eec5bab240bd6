package signaling

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/sips"
)

// readMessage parses a raw SIP message from testdata.
func readMessage(t testing.TB, name string) sip.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sip.NewParser().ParseSIP(b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return m
}

// inboundTransports are the transports a request can arrive on; "" leaves sipgo to derive
// it from the Via and Request-URI, as for a message that did not come from a listener.
var inboundTransports = []string{"", "UDP", "TCP", "TLS"}

// checkInbound runs what the server runs on a parsed request before any call exists (guard,
// onInvite): validateRequest, inboundOf, sips.DecideInbound and, for a refused request, the
// stateless reply. It fails on any result the rules forbid.
func checkInbound(t *testing.T, req *sip.Request) (validateErr, decideErr error) {
	t.Helper()
	validateErr = validateRequest(req)
	in := inboundOf(req)
	d, decideErr := sips.DecideInbound(in)
	if validateErr != nil || decideErr != nil {
		// guard and rejectInbound answer with a stateless response built from the request.
		if res := sip.NewResponseFromRequest(req, 400, "Bad Request", nil); res != nil {
			_ = res.String()
		}
	}
	if decideErr != nil {
		if !errors.Is(decideErr, sips.ErrUnsupportedScheme) && !errors.Is(decideErr, sips.ErrSIPSOverInsecure) &&
			!errors.Is(decideErr, sips.ErrInconsistentContact) {
			t.Fatalf("DecideInbound returned an unknown error %v", decideErr)
		}
		return validateErr, decideErr
	}
	scheme := strings.ToLower(in.RequestURI.Scheme)
	switch {
	case scheme != "sip" && scheme != "sips":
		t.Fatalf("R18: Request-URI scheme %q accepted", in.RequestURI.Scheme)
	case scheme == "sips" && (d.Scheme != "sips" || d.Transport != sips.TLS || !d.Secure):
		t.Fatalf("R22/R4: sips Request-URI decided %+v", d)
	case scheme == "sips" && in.Contact != nil && !sips.IsSIPS(in.Contact):
		t.Fatalf("R21: sips Request-URI with Contact %s accepted", in.Contact.String())
	case d.Secure != (scheme == "sips" && strings.EqualFold(in.Transport, sips.TLS)):
		t.Fatalf("R25: secure=%v for a %s Request-URI over %s: %+v", d.Secure, scheme, in.Transport, d)
	case d.Asked != scheme:
		t.Fatalf("RFC 5630 §4: the caller asked for %q, decided %+v", scheme, d)
	case d.Scheme == "sips" && d.Transport != sips.TLS:
		t.Fatalf("R11, R37: a sips leg reached over %s", d.Transport)
	case scheme == "sip" && in.TopRecordRoute == nil && (in.Contact == nil || !sips.IsSIPS(in.Contact)) && d.Scheme != "sip":
		t.Fatalf("R7: all-sip request decided %+v", d)
	}
	return validateErr, nil
}

// FuzzInboundRequest feeds arbitrary bytes to sipgo's parser and, when they make a request,
// runs the inbound checks of the B2BUA on it. Nothing may panic, and the sips rules above
// must hold for whatever the parser accepts. Seeds: testdata/fuzz/FuzzInboundRequest.
func FuzzInboundRequest(f *testing.F) {
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		for _, tp := range inboundTransports {
			if tp != "" {
				req.SetTransport(tp)
			}
			checkInbound(t, req)
		}
	})
}

// TestInboundSeeds pins the outcome of each committed seed of FuzzInboundRequest, so that the
// corpus stays meaningful: what validateRequest and DecideInbound say per transport.
func TestInboundSeeds(t *testing.T) {
	tests := []struct {
		name, file, transport string
		wantValid             bool
		wantErr               error
		wantScheme            string
	}{
		{"R22_T1_seed_invite_over_TLS", "seed_invite.sip", "TLS", true, nil, "sips"},
		{"T6_seed_invite_over_TCP_refused", "seed_invite.sip", "TCP", true, sips.ErrSIPSOverInsecure, ""},
		{"R2_esc01_is_sip", "rfc4475_esc01.sip", "UDP", true, nil, "sip"},
		{"R18_unkscm_416", "rfc4475_unkscm.sip", "TCP", true, sips.ErrUnsupportedScheme, ""},
		{"R18_tel_uri_416", "tel_uri.sip", "UDP", true, sips.ErrUnsupportedScheme, ""},
		{"R4_P11_sips_over_udp_refused", "sips_over_udp.sip", "UDP", true, sips.ErrSIPSOverInsecure, ""},
		{"R4_sips_over_udp_derived_transport_refused", "sips_over_udp.sip", "", true, sips.ErrSIPSOverInsecure, ""},
		{"R21_sips_ruri_sip_contact_400", "sips_ruri_sip_contact.sip", "TLS", true, sips.ErrInconsistentContact, ""},
		{"R22_P6_sip_ruri_sips_record_route", "sip_record_route_sips.sip", "TLS", true, nil, "sips"},
		{"missing_cseq_400", "missing_cseq.sip", "UDP", false, nil, "sip"},
		{"T4_register_sips_transport_tls", "register_sips_transport_tls.sip", "TLS", true, nil, "sips"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, ok := readMessage(t, tc.file).(*sip.Request)
			if !ok {
				t.Fatalf("%s is not a request", tc.file)
			}
			if tc.transport != "" {
				req.SetTransport(tc.transport)
			}
			verr, derr := checkInbound(t, req)
			if (verr == nil) != tc.wantValid {
				t.Errorf("validateRequest = %v, want valid=%v", verr, tc.wantValid)
			}
			if !errors.Is(derr, tc.wantErr) || (tc.wantErr == nil && derr != nil) {
				t.Fatalf("DecideInbound error = %v, want %v", derr, tc.wantErr)
			}
			if tc.wantErr == nil {
				d, _ := sips.DecideInbound(inboundOf(req))
				if d.Scheme != tc.wantScheme {
					t.Errorf("decided scheme %s, want %s", d.Scheme, tc.wantScheme)
				}
			}
		})
	}
	// The 200 OK seed checks that a response is simply skipped by the fuzz target.
	if _, ok := readMessage(t, "response_200.sip").(*sip.Response); !ok {
		t.Error("response_200.sip is not a response")
	}
}
