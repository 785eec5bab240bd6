package registrar

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/icholy/digest"
)

// TestParseCredentials: the header values of real clients, and the RFC 7235 leniencies.
func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name, in string
		want     *digest.Credentials // nil: an error
	}{
		{"sipp_md5", `Digest username="100001",realm="sipsvc",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="GOvW",response="0e2c",algorithm=MD5`,
			&digest.Credentials{Username: "100001", Realm: "sipsvc", Cnonce: "6b8b4567", Nc: 1, QOP: "auth", URI: "sip:127.0.0.1:5060", Nonce: "GOvW", Response: "0e2c", Algorithm: "MD5"}},
		{"sipsak_spaces", `Digest username="7000", realm="sipsvc", algorithm=SHA-256, uri="sip:sipsvc", nonce="n1", response="ab", qop=auth, nc=0000000a, cnonce="c1"`,
			&digest.Credentials{Username: "7000", Realm: "sipsvc", Algorithm: "SHA-256", URI: "sip:sipsvc", Nonce: "n1", Response: "ab", QOP: "auth", Nc: 10, Cnonce: "c1"}},
		{"case_insensitive_scheme_and_names_RFC7235", "digest USERNAME=\"u\",\tRealm=\"r\" , NC=00000002, UserHash=TRUE",
			&digest.Credentials{Username: "u", Realm: "r", Nc: 2, Userhash: true}},
		{"escaped_quote_and_backslash", `Digest username="a\"b\\c", opaque="x,y"`,
			&digest.Credentials{Username: `a"b\c`, Opaque: "x,y"}},
		{"token_chars_unquoted_RFC3261_25_1", `Digest opaque=a.b_c~d, realm="r"`,
			&digest.Credentials{Opaque: "a.b_c~d", Realm: "r"}},
		{"unknown_params_ignored", `Digest foo="bar", realm="r", baz=1`, &digest.Credentials{Realm: "r"}},
		{"no_params", `Digest `, &digest.Credentials{}},
		{"basic_scheme", `Basic dXNlcjpwYXNz`, nil},
		{"no_scheme", `username="u"`, nil},
		{"unterminated_quote", `Digest username="u`, nil},
		{"missing_comma", `Digest username="u" realm="r"`, nil},
		{"missing_equals", `Digest username`, nil},
		{"trailing_comma", `Digest username="u",`, nil},
		{"double_comma", `Digest a=1,,b=2`, nil},
		{"bad_nc", `Digest nc=zz`, nil},
		{"escape_at_end", `Digest username="u\`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCredentials(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parseCredentials(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCredentials(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseCredentials(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParseCredentials: whatever digest.ParseCredentials accepts, parseCredentials accepts
// with the same result. The input is lower-cased first, since the library matches
// parameter names case-sensitively and parseCredentials does not (RFC 7235 §2.1); it must
// be valid UTF-8, which the library rewrites to U+FFFD inside quoted strings.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{
		`Digest username="100001",realm="sipsvc",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="GOvW",response="0e2c",algorithm=MD5`,
		`Digest username="a\"b", realm="r" , nc=0a, userhash=true`,
		`Digest   a = "x" ,b=`,
		`digest realm="r",`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseCredentials(s) // never panics, whatever the input
		s = strings.ToLower(s)
		if !utf8.ValidString(s) {
			return
		}
		want, werr := digest.ParseCredentials(s)
		if werr != nil {
			return
		}
		got, err = parseCredentials(s)
		if err != nil {
			t.Fatalf("parseCredentials(%q): %v; the library parsed it to %+v", s, err, want)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseCredentials(%q)\n got %+v\nwant %+v (library)", s, got, want)
		}
	})
}

// BenchmarkParseCredentials compares parseCredentials with the library's parser on a
// SIPp Authorization value.
func BenchmarkParseCredentials(b *testing.B) {
	const v = `Digest username="100001",realm="sipsvc",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="GOvWfUtV2rl_fGTFhU9UCCdo4d5E28sKOMiqqG6NK7s",response="0e2c4b51b5cfc8b3f1d5c7a1b2c3d4e5",algorithm=MD5`
	b.Run("sipsvc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseCredentials(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("icholy-digest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := digest.ParseCredentials(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
