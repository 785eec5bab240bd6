package dn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// MaxDisplayNameLen caps a display name written into From (bytes).
const MaxDisplayNameLen = 128

// MaxURILen caps a URI written onto the wire (bytes).
const MaxURILen = 512

// ErrWire is matched (errors.Is) by every error of CheckDisplayName and CheckWireURI: the
// value cannot be written into a SIP message as it is.
var ErrWire = errors.New("cannot be written into a SIP message")

type wireError struct{ msg string }

func (e *wireError) Error() string        { return e.msg }
func (e *wireError) Is(target error) bool { return target == ErrWire }

func wireErrf(format string, args ...any) error {
	return &wireError{msg: fmt.Sprintf(format, args...)}
}

// CheckDisplayName reports why s cannot be written as the quoted display name of a From
// header: a control character (CR and LF would end the header and start a forged one), a
// double quote or backslash (they would end or escape the quoted string), invalid UTF-8,
// or more than MaxDisplayNameLen bytes. The empty string is fine.
func CheckDisplayName(s string) error {
	if len(s) > MaxDisplayNameLen {
		return wireErrf("is longer than %d bytes", MaxDisplayNameLen)
	}
	if !utf8.ValidString(s) {
		return wireErrf("is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return wireErrf("holds control character %#02x at byte %d", c, i)
		case c == '"' || c == '\\':
			return wireErrf("holds %q at byte %d, which would end or escape the quoted display name", c, i)
		}
	}
	return nil
}

// CheckText reports why s cannot be written as free text in a SIP message (a reason
// phrase, a header value): a control character, invalid UTF-8, or more than
// MaxDisplayNameLen bytes.
func CheckText(s string) error {
	if len(s) > MaxDisplayNameLen {
		return wireErrf("is longer than %d bytes", MaxDisplayNameLen)
	}
	if !utf8.ValidString(s) {
		return wireErrf("is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return wireErrf("holds control character %#02x at byte %d", c, i)
		}
	}
	return nil
}

// CheckWireURI parses a sip:/sips: URI that will be written into a SIP message (a
// Request-URI, To, Contact, Refer-To) and refuses it unless it is safe there: no control
// character, space, '<', '>', '"' or '\' anywhere (they would end the header or the
// bracketed address), a user part of RFC 3261 user characters, a host of letters, digits,
// '.', '-', ':', '[' and ']', at most MaxURILen bytes, and it must serialise back to
// exactly s (a last check that the parser and the writer agree).
func CheckWireURI(s string) (sip.Uri, error) {
	var u sip.Uri
	if len(s) > MaxURILen {
		return u, wireErrf("is longer than %d bytes", MaxURILen)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= 0x20 || c >= 0x7f:
			return u, wireErrf("holds byte %#02x at %d (control character, space or non-ASCII)", c, i)
		case c == '<' || c == '>' || c == '"' || c == '\\':
			return u, wireErrf("holds %q at byte %d", c, i)
		}
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, wireErrf("is not a valid URI: %v", err)
	}
	if err := checkURIParts(u); err != nil {
		return u, err
	}
	if out := u.String(); out != s && !strings.EqualFold(out[:len(u.Scheme)], s[:len(u.Scheme)]) || out[len(u.Scheme):] != s[len(u.Scheme):] {
		return u, wireErrf("would be written as %q", out)
	}
	return u, nil
}

// CheckURIOnWire is the last check before a URI built or parsed elsewhere is written: its
// user and host hold only characters that are safe there, and what it serialises to parses
// back to the same URI.
func CheckURIOnWire(u sip.Uri) error {
	if err := checkURIParts(u); err != nil {
		return err
	}
	s := u.String()
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' {
			return wireErrf("holds byte %#02x at %d", c, i)
		}
	}
	var back sip.Uri
	if err := sip.ParseUri(s, &back); err != nil || !strings.EqualFold(back.Scheme, u.Scheme) || back.User != u.User || back.Host != u.Host ||
		back.Port != u.Port || back.UriParams.Length() != u.UriParams.Length() || back.Headers.Length() != u.Headers.Length() {
		return wireErrf("%q does not survive a round trip through the SIP parser", s)
	}
	return nil
}

func checkURIParts(u sip.Uri) error {
	if u.Host == "" {
		return wireErrf("has no host")
	}
	for i := 0; i < len(u.User); i++ {
		if !userChar(u.User[i]) {
			return wireErrf("user part holds %q, not allowed in a SIP URI user", u.User[i])
		}
	}
	for i := 0; i < len(u.Host); i++ {
		switch c := u.Host[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']':
		default:
			return wireErrf("host holds %q, not allowed in a host name or IP address", c)
		}
	}
	return nil
}

// userChar reports whether c may appear in a SIP URI user part (RFC 3261 §25.1: unreserved,
// user-unreserved and '%' of an escape).
func userChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()&=+$,;?/%#", c) >= 0
}

// NormalizeUser returns a SIP URI user part with its %HH escapes decoded, as RFC 3261
// §19.1.4 compares it: "%37789" is "7789". A malformed escape leaves s as it is (it then
// matches no DN number, which holds no '%').
func NormalizeUser(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return s
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return s
		}
		b = append(b, h<<4|l)
		i += 2
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
