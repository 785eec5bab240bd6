package store

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// Memory is an in-memory Store for tests, and the in-memory copy that Cached keeps. It is
// safe for concurrent use and loses everything when the process exits.
//
// It keeps the short list of trusted DNs up to date on every DN write, with their trusted
// sources parsed (dn.DN.WithSourcesParsed), so that TrustedDNs costs a copy of that list
// rather than a scan of every DN.
type Memory struct {
	now func() time.Time

	mu sync.RWMutex // guards the fields below
	// dns by number; bindings by number, then by binding key.
	dns      map[string]dn.DN
	trusted  []dn.DN // the DNs of dns that trust (see trusts), by number, sources parsed
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

// check returns ctx's error, or ErrClosed once the store is closed; the caller holds mu.
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
	m.putDNLocked(d)
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
	m.putDNLocked(d)
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
	m.putDNLocked(d)
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
	m.deleteDNLocked(number)
	return nil
}

// putDNLocked stores a copy of d, and keeps the trusted list, replacing the DN with the
// same number; the caller holds mu and has validated d.
func (m *Memory) putDNLocked(d dn.DN) {
	d = cloneDN(d) // the caller may reuse d's slices
	m.dns[d.Number] = d
	i, found := m.trustedIndexLocked(d.Number)
	switch {
	case trusts(d) && found:
		m.trusted[i] = d.WithSourcesParsed()
	case trusts(d):
		m.trusted = slices.Insert(m.trusted, i, d.WithSourcesParsed())
	case found:
		m.trusted = slices.Delete(m.trusted, i, i+1)
	}
}

// deleteDNLocked removes the DN number and its bindings, if any; the caller holds mu.
func (m *Memory) deleteDNLocked(number string) {
	delete(m.dns, number)
	delete(m.bindings, number)
	if i, found := m.trustedIndexLocked(number); found {
		m.trusted = slices.Delete(m.trusted, i, i+1)
	}
}

// trustedIndexLocked finds number in the trusted list: its index, or where it would go.
func (m *Memory) trustedIndexLocked(number string) (int, bool) {
	return slices.BinarySearchFunc(m.trusted, number, func(d dn.DN, n string) int { return strings.Compare(d.Number, n) })
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

// TrustedDNs returns the DNs with TrustedSources or TrustedCertSubjects, by number: a copy
// of the trusted list kept by the DN writes, whose trusted sources are parsed already
// (dn.DN.WithSourcesParsed). The DNs' slices are copied too, into one allocation, so
// callers cannot alias the store.
func (m *Memory) TrustedDNs(ctx context.Context) ([]dn.DN, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	n := 0
	for i := range m.trusted { // by index: a DN is too large to copy for two lengths
		n += len(m.trusted[i].TrustedSources) + len(m.trusted[i].TrustedCertSubjects)
	}
	out := make([]dn.DN, len(m.trusted))
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
	copy(out, m.trusted)
	for i := range out {
		out[i].TrustedSources = clip(out[i].TrustedSources)
		out[i].TrustedCertSubjects = clip(out[i].TrustedCertSubjects)
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
	m.putBindingLocked(b)
	return nil
}

// putBindingLocked stores a copy of b, whose Key is set and whose DN exists; the caller
// holds mu.
func (m *Memory) putBindingLocked(b dn.Binding) {
	bs := m.bindings[b.Number]
	if bs == nil {
		bs = map[string]dn.Binding{}
		m.bindings[b.Number] = bs
	}
	bs[b.Key] = cloneBinding(b) // the caller may reuse b.Path
}

// DeleteBinding removes one binding by its key; dn.ErrNotFound if absent.
func (m *Memory) DeleteBinding(ctx context.Context, number, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if !m.deleteBindingLocked(number, key) {
		return notFoundBinding(number, key)
	}
	return nil
}

// deleteBindingLocked removes one binding by its key and reports whether it was there; the
// caller holds mu.
func (m *Memory) deleteBindingLocked(number, key string) bool {
	bs := m.bindings[number]
	if _, ok := bs[key]; !ok {
		return false
	}
	delete(bs, key)
	if len(bs) == 0 {
		delete(m.bindings, number)
	}
	return true
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
	out := m.purgeLocked(now)
	sortBindings(out)
	return out, nil
}

// purgeLocked deletes the bindings that expired at or before now and returns them, in no
// order; the caller holds mu.
func (m *Memory) purgeLocked(now time.Time) []dn.Binding {
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
	return out
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
