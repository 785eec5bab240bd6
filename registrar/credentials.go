package registrar

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/icholy/digest"
)

// parseCredentials parses a Digest Authorization or Proxy-Authorization value (RFC 3261
// §25.1, RFC 7616 §3.4) into digest.Credentials.
//
// It is digest.ParseCredentials in one pass over the string: the library reads through a
// bufio.Reader with a 4 KB buffer per call and builds quoted strings rune by rune, which
// made it 7% of sipsvc's CPU at 5,000 REGISTER/s (docs/performance.md). Whatever the
// library accepts, this accepts with the same result (FuzzParseCredentials checks it on
// valid UTF-8). It is also more lenient where RFC 7235 §2.1 asks: parameter names match
// case-insensitively, tabs count as white space, and unquoted values may use every token
// character of RFC 3261 §25.1.
func parseCredentials(s string) (*digest.Credentials, error) {
	rest, ok := digest.CutPrefix(s)
	if !ok {
		return nil, errors.New("digest: invalid credentials prefix")
	}
	var c digest.Credentials
	for first := true; ; first = false {
		rest = trimWS(rest)
		if rest == "" {
			return &c, nil
		}
		if !first {
			if rest[0] != ',' {
				return nil, fmt.Errorf("digest: invalid credentials: expected ',' at %q", rest)
			}
			rest = trimWS(rest[1:])
		}
		n := tokenLen(rest)
		key := rest[:n]
		rest = trimWS(rest[n:])
		if rest == "" || rest[0] != '=' {
			return nil, fmt.Errorf("digest: invalid credentials: parameter %q has no '='", key)
		}
		rest = trimWS(rest[1:])
		var val string
		if rest != "" && rest[0] == '"' {
			var err error
			if val, rest, err = quotedString(rest); err != nil {
				return nil, fmt.Errorf("digest: invalid credentials: parameter %q: %w", key, err)
			}
		} else {
			n := tokenLen(rest)
			val, rest = rest[:n], rest[n:]
		}
		if err := setCredential(&c, key, val); err != nil {
			return nil, err
		}
	}
}

// setCredential stores one parameter; names the library does not know are ignored.
func setCredential(c *digest.Credentials, key, val string) error {
	switch strings.ToLower(key) {
	case "username":
		c.Username = val
	case "realm":
		c.Realm = val
	case "nonce":
		c.Nonce = val
	case "uri":
		c.URI = val
	case "response":
		c.Response = val
	case "algorithm":
		c.Algorithm = val
	case "cnonce":
		c.Cnonce = val
	case "opaque":
		c.Opaque = val
	case "qop":
		c.QOP = val
	case "nc":
		nc, err := strconv.ParseInt(val, 16, 32)
		if err != nil {
			return fmt.Errorf("digest: invalid nc: %w", err)
		}
		c.Nc = int(nc)
	case "userhash":
		c.Userhash = strings.EqualFold(val, "true")
	}
	return nil
}

// trimWS drops leading spaces and tabs.
func trimWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// tokenLen is the length of the RFC 3261 §25.1 token at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return i
		}
	}
	return len(s)
}

// quotedString reads the quoted-string at the start of s (which starts with '"'): its
// value with backslash escapes resolved, and what follows the closing quote.
func quotedString(s string) (val, rest string, err error) {
	end := strings.IndexByte(s[1:], '"') + 1
	if end > 0 && strings.IndexByte(s[1:end], '\\') < 0 {
		return s[1:end], s[end+1:], nil // the common case: no escapes, no copy
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 == len(s) {
				return "", "", errors.New("unterminated quoted string")
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", errors.New("unterminated quoted string")
}
