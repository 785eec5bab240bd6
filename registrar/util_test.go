package registrar_test

import (
	"strconv"

	"github.com/icholy/digest"

	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

func itoa(i int) string { return strconv.Itoa(i) }

func parseChallenge(v string) (*digest.Challenge, error) { return digest.ParseChallenge(v) }

// The store is what the B2BUA uses as its Directory.
var _ signaling.Directory = store.Store(nil)
