package service

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// memStore is an in-memory store.Store for tests.
type memStore struct {
	mu       sync.Mutex                       // guards dns and bindings
	dns      map[string]dn.DN                 // by number
	bindings map[string]map[string]dn.Binding // number → key → binding
}

var _ store.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{dns: map[string]dn.DN{}, bindings: map[string]map[string]dn.Binding{}}
}

func (s *memStore) CreateDN(_ context.Context, d dn.DN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dns[d.Number]; ok {
		return dn.ErrExists
	}
	s.dns[d.Number] = d
	return nil
}

func (s *memStore) UpdateDN(_ context.Context, d dn.DN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dns[d.Number]; !ok {
		return dn.ErrNotFound
	}
	s.dns[d.Number] = d
	return nil
}

func (s *memStore) PutDN(_ context.Context, d dn.DN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dns[d.Number] = d
	return nil
}

func (s *memStore) DeleteDN(_ context.Context, number string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dns[number]; !ok {
		return dn.ErrNotFound
	}
	delete(s.dns, number)
	delete(s.bindings, number)
	return nil
}

func (s *memStore) Lookup(_ context.Context, number string) (dn.DN, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dns[number]
	if !ok {
		return dn.DN{}, dn.ErrNotFound
	}
	return d, nil
}

func (s *memStore) ListDNs(context.Context) ([]dn.DN, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dn.DN
	for _, d := range s.dns {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b dn.DN) int { return strings.Compare(a.Number, b.Number) })
	return out, nil
}

func (s *memStore) PutBinding(_ context.Context, b dn.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bindings[b.Number] == nil {
		s.bindings[b.Number] = map[string]dn.Binding{}
	}
	s.bindings[b.Number][b.Key()] = b
	return nil
}

func (s *memStore) DeleteBinding(_ context.Context, number, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bindings[number][key]; !ok {
		return dn.ErrNotFound
	}
	delete(s.bindings[number], key)
	return nil
}

func (s *memStore) DeleteBindings(_ context.Context, number string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.bindings, number)
	return nil
}

func (s *memStore) Bindings(_ context.Context, number string) ([]dn.Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dn.Binding
	for _, b := range s.bindings[number] {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b dn.Binding) int { return strings.Compare(a.Contact, b.Contact) })
	return out, nil
}

func (s *memStore) AllBindings(ctx context.Context) ([]dn.Binding, error) {
	s.mu.Lock()
	var numbers []string
	for n := range s.bindings {
		numbers = append(numbers, n)
	}
	s.mu.Unlock()
	var out []dn.Binding
	for _, n := range numbers {
		bs, _ := s.Bindings(ctx, n)
		out = append(out, bs...)
	}
	return out, nil
}

func (s *memStore) PurgeExpired(context.Context, time.Time) (int, error) { return 0, nil }

func (s *memStore) Close() error { return nil }

// fakeCalls is a CallControl whose behaviour each test sets through func fields; an unset
// field answers signaling.ErrNotSupported (or an empty list).
type fakeCalls struct {
	MakeCallFunc     func(ctx context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error)
	AnswerCallFunc   func(ctx context.Context, callID, legID string) error
	HoldCallFunc     func(ctx context.Context, callID, legID string) error
	RetrieveCallFunc func(ctx context.Context, callID, legID string) error
	TransferCallFunc func(ctx context.Context, req signaling.TransferRequest) error
	ReleaseCallFunc  func(ctx context.Context, callID string) error
	GetCallFunc      func(ctx context.Context, callID string) (signaling.CallInfo, error)
	ListCallsFunc    func(ctx context.Context, f signaling.CallFilter) []signaling.CallInfo
	// ReadyFunc answers Ready; unset means ready.
	ReadyFunc func() error
}

var (
	_ CallControl = (*fakeCalls)(nil)
	_ Readiness   = (*fakeCalls)(nil)
)

func (f *fakeCalls) Ready() error {
	if f.ReadyFunc == nil {
		return nil
	}
	return f.ReadyFunc()
}

func (f *fakeCalls) MakeCall(ctx context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error) {
	if f.MakeCallFunc == nil {
		return signaling.CallInfo{}, signaling.ErrNotSupported
	}
	return f.MakeCallFunc(ctx, req)
}

func (f *fakeCalls) AnswerCall(ctx context.Context, callID, legID string) error {
	if f.AnswerCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.AnswerCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) HoldCall(ctx context.Context, callID, legID string) error {
	if f.HoldCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.HoldCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) RetrieveCall(ctx context.Context, callID, legID string) error {
	if f.RetrieveCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.RetrieveCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) TransferCall(ctx context.Context, req signaling.TransferRequest) error {
	if f.TransferCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.TransferCallFunc(ctx, req)
}

func (f *fakeCalls) ReleaseCall(ctx context.Context, callID string) error {
	if f.ReleaseCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.ReleaseCallFunc(ctx, callID)
}

func (f *fakeCalls) GetCall(ctx context.Context, callID string) (signaling.CallInfo, error) {
	if f.GetCallFunc == nil {
		return signaling.CallInfo{}, signaling.ErrCallNotFound
	}
	return f.GetCallFunc(ctx, callID)
}

func (f *fakeCalls) ListCalls(ctx context.Context, filter signaling.CallFilter) []signaling.CallInfo {
	if f.ListCallsFunc == nil {
		return nil
	}
	return f.ListCallsFunc(ctx, filter)
}
