package registrar_test

import (
	"strconv"

	"github.com/icholy/digest"
)

func itoa(i int) string { return strconv.Itoa(i) }

func parseChallenge(v string) (*digest.Challenge, error) { return digest.ParseChallenge(v) }
