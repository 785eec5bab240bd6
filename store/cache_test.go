package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

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

// TestCachedContract checks what Cached promises beyond the Store contract: reads answer
// from the copy alone (whatever their context, and even once the wrapped store is closed),
// Ping asks the wrapped store, and a write the wrapped store took is applied to the copy
// even when the copy lacks what it changes (a binding that had expired when NewCached
// loaded).
func TestCachedContract(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, backing *store.Memory, c *store.Cached, clk *clock)
	}{
		{"reads_ignore_canceled_context", func(t *testing.T, ctx context.Context, _ *store.Memory, c *store.Cached, _ *clock) {
			canceled, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := c.Lookup(canceled, "9000"); err != nil {
				t.Errorf("Lookup = %v", err)
			}
			if ds, err := c.ListDNs(canceled); err != nil || len(ds) != 2 {
				t.Errorf("ListDNs = %d DNs, %v", len(ds), err)
			}
			if ds, err := c.TrustedDNs(canceled); err != nil || len(ds) != 1 {
				t.Errorf("TrustedDNs = %d DNs, %v", len(ds), err)
			}
			if bs, err := c.Bindings(canceled, "1000"); err != nil || len(bs) != 1 {
				t.Errorf("Bindings = %d bindings, %v", len(bs), err)
			}
			if bs, err := c.AllBindings(canceled); err != nil || len(bs) != 1 {
				t.Errorf("AllBindings = %d bindings, %v", len(bs), err)
			}
		}},
		{"reads_never_reach_the_wrapped_store", func(t *testing.T, ctx context.Context, backing *store.Memory, c *store.Cached, _ *clock) {
			must(t, backing.Close())
			if _, err := c.Lookup(ctx, "9000"); err != nil {
				t.Errorf("Lookup = %v", err)
			}
			if ds, err := c.TrustedDNs(ctx); err != nil || len(ds) != 1 {
				t.Errorf("TrustedDNs = %d DNs, %v", len(ds), err)
			}
			if bs, err := c.Bindings(ctx, "1000"); err != nil || len(bs) != 1 {
				t.Errorf("Bindings = %d bindings, %v", len(bs), err)
			}
			if err := c.Ping(ctx); !errors.Is(err, store.ErrClosed) {
				t.Errorf("Ping = %v, want the wrapped store's ErrClosed", err)
			}
		}},
		{"writes_go_to_the_wrapped_store_first", func(t *testing.T, ctx context.Context, backing *store.Memory, c *store.Cached, _ *clock) {
			must(t, backing.DeleteDN(ctx, "1000")) // behind the cache's back
			if err := c.PutBinding(ctx, binding(newClock(), "1000", "sip:1000@10.0.0.9", time.Hour)); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("PutBinding = %v, want the wrapped store's ErrNotFound", err)
			}
			if bs, _ := c.Bindings(ctx, "1000"); len(bs) != 1 {
				t.Errorf("the refused write reached the copy: Bindings = %+v", bs)
			}
		}},
		{"delete_binding_expired_before_load", func(t *testing.T, ctx context.Context, backing *store.Memory, c *store.Cached, clk *clock) {
			if err := c.DeleteBinding(ctx, "1000", dn.BindingKey("sip:1000@10.0.0.1")); err != nil {
				t.Fatalf("DeleteBinding(expired, not cached) = %v", err)
			}
			clk.Add(-time.Hour) // the wrapped store's copy is gone too
			if bs, _ := backing.Bindings(ctx, "1000"); len(bs) != 1 || bs[0].Contact != "sip:1000@10.0.0.2" {
				t.Errorf("wrapped store Bindings = %+v", bs)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			backing := store.NewMemoryClock(clk.Now)
			must(t, backing.PutDN(ctx, ext("1000")))
			must(t, backing.PutDN(ctx, dn.DN{Number: "9000", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.1", TrustedSources: []string{"192.0.2.0/24"}}))
			must(t, backing.PutBinding(ctx, binding(clk, "1000", "sip:1000@10.0.0.1", time.Minute)))
			must(t, backing.PutBinding(ctx, binding(clk, "1000", "sip:1000@10.0.0.2", 2*time.Hour)))
			clk.Add(time.Hour) // the first binding has expired, unpurged, when the cache loads
			c, err := store.NewCached(ctx, backing, clk.Now)
			must(t, err)
			t.Cleanup(func() { _ = c.Close() })
			tc.run(t, ctx, backing, c, clk)
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
