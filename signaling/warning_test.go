package signaling

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
)

// TestWarningValue pins the exact Warning text each site sends (RFC 3261 §20.43:
// code agent "text").
func TestWarningValue(t *testing.T) {
	secureLeg, err := sips.DecideOutbound(sips.Outbound{Target: sip.Uri{Scheme: "sips", User: "5000", Host: "10.0.0.5"}})
	if err != nil || !secureLeg.Secure {
		t.Fatalf("sips target: %+v, %v", secureLeg, err)
	}
	plainLeg, err := sips.DecideOutbound(sips.Outbound{Target: sip.Uri{Scheme: "sip", User: "6000", Host: "10.0.0.6"}})
	if err != nil || plainLeg.Secure {
		t.Fatalf("sip target: %+v, %v", plainLeg, err)
	}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"SIPS over insecure transport (R19)", withWarning(380, "SIPS Not Allowed").Value(), `380 sipsvc "SIPS Not Allowed"`},
		{"inconsistent Contact (R21)", withWarning(399, "sips Request-URI with a sip Contact (R21)").Value(), `399 sipsvc "sips Request-URI with a sip Contact (R21)"`},
		{"quote in text", warningValue(399, `bad "x"`), `399 sipsvc "bad \"x\""`},
		{"strict, inbound sips (R19)", refusalWarning(sips.CheckPolicy(dn.PolicyStrict, secureLeg, plainLeg).Warning), `380 sipsvc "SIPS Not Allowed"`},
		{"strict, outbound sips (R20)", refusalWarning(sips.CheckPolicy(dn.PolicyStrict, plainLeg, secureLeg).Warning), `381 sipsvc "SIPS Required"`},
		{"refusal without a quoted text", refusalWarning("381 SIPS Required"), `399 sipsvc "381 SIPS Required"`},
		{"refusal without a code", refusalWarning(`"SIPS Required"`), `399 sipsvc "\"SIPS Required\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %s, want %s", tt.got, tt.want)
			}
		})
	}
}

// TestWarningHeaderName checks withWarning builds a Warning header.
func TestWarningHeaderName(t *testing.T) {
	if h := withWarning(399, "x"); h.Name() != "Warning" {
		t.Errorf("header %q, want Warning", h.Name())
	}
}
