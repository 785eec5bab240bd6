package sips

import (
	"errors"
	"testing"

	"github.com/sipsvc/sipsvc/dn"
)

// TestCheckReferTo_R17: inside a dialog set up with sips, sipsvc never refers the party to a
// sip: URI; a sips: one is fine, and a sip dialog may be referred anywhere. The dialog's
// decision is derived from a real INVITE, not set by the test.
func TestCheckReferTo_R17(t *testing.T) {
	tests := []struct {
		name, request, transport, referTo string
		wantErr                           error
	}{
		{"R17_sips_dialog_sip_refer_to_refused", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6", ErrSIPReferInSIPSDialog},
		{"R17_sips_dialog_sip_transport_tls_refer_to_refused", "genesys_invite.sip", "TLS", "sip:6000@10.0.0.6;transport=tls", ErrSIPReferInSIPSDialog},
		{"R17_sips_dialog_sips_refer_to_allowed", "genesys_invite.sip", "TLS", "sips:5000@10.0.0.5", nil},
		{"R17_sip_dialog_sip_refer_to_allowed", "sip_ruri_plain.sip", "UDP", "sip:6000@10.0.0.6", nil},
		{"R17_sip_dialog_sips_refer_to_allowed", "sip_ruri_plain.sip", "UDP", "sips:5000@10.0.0.5", nil},
		// R25: a sips Contact on a sip request does not make the dialog sips.
		{"R17_R25_sip_ruri_sips_contact_dialog_is_sip", "sip_ruri_sips_contact.sip", "TLS", "sip:6000@10.0.0.6", nil},
		{"R17_R7_best_effort_tls_dialog_is_sip", "sip_ruri_plain.sip", "TLS", "sip:6000@10.0.0.6", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecideInbound(inboundOfRequest(readRequest(t, tc.request), tc.transport))
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckReferTo(d, uri(t, tc.referTo)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckReferTo(%+v, %s) = %v, want %v", d, tc.referTo, err, tc.wantErr)
			}
		})
	}
}

// TestStricterPolicy: a pair of legs is strict when either DN is strict.
func TestStricterPolicy(t *testing.T) {
	tests := []struct{ a, b, want dn.Policy }{
		{dn.PolicyStrict, dn.PolicyPerLeg, dn.PolicyStrict},
		{dn.PolicyPerLeg, dn.PolicyStrict, dn.PolicyStrict},
		{dn.PolicyDefault, dn.PolicyStrict, dn.PolicyStrict},
		{dn.PolicyPerLeg, dn.PolicyDefault, dn.PolicyPerLeg},
		{dn.PolicyDefault, dn.PolicyDefault, dn.PolicyDefault},
	}
	for _, tc := range tests {
		if got := StricterPolicy(tc.a, tc.b); got != tc.want {
			t.Errorf("StricterPolicy(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
