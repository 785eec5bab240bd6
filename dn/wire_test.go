package dn

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestValidateRefusesWireInjection: a DN value that would be written into a SIP message is
// refused when it holds CR, LF or other characters that change the message (issue 10).
func TestValidateRefusesWireInjection(t *testing.T) {
	base := DN{Number: "7000", Type: TypeExtension, Contact: "sip:7000@10.0.0.7:5060"}
	cases := []struct {
		name  string
		edit  func(*DN)
		field string
	}{
		{"display_name CRLF forges P-Asserted-Identity", func(d *DN) { d.DisplayName = "Bob\r\nP-Asserted-Identity: <sip:911@x>" }, "display_name"},
		{"display_name LF", func(d *DN) { d.DisplayName = "a\nb" }, "display_name"},
		{"display_name NUL", func(d *DN) { d.DisplayName = "a\x00b" }, "display_name"},
		{"display_name quote ends quoted string", func(d *DN) { d.DisplayName = `a" <sip:x@y>` }, "display_name"},
		{"display_name backslash", func(d *DN) { d.DisplayName = `a\` }, "display_name"},
		{"display_name too long", func(d *DN) { d.DisplayName = strings.Repeat("a", MaxDisplayNameLen+1) }, "display_name"},
		{"display_name invalid UTF-8", func(d *DN) { d.DisplayName = "\xff" }, "display_name"},
		{"contact CRLF", func(d *DN) { d.Contact = "sip:7000@10.0.0.7\r\nX-Evil: 1" }, "contact"},
		{"contact space", func(d *DN) { d.Contact = "sip:70 00@10.0.0.7" }, "contact"},
		{"contact angle bracket in host", func(d *DN) { d.Contact = "sip:7000@h>x" }, "contact"},
		{"contact quote in param", func(d *DN) { d.Contact = `sip:7000@h;x="a"` }, "contact"},
		{"trusted_cert_subjects CRLF", func(d *DN) { d.TrustedCertSubjects = []string{"ok", "a\r\nb"} }, "trusted_cert_subjects[1]"},
		{"allow_anonymous on a trunk", func(d *DN) { d.Type = TypeTrunk; d.AllowAnonymous = true }, "allow_anonymous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			tc.edit(&d)
			err := d.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want a *FieldError for %s", err, tc.field)
			}
			if fe.Field != tc.field {
				t.Fatalf("field = %q (%v), want %q", fe.Field, err, tc.field)
			}
		})
	}
	ok := base
	ok.DisplayName = "Bob Müller (sales)"
	ok.AllowAnonymous = true
	if err := ok.Validate(); err != nil {
		t.Fatalf("a clean DN was refused: %v", err)
	}
}

func TestCheckWireURI(t *testing.T) {
	good := []string{"sip:6000@10.0.0.6:5060", "sips:5000@example.net", "sip:6000@10.0.0.6;transport=tcp", "sip:[::1]:5060", "sip:+4930123@gw.example.net;user=phone", "SIP:6000@h"}
	for _, s := range good {
		if _, err := CheckWireURI(s); err != nil {
			t.Errorf("CheckWireURI(%q) = %v, want ok", s, err)
		}
	}
	bad := []string{"sip:6000@h\r\nX: y", "sip:6000@h\n", "sip:60 00@h", "sip:6000@h>x", "sip:6000@h<", `sip:6000@h;x="a"`, "sip:6000@h\x00", "sip:é@h", "sip:6000@h^x", "sip:" + strings.Repeat("a", MaxURILen) + "@h"}
	for _, s := range bad {
		if _, err := CheckWireURI(s); !errors.Is(err, ErrWire) {
			t.Errorf("CheckWireURI(%q) = %v, want ErrWire", s, err)
		}
	}
}

// TestNormalizeUser: RFC 3261 §19.1.4, %HH escapes in the user part compare as the
// character, so "sip:%37789@h" is "sip:7789@h" (a caller must not impersonate a DN by
// escaping its number).
func TestNormalizeUser(t *testing.T) {
	for in, want := range map[string]string{
		"7789": "7789", "%37789": "7789", "%37%37%38%39": "7789", "%2b49": "+49", "%2B49": "+49",
		"77%": "77%", "77%4": "77%4", "%zz": "%zz", "": "",
	} {
		if got := NormalizeUser(in); got != want {
			t.Errorf("NormalizeUser(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckURIOnWire: the last check before writing refuses a URI built in memory whose
// parts would change the message, and passes a plain one.
func TestCheckURIOnWire(t *testing.T) {
	withParam := func(k, v string) sip.Uri {
		u := sip.Uri{Scheme: "sip", User: "6000", Host: "10.0.0.6", Port: 5060, UriParams: sip.NewParams()}
		u.UriParams.Add(k, v)
		return u
	}
	ok := withParam("transport", "tcp")
	if err := CheckURIOnWire(ok); err != nil {
		t.Fatalf("CheckURIOnWire(%s) = %v", ok.String(), err)
	}
	for name, u := range map[string]sip.Uri{
		"CRLF in a parameter":  withParam("x", "a\r\nX-Evil: 1"),
		"space in a parameter": withParam("x", "a b"),
		"CRLF in the host":     {Scheme: "sip", User: "6000", Host: "h\r\nX-Evil: 1"},
		"'>' in the user":      {Scheme: "sip", User: "60>00", Host: "h"},
		"no host":              {Scheme: "sip", User: "6000"},
	} {
		if err := CheckURIOnWire(u); !errors.Is(err, ErrWire) {
			t.Errorf("%s: CheckURIOnWire = %v, want ErrWire", name, err)
		}
	}
}
