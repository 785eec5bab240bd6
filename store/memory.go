package store

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// Memory is an in-memory Store for tests. It is safe for concurrent use and loses
// everything when the process exits.
type Memory struct {
	now func() time.Time

	mu sync.RWMutex // guards the fields below
	// dns by number; bindings by number, then by binding key.
	dns      map[string]dn.DN
	bindings map[string]map[string]dn.Binding
	closed   bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store that uses the wall clock.
func NewMemory() *Memory { return NewMemoryClock(nil) }

// NewMemoryClock returns an empty in-memory store whose notion of "now" (for filtering
// expired bindings) is now; nil means time.Now.
func NewMemoryClock(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, dns: map[string]dn.DN{}, bindings: map[string]map[string]dn.Binding{}}
}

func (m *Memory) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed {
		return ErrClosed
	}
	return nil
}

// CreateDN adds a DN; dn.ErrExists if the number is taken.
func (m *Memory) CreateDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.dns[d.Number]; ok {
		return existsDN(d.Number)
	}
	m.dns[d.Number] = cloneDN(d)
	return nil
}

// UpdateDN replaces a DN; dn.ErrNotFound if it does not exist.
func (m *Memory) UpdateDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.dns[d.Number]; !ok {
		return notFoundDN(d.Number)
	}
	m.dns[d.Number] = cloneDN(d)
	return nil
}

// PutDN creates or replaces a DN.
func (m *Memory) PutDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	m.dns[d.Number] = cloneDN(d)
	return nil
}

// DeleteDN removes a DN and its bindings; dn.ErrNotFound if it does not exist.
func (m *Memory) DeleteDN(ctx context.Context, number string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.dns[number]; !ok {
		return notFoundDN(number)
	}
	delete(m.dns, number)
	delete(m.bindings, number)
	return nil
}

// Lookup returns one DN; dn.ErrNotFound if it does not exist.
func (m *Memory) Lookup(ctx context.Context, number string) (dn.DN, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return dn.DN{}, err
	}
	d, ok := m.dns[number]
	if !ok {
		return dn.DN{}, notFoundDN(number)
	}
	return cloneDN(d), nil
}

// ListDNs returns every DN sorted by number.
func (m *Memory) ListDNs(ctx context.Context) ([]dn.DN, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	out := make([]dn.DN, 0, len(m.dns))
	for _, d := range m.dns {
		out = append(out, cloneDN(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// TrustedDNs returns the DNs with TrustedSources or TrustedCertSubjects, by number.
func (m *Memory) TrustedDNs(ctx context.Context) ([]dn.DN, error) {
	ds, err := m.ListDNs(ctx)
	if err != nil {
		return nil, err
	}
	out := ds[:0]
	for _, d := range ds {
		if trusts(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// PutBinding creates or replaces the binding with the same Number and Key; dn.ErrNotFound
// if the DN does not exist.
func (m *Memory) PutBinding(ctx context.Context, b dn.Binding) error {
	b, err := validateBinding(b)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.dns[b.Number]; !ok {
		return notFoundDN(b.Number)
	}
	bs := m.bindings[b.Number]
	if bs == nil {
		bs = map[string]dn.Binding{}
		m.bindings[b.Number] = bs
	}
	bs[b.Key] = cloneBinding(b)
	return nil
}

// DeleteBinding removes one binding by its key; dn.ErrNotFound if absent.
func (m *Memory) DeleteBinding(ctx context.Context, number, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	bs := m.bindings[number]
	if _, ok := bs[key]; !ok {
		return notFoundBinding(number, key)
	}
	delete(bs, key)
	if len(bs) == 0 {
		delete(m.bindings, number)
	}
	return nil
}

// DeleteBindings removes every binding of a DN.
func (m *Memory) DeleteBindings(ctx context.Context, number string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	delete(m.bindings, number)
	return nil
}

// Bindings returns the unexpired bindings of a DN, sorted by contact.
func (m *Memory) Bindings(ctx context.Context, number string) ([]dn.Binding, error) {
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	var out []dn.Binding
	for _, b := range m.bindings[number] {
		if live(b, now) {
			out = append(out, cloneBinding(b))
		}
	}
	sortBindings(out)
	return out, nil
}

// AllBindings returns every unexpired binding, sorted by number then contact.
func (m *Memory) AllBindings(ctx context.Context) ([]dn.Binding, error) {
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	var out []dn.Binding
	for _, bs := range m.bindings {
		for _, b := range bs {
			if live(b, now) {
				out = append(out, cloneBinding(b))
			}
		}
	}
	sortBindings(out)
	return out, nil
}

// PurgeExpiredBindings deletes bindings that expired at or before now and returns them.
func (m *Memory) PurgeExpiredBindings(ctx context.Context, now time.Time) ([]dn.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	var out []dn.Binding
	for number, bs := range m.bindings {
		for k, b := range bs {
			if !live(b, now) {
				delete(bs, k)
				out = append(out, b)
			}
		}
		if len(bs) == 0 {
			delete(m.bindings, number)
		}
	}
	sortBindings(out)
	return out, nil
}

// Ping implements Store.
func (m *Memory) Ping(ctx context.Context) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.check(ctx)
}

// Close marks the store closed; later calls return ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
