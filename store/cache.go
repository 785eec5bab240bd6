package store

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// Cached keeps an in-memory copy of a Store's DNs and bindings, so that the per-call reads
// (caller authorization, routing, resolving a DN and its bindings) cost a map lookup instead
// of a database transaction and a JSON decode. Writes go to the wrapped store first (durable
// before they return) and then update the copy. It assumes it is the only writer of the
// wrapped store (one sipsvc process per data directory, which the bbolt file lock enforces).
//
// It also keeps the short list of trusted DNs (TrustedDNs) up to date on every DN write,
// with their trusted sources parsed, so that authorizing a call from a trunk costs a copy
// of that list rather than a scan of every DN.
type Cached struct {
	s   Store
	now func() time.Time

	closed atomic.Bool

	mu       sync.RWMutex // guards dns, trusted and bindings
	dns      map[string]dn.DN
	trusted  []dn.DN                          // the DNs of dns that trust (see trusts), by number, sources parsed
	bindings map[string]map[string]dn.Binding // number → binding key → binding
}

// Interface guards.
var _ Store = (*Cached)(nil)

// NewCached loads every DN and unexpired binding of s into memory. now is the clock used to
// hide expired bindings; nil means time.Now.
func NewCached(ctx context.Context, s Store, now func() time.Time) (*Cached, error) {
	if now == nil {
		now = time.Now
	}
	c := &Cached{s: s, now: now, dns: map[string]dn.DN{}, bindings: map[string]map[string]dn.Binding{}}
	ds, err := s.ListDNs(ctx)
	if err != nil {
		return nil, fmt.Errorf("store cache: load DNs: %w", err)
	}
	for _, d := range ds {
		c.putDNLocked(d)
	}
	bs, err := s.AllBindings(ctx)
	if err != nil {
		return nil, fmt.Errorf("store cache: load bindings: %w", err)
	}
	for _, b := range bs {
		c.putBindingLocked(b.WithKey())
	}
	return c, nil
}

// putDNLocked stores a copy of d in the copy and in the trusted list, replacing the DN
// with the same number.
func (c *Cached) putDNLocked(d dn.DN) {
	d = cloneDN(d) // the caller may reuse d's slices
	c.dns[d.Number] = d
	i, found := c.trustedIndexLocked(d.Number)
	switch {
	case trusts(d) && found:
		c.trusted[i] = d.WithSourcesParsed()
	case trusts(d):
		c.trusted = slices.Insert(c.trusted, i, d.WithSourcesParsed())
	case found:
		c.trusted = slices.Delete(c.trusted, i, i+1)
	}
}

// deleteDNLocked removes the DN number, and its bindings, from the copy.
func (c *Cached) deleteDNLocked(number string) {
	delete(c.dns, number)
	delete(c.bindings, number)
	if i, found := c.trustedIndexLocked(number); found {
		c.trusted = slices.Delete(c.trusted, i, i+1)
	}
}

// trustedIndexLocked finds number in the trusted list: its index, or where it would go.
func (c *Cached) trustedIndexLocked(number string) (int, bool) {
	return slices.BinarySearchFunc(c.trusted, number, func(d dn.DN, n string) int { return strings.Compare(d.Number, n) })
}

// putBindingLocked stores b, whose Key is set, in the copy.
func (c *Cached) putBindingLocked(b dn.Binding) {
	m := c.bindings[b.Number]
	if m == nil {
		m = map[string]dn.Binding{}
		c.bindings[b.Number] = m
	}
	m[b.Key] = b
}

// CreateDN implements Store.
func (c *Cached) CreateDN(ctx context.Context, d dn.DN) error {
	if err := c.s.CreateDN(ctx, d); err != nil {
		return err
	}
	c.mu.Lock()
	c.putDNLocked(d)
	c.mu.Unlock()
	return nil
}

// UpdateDN implements Store.
func (c *Cached) UpdateDN(ctx context.Context, d dn.DN) error {
	if err := c.s.UpdateDN(ctx, d); err != nil {
		return err
	}
	c.mu.Lock()
	c.putDNLocked(d)
	c.mu.Unlock()
	return nil
}

// PutDN implements Store.
func (c *Cached) PutDN(ctx context.Context, d dn.DN) error {
	if err := c.s.PutDN(ctx, d); err != nil {
		return err
	}
	c.mu.Lock()
	c.putDNLocked(d)
	c.mu.Unlock()
	return nil
}

// DeleteDN implements Store.
func (c *Cached) DeleteDN(ctx context.Context, number string) error {
	if err := c.s.DeleteDN(ctx, number); err != nil {
		return err
	}
	c.mu.Lock()
	c.deleteDNLocked(number)
	c.mu.Unlock()
	return nil
}

// Lookup implements Store from memory.
func (c *Cached) Lookup(_ context.Context, number string) (dn.DN, error) {
	if c.closed.Load() {
		return dn.DN{}, ErrClosed
	}
	c.mu.RLock()
	d, ok := c.dns[number]
	c.mu.RUnlock()
	if !ok {
		return dn.DN{}, fmt.Errorf("DN %q: %w", number, dn.ErrNotFound)
	}
	return cloneDN(d), nil
}

// ListDNs implements Store from memory, sorted by number.
func (c *Cached) ListDNs(context.Context) ([]dn.DN, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.mu.RLock()
	out := make([]dn.DN, 0, len(c.dns))
	for _, d := range c.dns {
		out = append(out, cloneDN(d))
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// TrustedDNs implements Store from memory: a copy of the trusted list kept by the DN
// writes, whose trusted sources are parsed already (dn.DN.WithSourcesParsed). The DNs'
// slices are copied too, into one allocation, so callers cannot alias the cache.
func (c *Cached) TrustedDNs(context.Context) ([]dn.DN, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, d := range c.trusted {
		n += len(d.TrustedSources) + len(d.TrustedCertSubjects)
	}
	out := make([]dn.DN, len(c.trusted))
	strs := make([]string, 0, n)
	// clip copies ss to the end of strs and returns the copy, capacity clipped so that an
	// append by the caller reallocates instead of overwriting the next DN's strings.
	clip := func(ss []string) []string {
		if ss == nil {
			return nil
		}
		i := len(strs)
		strs = append(strs, ss...)
		return strs[i:len(strs):len(strs)]
	}
	for i, d := range c.trusted {
		d.TrustedSources = clip(d.TrustedSources)
		d.TrustedCertSubjects = clip(d.TrustedCertSubjects)
		out[i] = d
	}
	return out, nil
}

// PutBinding implements Store.
func (c *Cached) PutBinding(ctx context.Context, b dn.Binding) error {
	if err := c.s.PutBinding(ctx, b); err != nil {
		return err
	}
	b = cloneBinding(b).WithKey() // the caller may reuse b.Path; reads share the cached slice
	c.mu.Lock()
	c.putBindingLocked(b)
	c.mu.Unlock()
	return nil
}

// DeleteBinding implements Store.
func (c *Cached) DeleteBinding(ctx context.Context, number, key string) error {
	if err := c.s.DeleteBinding(ctx, number, key); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.bindings[number], key)
	c.mu.Unlock()
	return nil
}

// DeleteBindings implements Store.
func (c *Cached) DeleteBindings(ctx context.Context, number string) error {
	if err := c.s.DeleteBindings(ctx, number); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.bindings, number)
	c.mu.Unlock()
	return nil
}

// Bindings implements Store from memory: unexpired bindings sorted by contact.
func (c *Cached) Bindings(_ context.Context, number string) ([]dn.Binding, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	now := c.now()
	c.mu.RLock()
	m := c.bindings[number]
	out := make([]dn.Binding, 0, len(m))
	for _, b := range m {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out, nil
}

// AllBindings implements Store from memory.
func (c *Cached) AllBindings(context.Context) ([]dn.Binding, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	now := c.now()
	c.mu.RLock()
	var out []dn.Binding
	for _, m := range c.bindings {
		for _, b := range m {
			if b.Expires.After(now) {
				out = append(out, b)
			}
		}
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Number != out[j].Number {
			return out[i].Number < out[j].Number
		}
		return out[i].Contact < out[j].Contact
	})
	return out, nil
}

// PurgeExpiredBindings implements Store: the wrapped store purges and reports the bindings;
// the copy drops the same ones.
func (c *Cached) PurgeExpiredBindings(ctx context.Context, now time.Time) ([]dn.Binding, error) {
	gone, err := c.s.PurgeExpiredBindings(ctx, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	for number, m := range c.bindings {
		for k, b := range m {
			if !b.Expires.After(now) {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(c.bindings, number)
		}
	}
	c.mu.Unlock()
	return gone, nil
}

// Ping implements Store: it asks the backing store, which the cache's reads never reach.
func (c *Cached) Ping(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return c.s.Ping(ctx)
}

// Close implements Store.
func (c *Cached) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.s.Close()
}
