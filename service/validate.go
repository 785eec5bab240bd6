package service

import (
	"encoding/base64"
	"strings"

	"github.com/sipsvc/sipsvc/dn"
)

// Paging limits shared by ListCalls and ListDNs.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxIDLen        = 128
)

// checkNumber validates a required DN number field.
func checkNumber(field, v string) error {
	if v == "" {
		return invalidField(field, "is required")
	}
	if !dn.ValidNumber(v) {
		return invalidField(field, "%q is not a valid DN number (1-64 of A-Z a-z 0-9 + * # . _ -)", v)
	}
	return nil
}

// checkDestination validates a required field that holds a DN number or a sip:/sips: URI.
func checkDestination(field, v string) error {
	if v == "" {
		return invalidField(field, "is required: a DN number or a sip:/sips: URI")
	}
	if strings.Contains(v, ":") {
		if _, err := dn.ParseContact(v); err != nil {
			return invalidField(field, "%s", err.Error())
		}
		return nil
	}
	return checkNumber(field, v)
}

// checkID validates a required opaque id (call or leg id).
func checkID(field, v string) error {
	if v == "" {
		return invalidField(field, "is required")
	}
	if len(v) > maxIDLen {
		return invalidField(field, "is longer than %d bytes", maxIDLen)
	}
	return nil
}

// pageSize validates page_size and applies the default and the maximum.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, invalidField("page_size", "must not be negative")
	case n == 0:
		return defaultPageSize, nil
	case n > maxPageSize:
		return maxPageSize, nil
	}
	return int(n), nil
}

// Page tokens are opaque to clients: the base64url of the sort key of the last item of the
// previous page, so that pages stay consistent while items come and go.

func encodePageToken(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return "", invalidField("page_token", "is not a token returned by this server")
	}
	return string(b), nil
}
