package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// impls lists the implementations every conformance test runs against.
var impls = []struct {
	name string
	open func(t *testing.T, now func() time.Time) store.Store
}{
	{"memory", func(t *testing.T, now func() time.Time) store.Store { return store.NewMemoryClock(now) }},
	{"bolt", func(t *testing.T, now func() time.Time) store.Store {
		s, err := store.OpenBolt(context.Background(), store.BoltConfig{Path: filepath.Join(t.TempDir(), "sipsvc.db"), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"cached-bolt", func(t *testing.T, now func() time.Time) store.Store {
		s, err := store.OpenBolt(context.Background(), store.BoltConfig{Path: filepath.Join(t.TempDir(), "sipsvc.db"), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		c, err := store.NewCached(context.Background(), s, now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}},
}

func ext(number string) dn.DN {
	return dn.DN{Number: number, Type: dn.TypeExtension, Contact: "*"}
}

func binding(c *clock, number, contact string, ttl time.Duration) dn.Binding {
	return dn.Binding{Number: number, Contact: contact, Transport: "UDP", Source: "127.0.0.1:5060",
		CallID: "cid", CSeq: 1, Expires: c.Now().Add(ttl), Updated: c.Now()}
}

// TestConformance runs the Store contract against every implementation.
func TestConformance(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store, c *clock)
	}{
		{"CreateLookup", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			d := ext("1000")
			d.DisplayName = "Alice"
			d.TrustedSources = []string{"10.0.0.0/8"}
			d.HA1MD5, d.HA1SHA256 = dn.HashPassword("1000", "r", "pw")
			must(t, s.CreateDN(ctx, d))
			got, err := s.Lookup(ctx, "1000")
			must(t, err)
			if got.DisplayName != "Alice" || got.HA1MD5 != d.HA1MD5 || len(got.TrustedSources) != 1 {
				t.Fatalf("Lookup = %+v", got)
			}
		}},
		{"CreateDuplicate", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			err := s.CreateDN(ctx, ext("1000"))
			if !errors.Is(err, dn.ErrExists) {
				t.Fatalf("duplicate CreateDN = %v, want dn.ErrExists", err)
			}
		}},
		{"CreateInvalid", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			d := ext("1000")
			d.Contact = "sips:1000@h;transport=udp"
			err := s.CreateDN(ctx, d)
			var fe *dn.FieldError
			if !errors.As(err, &fe) || fe.Field != "contact" {
				t.Fatalf("CreateDN(bad contact) = %v, want FieldError contact", err)
			}
			if _, err := s.Lookup(ctx, "1000"); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("invalid DN was stored: %v", err)
			}
		}},
		{"LookupMissing", func(t *testing.T, s store.Store, c *clock) {
			if _, err := s.Lookup(context.Background(), "404"); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("Lookup = %v, want ErrNotFound", err)
			}
		}},
		{"UpdateAndPut", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			if err := s.UpdateDN(ctx, ext("1000")); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("UpdateDN(missing) = %v", err)
			}
			must(t, s.PutDN(ctx, ext("1000")))
			d := ext("1000")
			d.Disabled = true
			must(t, s.UpdateDN(ctx, d))
			got, _ := s.Lookup(ctx, "1000")
			if !got.Disabled {
				t.Fatal("UpdateDN not applied")
			}
			d.Disabled = false
			must(t, s.PutDN(ctx, d))
			got, _ = s.Lookup(ctx, "1000")
			if got.Disabled {
				t.Fatal("PutDN not applied")
			}
		}},
		{"ListSorted", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			for _, n := range []string{"3000", "1000", "2000"} {
				must(t, s.CreateDN(ctx, ext(n)))
			}
			ds, err := s.ListDNs(ctx)
			must(t, err)
			if len(ds) != 3 || ds[0].Number != "1000" || ds[2].Number != "3000" {
				t.Fatalf("ListDNs = %+v", ds)
			}
		}},
		{"DeleteDNDeletesBindings", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			must(t, s.CreateDN(ctx, ext("10000")))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.1:5060", time.Hour)))
			must(t, s.PutBinding(ctx, binding(c, "10000", "sip:10000@10.0.0.1:5060", time.Hour)))
			must(t, s.DeleteDN(ctx, "1000"))
			if err := s.DeleteDN(ctx, "1000"); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("second DeleteDN = %v", err)
			}
			// Re-creating the DN must not resurrect its bindings; the other DN keeps its own.
			must(t, s.CreateDN(ctx, ext("1000")))
			bs, _ := s.Bindings(ctx, "1000")
			if len(bs) != 0 {
				t.Fatalf("bindings survived DeleteDN: %+v", bs)
			}
			bs, _ = s.Bindings(ctx, "10000")
			if len(bs) != 1 {
				t.Fatalf("prefix DN lost its binding: %+v", bs)
			}
		}},
		{"BindingNeedsDN", func(t *testing.T, s store.Store, c *clock) {
			err := s.PutBinding(context.Background(), binding(c, "1000", "sip:1000@h", time.Hour))
			if !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("PutBinding(no DN) = %v", err)
			}
		}},
		{"BindingInvalid", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			for _, b := range []dn.Binding{
				binding(c, "1000", "", time.Hour),
				binding(c, "1000", "http://x", time.Hour),
				{Number: "1000", Contact: "sip:1000@h"}, // no expiry
				// a Key that is not the contact's
				{Number: "1000", Contact: "sip:1000@h", Key: "1000@other", Expires: c.Now().Add(time.Hour)},
			} {
				if err := s.PutBinding(ctx, b); !errors.Is(err, dn.ErrInvalid) {
					t.Errorf("PutBinding(%+v) = %v, want ErrInvalid", b, err)
				}
			}
		}},
		{"BindingReplaceSchemeInsensitive", func(t *testing.T, s store.Store, c *clock) {
			// R29: the same device with the other scheme replaces the binding.
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("7789")))
			must(t, s.PutBinding(ctx, binding(c, "7789", "sip:7789@10.0.0.1:5061;transport=tls", time.Hour)))
			b := binding(c, "7789", "sips:7789@10.0.0.1:5061", time.Hour)
			b.Secure = true
			must(t, s.PutBinding(ctx, b))
			bs, err := s.Bindings(ctx, "7789")
			must(t, err)
			if len(bs) != 1 || bs[0].Contact != "sips:7789@10.0.0.1:5061" || !bs[0].Secure {
				t.Fatalf("Bindings = %+v", bs)
			}
			// The binding comes back with its Key, which the caller left empty.
			if bs[0].Key != "7789@10.0.0.1:5061" {
				t.Fatalf("Bindings()[0].Key = %q, want 7789@10.0.0.1:5061", bs[0].Key)
			}
			all, err := s.AllBindings(ctx)
			must(t, err)
			if len(all) != 1 || all[0].Key != "7789@10.0.0.1:5061" {
				t.Fatalf("AllBindings = %+v", all)
			}
		}},
		{"BindingsSortedAndFiltered", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			must(t, s.CreateDN(ctx, ext("2000")))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.2", time.Hour)))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.1", time.Hour)))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.3", time.Minute)))
			must(t, s.PutBinding(ctx, binding(c, "2000", "sip:2000@10.0.0.9", time.Minute)))
			c.Add(2 * time.Minute)
			bs, err := s.Bindings(ctx, "1000")
			must(t, err)
			if len(bs) != 2 || bs[0].Contact != "sip:1000@10.0.0.1" || bs[1].Contact != "sip:1000@10.0.0.2" {
				t.Fatalf("Bindings = %+v", bs)
			}
			all, err := s.AllBindings(ctx)
			must(t, err)
			if len(all) != 2 {
				t.Fatalf("AllBindings = %+v", all)
			}
			gone, err := s.PurgeExpiredBindings(ctx, c.Now())
			must(t, err)
			if len(gone) != 2 {
				t.Fatalf("PurgeExpiredBindings = %+v, want 2 bindings", gone)
			}
			if gone, _ := s.PurgeExpiredBindings(ctx, c.Now()); len(gone) != 0 {
				t.Fatalf("second PurgeExpiredBindings = %+v", gone)
			}
		}},
		{"PurgeExpiredBindings", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.1", time.Second)))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.2", time.Hour)))
			gone, err := s.PurgeExpiredBindings(ctx, c.Now().Add(time.Minute))
			must(t, err)
			if len(gone) != 1 || gone[0].Contact != "sip:1000@10.0.0.1" {
				t.Fatalf("purged %+v", gone)
			}
		}},
		{"DeleteBinding", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			b := binding(c, "1000", "sip:1000@10.0.0.1:5060", time.Hour)
			must(t, s.PutBinding(ctx, b))
			must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.2:5060", time.Hour)))
			must(t, s.DeleteBinding(ctx, "1000", dn.BindingKey(b.Contact)))
			if err := s.DeleteBinding(ctx, "1000", dn.BindingKey(b.Contact)); !errors.Is(err, dn.ErrNotFound) {
				t.Fatalf("second DeleteBinding = %v", err)
			}
			bs, _ := s.Bindings(ctx, "1000")
			if len(bs) != 1 {
				t.Fatalf("Bindings = %+v", bs)
			}
			must(t, s.DeleteBindings(ctx, "1000"))
			bs, _ = s.Bindings(ctx, "1000")
			if len(bs) != 0 {
				t.Fatalf("Bindings after DeleteBindings = %+v", bs)
			}
		}},
		{"RoundTripFields", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			b := dn.Binding{Number: "1000", Contact: "sips:1000@10.0.0.1:5061", Secure: true, Transport: "TLS",
				Source: "10.0.0.1:40000", InstanceID: "<urn:uuid:1>", RegID: 2, CallID: "c1", CSeq: 7, UserAgent: "ua",
				Path:    []string{"sips:edge.example.net;lr", "sips:core.example.net:5061;lr"}, // RFC 3327, in order
				Expires: c.Now().Add(time.Hour), Updated: c.Now()}
			must(t, s.PutBinding(ctx, b))
			bs, _ := s.Bindings(ctx, "1000")
			if len(bs) != 1 || !bs[0].Expires.Equal(b.Expires) || !bs[0].Updated.Equal(b.Updated) {
				t.Fatalf("Bindings = %+v", bs)
			}
			got := bs[0]
			got.Expires, got.Updated = b.Expires, b.Updated
			b.Key = "1000@10.0.0.1:5061" // set by the store: the contact without its scheme (R29)
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
			}
		}},
		{"BindingPathKeptInOrderNotAliased", func(t *testing.T, s store.Store, c *clock) {
			// RFC 3327 §5.3: the Path is stored in order; the store keeps its own copy.
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			b := binding(c, "1000", "sip:1000@10.0.0.1:5060", time.Hour)
			b.Path = []string{"sip:edge.example.net;lr", "sip:core.example.net:5070;lr"}
			must(t, s.PutBinding(ctx, b))
			b.Path[0] = "sip:changed.example.net;lr"
			bs, err := s.Bindings(ctx, "1000")
			must(t, err)
			if len(bs) != 1 || !reflect.DeepEqual(bs[0].Path, []string{"sip:edge.example.net;lr", "sip:core.example.net:5070;lr"}) {
				t.Fatalf("Bindings = %+v", bs)
			}
			all, err := s.AllBindings(ctx)
			must(t, err)
			if len(all) != 1 || len(all[0].Path) != 2 {
				t.Fatalf("AllBindings = %+v", all)
			}
		}},
		{"BindingPathInvalid", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			b := binding(c, "1000", "sip:1000@10.0.0.1:5060", time.Hour)
			b.Path = []string{"sip:edge.example.net;lr", "sips:core.example.net;transport=udp;lr"}
			err := s.PutBinding(ctx, b)
			var fe *dn.FieldError
			if !errors.As(err, &fe) || fe.Field != "path[1]" {
				t.Fatalf("PutBinding(bad path) = %v, want FieldError path[1]", err)
			}
		}},
		{"BindingRegIDInvalid", func(t *testing.T, s store.Store, c *clock) {
			// RFC 5626 §4.2: reg-id is 1..2^31-1 and belongs to an instance; an outbound
			// binding needs its flow.
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			for _, tc := range []struct {
				name string
				edit func(*dn.Binding)
			}{
				{"negative", func(b *dn.Binding) { b.RegID, b.InstanceID = -1, "<urn:uuid:1>" }},
				{"too large", func(b *dn.Binding) { b.RegID, b.InstanceID = dn.MaxRegID+1, "<urn:uuid:1>" }},
				{"no instance", func(b *dn.Binding) { b.RegID = 1 }},
				{"no flow", func(b *dn.Binding) { b.RegID, b.InstanceID, b.Source = 1, "<urn:uuid:1>", "" }},
			} {
				b := binding(c, "1000", "sip:1000@10.0.0.1:5060", time.Hour)
				b.Transport, b.Source = "TLS", "10.0.0.1:40000"
				tc.edit(&b)
				err := s.PutBinding(ctx, b)
				var fe *dn.FieldError
				if !errors.As(err, &fe) || fe.Field != "reg_id" {
					t.Errorf("%s: PutBinding = %v, want FieldError reg_id", tc.name, err)
				}
			}
		}},
		{"Concurrent", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b := binding(c, "1000", "sip:1000@10.0.0.1:"+strconv.Itoa(5000+i), time.Hour)
					if err := s.PutBinding(ctx, b); err != nil {
						t.Error(err)
					}
					_, _ = s.Bindings(ctx, "1000")
				}()
			}
			wg.Wait()
			bs, _ := s.Bindings(ctx, "1000")
			if len(bs) != 50 {
				t.Fatalf("got %d bindings, want 50", len(bs))
			}
		}},
		{"TrustedDNs", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			must(t, s.CreateDN(ctx, ext("1000")))
			trunk := dn.DN{Number: "9000", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.1", TrustedSources: []string{"192.0.2.0/24"}}
			must(t, s.CreateDN(ctx, trunk))
			for range 2 { // second read may come from a cache
				ds, err := s.TrustedDNs(ctx)
				must(t, err)
				if len(ds) != 1 || ds[0].Number != "9000" {
					t.Fatalf("TrustedDNs = %+v", ds)
				}
				ds[0].TrustedSources[0] = "mutated" // must not reach the store or its cache
			}
			// A change is seen by the next call.
			trunk.TrustedSources = nil
			trunk.TrustedCertSubjects = []string{"gw.example.net"}
			must(t, s.UpdateDN(ctx, trunk))
			c2 := dn.DN{Number: "9001", Type: dn.TypeTrunk, Contact: "sip:gw2@192.0.2.2", TrustedSources: []string{"192.0.2.2"}}
			must(t, s.PutDN(ctx, c2))
			ds, err := s.TrustedDNs(ctx)
			must(t, err)
			if len(ds) != 2 || ds[0].TrustedCertSubjects[0] != "gw.example.net" || ds[1].Number != "9001" {
				t.Fatalf("TrustedDNs after update = %+v", ds)
			}
			must(t, s.DeleteDN(ctx, "9000"))
			ds, _ = s.TrustedDNs(ctx)
			if len(ds) != 1 || ds[0].Number != "9001" {
				t.Fatalf("TrustedDNs after delete = %+v", ds)
			}
		}},
		{"TrustedDNsFollowWrites", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			trunk := func(number string, sources, subjects []string) dn.DN {
				return dn.DN{Number: number, Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.1", TrustedSources: sources, TrustedCertSubjects: subjects}
			}
			steps := []struct {
				name  string
				write func() error
				want  []dn.DN // number, TrustedSources and TrustedCertSubjects of each, in order
			}{
				{"create", func() error {
					must(t, s.CreateDN(ctx, ext("1000")))
					return s.CreateDN(ctx, trunk("9000", []string{"192.0.2.0/24"}, nil))
				}, []dn.DN{trunk("9000", []string{"192.0.2.0/24"}, nil)}},
				{"put_new", func() error { return s.PutDN(ctx, trunk("9001", nil, []string{"gw.example.net"})) },
					[]dn.DN{trunk("9000", []string{"192.0.2.0/24"}, nil), trunk("9001", nil, []string{"gw.example.net"})}},
				{"put_new_sorts_first", func() error { return s.PutDN(ctx, trunk("0500", []string{"198.51.100.7"}, nil)) },
					[]dn.DN{trunk("0500", []string{"198.51.100.7"}, nil), trunk("9000", []string{"192.0.2.0/24"}, nil), trunk("9001", nil, []string{"gw.example.net"})}},
				{"update_drops_trust", func() error { return s.UpdateDN(ctx, trunk("9000", nil, nil)) },
					[]dn.DN{trunk("0500", []string{"198.51.100.7"}, nil), trunk("9001", nil, []string{"gw.example.net"})}},
				{"update_adds_trust", func() error {
					d := ext("1000")
					d.TrustedSources = []string{"203.0.113.0/24"}
					return s.UpdateDN(ctx, d)
				}, []dn.DN{trunk("0500", []string{"198.51.100.7"}, nil), {Number: "1000", TrustedSources: []string{"203.0.113.0/24"}}, trunk("9001", nil, []string{"gw.example.net"})}},
				{"put_changes_trust", func() error { return s.PutDN(ctx, trunk("0500", []string{"192.0.2.9"}, []string{"gw2.example.net"})) },
					[]dn.DN{trunk("0500", []string{"192.0.2.9"}, []string{"gw2.example.net"}), {Number: "1000", TrustedSources: []string{"203.0.113.0/24"}}, trunk("9001", nil, []string{"gw.example.net"})}},
				{"failed_writes_change_nothing", func() error {
					if err := s.UpdateDN(ctx, trunk("9999", []string{"192.0.2.1"}, nil)); !errors.Is(err, dn.ErrNotFound) {
						t.Fatalf("UpdateDN(missing) = %v", err)
					}
					if err := s.CreateDN(ctx, trunk("9001", []string{"192.0.2.1"}, nil)); !errors.Is(err, dn.ErrExists) {
						t.Fatalf("CreateDN(duplicate) = %v", err)
					}
					if err := s.PutDN(ctx, trunk("9001", []string{"not-an-ip"}, nil)); !errors.Is(err, dn.ErrInvalid) {
						t.Fatalf("PutDN(invalid) = %v", err)
					}
					return nil
				}, []dn.DN{trunk("0500", []string{"192.0.2.9"}, []string{"gw2.example.net"}), {Number: "1000", TrustedSources: []string{"203.0.113.0/24"}}, trunk("9001", nil, []string{"gw.example.net"})}},
				{"delete", func() error { return s.DeleteDN(ctx, "0500") },
					[]dn.DN{{Number: "1000", TrustedSources: []string{"203.0.113.0/24"}}, trunk("9001", nil, []string{"gw.example.net"})}},
				{"delete_untrusted", func() error { return s.DeleteDN(ctx, "9000") },
					[]dn.DN{{Number: "1000", TrustedSources: []string{"203.0.113.0/24"}}, trunk("9001", nil, []string{"gw.example.net"})}},
			}
			for _, st := range steps {
				must(t, st.write())
				for range 2 { // the second read may come from a cache
					ds, err := s.TrustedDNs(ctx)
					must(t, err)
					if len(ds) != len(st.want) {
						t.Fatalf("%s: TrustedDNs = %+v, want %+v", st.name, ds, st.want)
					}
					for i, w := range st.want {
						if d := ds[i]; d.Number != w.Number || !reflect.DeepEqual(d.TrustedSources, w.TrustedSources) ||
							!reflect.DeepEqual(d.TrustedCertSubjects, w.TrustedCertSubjects) {
							t.Fatalf("%s: TrustedDNs[%d] = %+v, want %+v", st.name, i, d, w)
						}
					}
				}
			}
			// The sources are matched as they are now, not as they were first parsed.
			ds, err := s.TrustedDNs(ctx)
			must(t, err)
			if !ds[0].TrustsSource("203.0.113.5") || ds[0].TrustsSource("198.51.100.7") {
				t.Fatalf("DN %s: TrustsSource(203.0.113.5), TrustsSource(198.51.100.7) = %v, %v, want true, false",
					ds[0].Number, ds[0].TrustsSource("203.0.113.5"), ds[0].TrustsSource("198.51.100.7"))
			}
		}},
		{"TrustedDNsNotAliased", func(t *testing.T, s store.Store, c *clock) {
			ctx := context.Background()
			a := dn.DN{Number: "9000", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.1",
				TrustedSources: []string{"192.0.2.1", "192.0.2.2"}, TrustedCertSubjects: []string{"a.example.net"}}
			b := dn.DN{Number: "9001", Type: dn.TypeTrunk, Contact: "sip:gw@192.0.2.3",
				TrustedSources: []string{"192.0.2.3"}, TrustedCertSubjects: []string{"b.example.net"}}
			must(t, s.CreateDN(ctx, a))
			must(t, s.PutDN(ctx, b))
			want := []dn.DN{cloneDN(a), cloneDN(b)}
			// The caller's slices are the caller's after the write.
			a.TrustedSources[0], a.TrustedCertSubjects[0] = "10.0.0.1", "mutated"
			b.TrustedSources[0] = "10.0.0.3"
			check := func(what string) {
				t.Helper()
				ds, err := s.TrustedDNs(ctx)
				must(t, err)
				if len(ds) != 2 {
					t.Fatalf("%s: TrustedDNs = %+v", what, ds)
				}
				for i := range want {
					if !reflect.DeepEqual(ds[i].TrustedSources, want[i].TrustedSources) ||
						!reflect.DeepEqual(ds[i].TrustedCertSubjects, want[i].TrustedCertSubjects) {
						t.Fatalf("%s: TrustedDNs[%d] = %+v, want %+v", what, i, ds[i], want[i])
					}
				}
				if !ds[0].TrustsSource("192.0.2.1") || ds[0].TrustsSource("10.0.0.1") {
					t.Fatalf("%s: DN 9000 trusts the mutated source", what)
				}
				for _, n := range []string{"9000", "9001"} {
					d, err := s.Lookup(ctx, n)
					must(t, err)
					if d.TrustedSources[0] == "10.0.0.1" || d.TrustedSources[0] == "10.0.0.3" || d.TrustedCertSubjects[0] == "mutated" {
						t.Fatalf("%s: Lookup(%s) = %+v", what, n, d)
					}
				}
			}
			check("after mutating the written DNs")
			for range 2 { // the second read may come from a cache
				ds, err := s.TrustedDNs(ctx)
				must(t, err)
				ds[0].TrustedSources[0] = "10.0.0.1"
				ds[0].TrustedCertSubjects[0] = "mutated"
				// Appending to one DN's slice must not overwrite another's.
				ds[0].TrustedSources = append(ds[0].TrustedSources, "10.0.0.9")
				ds[0].TrustedCertSubjects = append(ds[0].TrustedCertSubjects, "mutated")
				if !reflect.DeepEqual(ds[1].TrustedSources, want[1].TrustedSources) ||
					!reflect.DeepEqual(ds[1].TrustedCertSubjects, want[1].TrustedCertSubjects) {
					t.Fatalf("appending to TrustedDNs[0] changed TrustedDNs[1]: %+v", ds[1])
				}
				ds[1].TrustedSources[0] = "10.0.0.3"
				check("after mutating the TrustedDNs answer")
			}
			for _, read := range []func() (dn.DN, error){
				func() (dn.DN, error) { return s.Lookup(ctx, "9000") },
				func() (dn.DN, error) { ds, err := s.ListDNs(ctx); return ds[0], err },
			} {
				d, err := read()
				must(t, err)
				d.TrustedSources[0] = "10.0.0.1"
				d.TrustedCertSubjects[0] = "mutated"
				check("after mutating a Lookup or ListDNs answer")
			}
		}},
		{"CanceledContext", func(t *testing.T, s store.Store, c *clock) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.PutDN(ctx, ext("1000")); !errors.Is(err, context.Canceled) {
				t.Fatalf("PutDN(canceled) = %v", err)
			}
		}},
		{"Closed", func(t *testing.T, s store.Store, c *clock) {
			must(t, s.Ping(context.Background()))
			must(t, s.Close())
			if err := s.Ping(context.Background()); !errors.Is(err, store.ErrClosed) {
				t.Fatalf("Ping after Close = %v, want ErrClosed", err)
			}
			if _, err := s.Lookup(context.Background(), "1000"); !errors.Is(err, store.ErrClosed) {
				t.Fatalf("Lookup after Close = %v, want ErrClosed", err)
			}
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					c := newClock()
					s := impl.open(t, c.Now)
					t.Cleanup(func() { _ = s.Close() })
					tc.run(t, s, c)
				})
			}
		})
	}
}

// cloneDN copies the slices of d.
func cloneDN(d dn.DN) dn.DN {
	d.TrustedSources = append([]string(nil), d.TrustedSources...)
	d.TrustedCertSubjects = append([]string(nil), d.TrustedCertSubjects...)
	return d
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
