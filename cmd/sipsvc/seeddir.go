package main

import (
	"context"
	"fmt"

	"github.com/sipsvc/sipsvc/dn"
)

// seedDirectory is a read-only directory of the configured DNs (placeholder until the store lands).
type seedDirectory struct{ dns map[string]dn.DN }

func newSeedDirectory(ds []dn.DN) *seedDirectory {
	m := map[string]dn.DN{}
	for _, d := range ds {
		m[d.Number] = d
	}
	return &seedDirectory{dns: m}
}

func (s *seedDirectory) Lookup(_ context.Context, n string) (dn.DN, error) {
	d, ok := s.dns[n]
	if !ok {
		return dn.DN{}, fmt.Errorf("DN %s: %w", n, dn.ErrNotFound)
	}
	return d, nil
}

func (s *seedDirectory) Bindings(context.Context, string) ([]dn.Binding, error) { return nil, nil }
