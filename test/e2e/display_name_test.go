package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// TestCallerDisplayNameFromDirectory: when a DN calls over SIP, the From of leg B carries
// the DN's display_name, not whatever its phone put in its own From (issue 12: only
// MakeCall used it). A caller that is not a DN keeps its own display name.
func TestCallerDisplayNameFromDirectory(t *testing.T) {
	s := startStack(t, stackOptions{})
	bob := s.addPhone("2000", "Bob", "UDP")
	s.addDN(dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "sip:1000@127.0.0.1:9", DisplayName: "Alice Example"})
	tests := []struct {
		name, user, phoneName, want string
	}{
		{"known DN", "1000", "phone-says-this", "Alice Example"},
		{"not a DN", "9999", "stranger", "stranger"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caller := s.callerPhone(tc.phoneName, "UDP")
			call := caller.invite(s, "2000", inviteOpts{from: "sip:" + tc.user + "@127.0.0.1"})
			if final := call.Wait(5 * time.Second); final.StatusCode != 200 {
				t.Fatalf("call → %d", final.StatusCode)
			}
			call.Ack()
			inv := bob.WaitRequest(sip.INVITE, i+1, 3*time.Second)
			if got := inv.From().DisplayName; got != tc.want {
				t.Errorf("leg B From display name %q, want %q (From: %s)", got, tc.want, inv.From().Value())
			}
			if inv.From().Address.User != tc.user {
				t.Errorf("leg B From user %q, want %q", inv.From().Address.User, tc.user)
			}
			if code := call.Bye(); code != 200 {
				t.Errorf("BYE → %d", code)
			}
		})
	}
}

// TestDisplayNameRefusedWhenUnsafe: a display name that would break the From header it goes
// into (quote, backslash, CR LF) is refused by the API with the field named.
func TestDisplayNameRefusedWhenUnsafe(t *testing.T) {
	s := startStack(t, stackOptions{})
	for _, v := range []string{`Al"ice`, "Alice\r\nX-Evil: 1", `back\slash`, strings.Repeat("a", 129)} {
		code, body := s.rest("POST", "/v1/dns", map[string]any{"number": "7300", "type": "DN_TYPE_EXTENSION", "contact": "*", "display_name": v})
		if code != 400 || !strings.Contains(str(body, "message"), "dn.display_name") {
			t.Errorf("display_name %q → %d %v, want 400 naming dn.display_name", v, code, body)
		}
	}
	if code, body := s.rest("POST", "/v1/dns", map[string]any{"number": "7300", "type": "DN_TYPE_EXTENSION", "contact": "*", "display_name": "Alice (desk) é"}); code != 200 {
		t.Errorf("plain display name → %d %v", code, body)
	}
}
