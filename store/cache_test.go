package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/store"
)

// TestCachedTrustedDNsLoaded checks that NewCached builds the trusted list from the DNs the
// wrapped store holds already, sorted by number, with the sources matched as stored.
func TestCachedTrustedDNsLoaded(t *testing.T) {
	tests := []struct {
		name string
		dns  []dn.DN
		want []string // numbers
	}{
		{"empty", nil, nil},
		{"no_trunks", []dn.DN{ext("1000"), ext("2000")}, nil},
		{"trunks_among_extensions", []dn.DN{
			ext("1000"),
			{Number: "9001", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.2", TrustedCertSubjects: []string{"gw.example.net"}},
			ext("2000"),
			{Number: "0900", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.1", TrustedSources: []string{"192.0.2.0/24"}},
		}, []string{"0900", "9001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := store.NewMemory()
			for _, d := range tc.dns {
				must(t, m.PutDN(ctx, d))
			}
			c, err := store.NewCached(ctx, m, nil)
			must(t, err)
			defer c.Close()
			ds, err := c.TrustedDNs(ctx)
			must(t, err)
			var got []string
			for _, d := range ds {
				got = append(got, d.Number)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("TrustedDNs = %v, want %v", got, tc.want)
			}
			for _, d := range ds {
				if len(d.TrustedSources) > 0 && !d.TrustsSource("192.0.2.77") {
					t.Errorf("DN %s does not trust 192.0.2.77", d.Number)
				}
			}
		})
	}
}

// BenchmarkCachedTrustedDNs measures the trusted-DN lookup every out-of-dialog INVITE makes
// (store.Store.TrustedDNs) on a production-sized directory: 36,000 DNs, 5 of them trunks.
func BenchmarkCachedTrustedDNs(b *testing.B) {
	ctx := context.Background()
	m := store.NewMemory()
	for i := range 36000 {
		d := ext(fmt.Sprintf("%05d", 10000+i))
		if i%7200 == 0 { // 5 trunks spread over the number range
			d.Type = dn.TypeTrunk
			d.Contact = fmt.Sprintf("sip:gw%d@192.0.2.%d", i, 1+i/7200)
			d.TrustedSources = []string{fmt.Sprintf("192.0.2.%d", 1+i/7200), "198.51.100.0/24"}
		}
		must(b, m.PutDN(ctx, d))
	}
	c, err := store.NewCached(ctx, m, nil)
	must(b, err)
	defer c.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ds, err := c.TrustedDNs(ctx)
		if err != nil || len(ds) != 5 {
			b.Fatalf("TrustedDNs = %d DNs, %v", len(ds), err)
		}
	}
}
