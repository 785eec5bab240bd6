package signaling

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestParseSessionExpires checks the one parse of Session-Expires: interval and refresher.
func TestParseSessionExpires(t *testing.T) {
	tests := []struct {
		name   string
		header string // header name; "" for none
		value  string
		want   sessionExpires
	}{
		{"absent", "", "", sessionExpires{}},
		{"interval only", "Session-Expires", "1800", sessionExpires{interval: 1800 * time.Second}},
		{"refresher uac", "Session-Expires", "2;refresher=uac", sessionExpires{interval: 2 * time.Second, refresher: "uac"}},
		{"refresher upper case, spaces", "Session-Expires", " 90 ; Refresher=UAS ", sessionExpires{interval: 90 * time.Second, refresher: "uas"}},
		{"other params first", "Session-Expires", "600;foo=bar;;refresher=uas", sessionExpires{interval: 600 * time.Second, refresher: "uas"}},
		{"first refresher wins", "Session-Expires", "600;refresher=uac;refresher=uas", sessionExpires{interval: 600 * time.Second, refresher: "uac"}},
		{"empty param list", "Session-Expires", "600;", sessionExpires{interval: 600 * time.Second}},
		{"compact form", "x", "300;refresher=uac", sessionExpires{interval: 300 * time.Second, refresher: "uac"}},
		{"zero", "Session-Expires", "0;refresher=uac", sessionExpires{refresher: "uac"}},
		{"negative", "Session-Expires", "-5", sessionExpires{}},
		{"not a number, refresher still read", "Session-Expires", "abc;refresher=uac", sessionExpires{refresher: "uac"}},
		{"refresher without value", "Session-Expires", "600;refresher", sessionExpires{interval: 600 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "6000", Host: "127.0.0.1"})
			if tt.header != "" {
				req.AppendHeader(sip.NewHeader(tt.header, tt.value))
			}
			if got := parseSessionExpires(req); got != tt.want {
				t.Errorf("parseSessionExpires(%q) = %+v, want %+v", tt.value, got, tt.want)
			}
		})
	}
}
