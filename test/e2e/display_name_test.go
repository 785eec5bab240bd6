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
// MakeCall used it). Only a caller that authenticated as the DN gets it: a From user is a
// mere claim until the caller answers the DN's digest challenge, and handing the DN's name
// to whoever claims its number would let anyone impersonate it (issue 10). A caller that is
// not a DN, or that claims a DN without a password (anonymous, as the admission rules say),
// keeps its own display name; one that claims a DN with a password and does not answer the
// challenge gets the 407 and rings nothing.
func TestCallerDisplayNameFromDirectory(t *testing.T) {
	s := startStack(t, stackOptions{})
	bob := s.addPhone("2000", "Bob", "UDP")
	md5, sha := dn.HashPassword("1000", testRealm, phonePassword("1000"))
	s.addDN(dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "sip:1000@127.0.0.1:9", DisplayName: "Alice Example", HA1MD5: md5, HA1SHA256: sha})
	s.addDN(dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "sip:1001@127.0.0.1:9", DisplayName: "Carol No-Password"})
	tests := []struct {
		name, user, phoneName string
		authenticate          bool   // answer the 407 with DN user's password
		wantCode              int    // final response to the caller (after authenticating)
		want                  string // leg B's From display name, when the call rang
	}{
		{"known DN authenticated", "1000", "phone-says-this", true, 200, "Alice Example"},
		{"not a DN", "9999", "stranger", false, 200, "stranger"},
		{"claims DN 1000 without authenticating", "1000", "impostor", false, 407, ""},
		{"claims DN without a password (anonymous)", "1001", "claimer", false, 200, "claimer"},
	}
	rang := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caller := s.callerPhone(tc.phoneName, "UDP")
			call := caller.invite(s, "2000", inviteOpts{from: "sip:" + tc.user + "@127.0.0.1"})
			final := call.Wait(5 * time.Second)
			if tc.authenticate {
				if final.StatusCode != 407 {
					t.Fatalf("INVITE claiming DN %s → %d, want the 407 challenge", tc.user, final.StatusCode)
				}
				call = call.Authenticate(final, tc.user, phonePassword(tc.user))
				final = call.Wait(5 * time.Second)
			}
			if final.StatusCode != tc.wantCode {
				t.Fatalf("call → %d %s, want %d", final.StatusCode, final.Reason, tc.wantCode)
			}
			if tc.wantCode != 200 {
				time.Sleep(200 * time.Millisecond)
				if n := bob.Count(sip.INVITE); n != rang {
					t.Errorf("DN 2000 got %d INVITEs, want %d: a refused caller rang it", n, rang)
				}
				return
			}
			call.Ack()
			rang++
			inv := bob.WaitRequest(sip.INVITE, rang, 3*time.Second)
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
