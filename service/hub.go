package service

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/sipsvc/sipsvc/signaling"
)

// DefaultHubBuffer is the number of events a subscriber may lag behind before it is dropped.
const DefaultHubBuffer = 256

// Hub fans signaling events out to WatchEvents subscribers. Observe never blocks: each
// subscriber has a bounded buffer, and a subscriber whose buffer is full is dropped (its
// stream ends with UNAVAILABLE and a warning is logged) rather than slowing the calls.
type Hub struct {
	log    *slog.Logger
	buffer int

	mu   sync.Mutex               // guards subs and the calls sets of every subscriber
	subs map[*subscriber]struct{} // live subscribers
}

var _ signaling.Observer = (*Hub)(nil)

// NewHub returns a Hub whose subscribers may lag by buffer events (DefaultHubBuffer when
// buffer <= 0). A nil logger discards warnings.
func NewHub(buffer int, log *slog.Logger) *Hub {
	if buffer <= 0 {
		buffer = DefaultHubBuffer
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hub{log: log, buffer: buffer, subs: make(map[*subscriber]struct{})}
}

// EventFilter selects events for one subscriber. Set fields are combined with AND.
type EventFilter struct {
	// DN selects the DN's registration events and every event of a call from the first
	// event of that call that names the DN, until the call ends.
	DN string
	// CallID selects one call's events.
	CallID string
	// Kinds selects event kinds; empty means all.
	Kinds []signaling.EventKind
}

// subscriber is one WatchEvents stream.
type subscriber struct {
	filter EventFilter
	ch     chan signaling.Event // closed when unsubscribed or dropped
	// calls are the call ids that matched filter.DN (guarded by Hub.mu).
	calls map[string]bool
}

// matchLocked reports whether ev passes the filter and tracks the calls of filter.DN.
func (s *subscriber) matchLocked(ev signaling.Event) bool {
	f := s.filter
	if f.CallID != "" && ev.CallID != f.CallID {
		return false
	}
	if f.DN != "" {
		switch {
		case ev.CallID == "":
			number := ev.DN
			if ev.Binding != nil && number == "" {
				number = ev.Binding.Number
			}
			if number != f.DN {
				return false
			}
		case ev.DN == f.DN:
			if ev.Kind == signaling.EventCallEnded {
				delete(s.calls, ev.CallID)
			} else {
				s.calls[ev.CallID] = true
			}
		case s.calls[ev.CallID]:
			if ev.Kind == signaling.EventCallEnded {
				delete(s.calls, ev.CallID)
			}
		default:
			return false
		}
	}
	return len(f.Kinds) == 0 || slices.Contains(f.Kinds, ev.Kind)
}

// Observe delivers ev to every matching subscriber without blocking.
func (h *Hub) Observe(_ context.Context, ev signaling.Event) {
	var dropped []*subscriber
	h.mu.Lock()
	for s := range h.subs {
		if !s.matchLocked(ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			delete(h.subs, s)
			close(s.ch)
			dropped = append(dropped, s)
		}
	}
	h.mu.Unlock()
	for _, s := range dropped {
		h.log.Warn("event subscriber too slow: dropped", "buffer", h.buffer,
			"filter_dn", s.filter.DN, "filter_call_id", s.filter.CallID)
	}
}

// subscribe registers a subscriber; the caller must unsubscribe it.
func (h *Hub) subscribe(f EventFilter) *subscriber {
	s := &subscriber{filter: f, ch: make(chan signaling.Event, h.buffer), calls: make(map[string]bool)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// unsubscribe removes s; it is a no-op for a dropped subscriber.
func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// Subscribers returns the number of live subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
