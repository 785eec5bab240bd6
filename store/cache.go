package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// Cached keeps an in-memory copy (a Memory) of a Store's DNs and bindings, so that the
// per-call reads (caller authorization, routing, resolving a DN and its bindings) cost a map
// lookup instead of a database transaction and a JSON decode. Writes go to the wrapped store
// first (durable before they return) and then update the copy; reads answer from the copy
// alone, whatever their context, and never reach the wrapped store. It assumes it is the
// only writer of the wrapped store (one sipsvc process per data directory, which the bbolt
// file lock enforces).
//
// The copy keeps the short list of trusted DNs up to date on every DN write, with their
// trusted sources parsed, so that authorizing a call from a trunk costs a copy of that list
// rather than a scan of every DN (Memory.TrustedDNs).
type Cached struct {
	s Store
	m *Memory // the copy; written only after s took the write, and without validating again

	closed atomic.Bool
}

// Interface guard.
var _ Store = (*Cached)(nil)

// NewCached loads every DN and unexpired binding of s into memory. now is the clock used to
// hide expired bindings; nil means time.Now.
func NewCached(ctx context.Context, s Store, now func() time.Time) (*Cached, error) {
	c := &Cached{s: s, m: NewMemoryClock(now)}
	ds, err := s.ListDNs(ctx)
	if err != nil {
		return nil, fmt.Errorf("store cache: load DNs: %w", err)
	}
	bs, err := s.AllBindings(ctx)
	if err != nil {
		return nil, fmt.Errorf("store cache: load bindings: %w", err)
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, d := range ds {
		c.m.putDNLocked(d)
	}
	for _, b := range bs {
		c.m.putBindingLocked(b.WithKey())
	}
	return c, nil
}

// putDN applies a DN write that the wrapped store took to the copy.
func (c *Cached) putDN(d dn.DN) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.putDNLocked(d)
}

// CreateDN implements Store.
func (c *Cached) CreateDN(ctx context.Context, d dn.DN) error {
	if err := c.s.CreateDN(ctx, d); err != nil {
		return err
	}
	c.putDN(d)
	return nil
}

// UpdateDN implements Store.
func (c *Cached) UpdateDN(ctx context.Context, d dn.DN) error {
	if err := c.s.UpdateDN(ctx, d); err != nil {
		return err
	}
	c.putDN(d)
	return nil
}

// PutDN implements Store.
func (c *Cached) PutDN(ctx context.Context, d dn.DN) error {
	if err := c.s.PutDN(ctx, d); err != nil {
		return err
	}
	c.putDN(d)
	return nil
}

// DeleteDN implements Store.
func (c *Cached) DeleteDN(ctx context.Context, number string) error {
	if err := c.s.DeleteDN(ctx, number); err != nil {
		return err
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.deleteDNLocked(number)
	return nil
}

// Lookup implements Store from memory.
func (c *Cached) Lookup(_ context.Context, number string) (dn.DN, error) {
	return c.m.Lookup(context.Background(), number)
}

// ListDNs implements Store from memory, sorted by number.
func (c *Cached) ListDNs(context.Context) ([]dn.DN, error) {
	return c.m.ListDNs(context.Background())
}

// TrustedDNs implements Store from memory: a copy of the trusted list kept by the DN writes,
// whose trusted sources are parsed already (dn.DN.WithSourcesParsed).
func (c *Cached) TrustedDNs(context.Context) ([]dn.DN, error) {
	return c.m.TrustedDNs(context.Background())
}

// PutBinding implements Store.
func (c *Cached) PutBinding(ctx context.Context, b dn.Binding) error {
	if err := c.s.PutBinding(ctx, b); err != nil {
		return err
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.putBindingLocked(b.WithKey())
	return nil
}

// DeleteBinding implements Store.
func (c *Cached) DeleteBinding(ctx context.Context, number, key string) error {
	if err := c.s.DeleteBinding(ctx, number, key); err != nil {
		return err
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.deleteBindingLocked(number, key) // absent if it had expired before NewCached loaded
	return nil
}

// DeleteBindings implements Store.
func (c *Cached) DeleteBindings(ctx context.Context, number string) error {
	if err := c.s.DeleteBindings(ctx, number); err != nil {
		return err
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	delete(c.m.bindings, number)
	return nil
}

// Bindings implements Store from memory: unexpired bindings sorted by contact.
func (c *Cached) Bindings(_ context.Context, number string) ([]dn.Binding, error) {
	return c.m.Bindings(context.Background(), number)
}

// AllBindings implements Store from memory.
func (c *Cached) AllBindings(context.Context) ([]dn.Binding, error) {
	return c.m.AllBindings(context.Background())
}

// PurgeExpiredBindings implements Store: the wrapped store purges and reports the bindings;
// the copy drops the same ones.
func (c *Cached) PurgeExpiredBindings(ctx context.Context, now time.Time) ([]dn.Binding, error) {
	gone, err := c.s.PurgeExpiredBindings(ctx, now)
	if err != nil {
		return nil, err
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.purgeLocked(now)
	return gone, nil
}

// Ping implements Store: it asks the backing store, which the cache's reads never reach.
func (c *Cached) Ping(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return c.s.Ping(ctx)
}

// Close implements Store: it closes the copy, whose reads then return ErrClosed, and the
// wrapped store.
func (c *Cached) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	_ = c.m.Close() // never fails
	return c.s.Close()
}
