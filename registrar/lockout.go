package registrar

import (
	"sync"
	"time"
)

// maxTrackedSources bounds the failure table; past it, stale entries are swept inline.
const maxTrackedSources = 100_000

// lockout counts failed authentications per source IP and locks out sources that reach
// the limit within the window.
type lockout struct {
	limit  int
	period time.Duration // both the counting window and the lockout length

	mu sync.Mutex // guards sources
	// sources by IP address (no port).
	sources map[string]*failures
}

type failures struct {
	count int
	first time.Time // start of the counting window
	until time.Time // locked out until this time; zero when not locked
}

func newLockout(limit int, period time.Duration) *lockout {
	return &lockout{limit: limit, period: period, sources: map[string]*failures{}}
}

// locked reports whether ip is locked out at now.
func (l *lockout) locked(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[ip]
	return f != nil && now.Before(f.until)
}

// fail records a failure from ip and reports whether it just locked the source out.
func (l *lockout) fail(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[ip]
	if f == nil {
		if len(l.sources) >= maxTrackedSources {
			l.sweepLocked(now)
		}
		f = &failures{first: now}
		l.sources[ip] = f
	}
	if now.Before(f.until) {
		return false
	}
	if now.Sub(f.first) > l.period {
		f.count, f.first = 0, now
	}
	f.count++
	if f.count < l.limit {
		return false
	}
	f.count, f.first, f.until = 0, now, now.Add(l.period)
	return true
}

// sweep forgets sources whose window and lockout are over.
func (l *lockout) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
}

func (l *lockout) sweepLocked(now time.Time) {
	for ip, f := range l.sources {
		if !now.Before(f.until) && now.Sub(f.first) > l.period {
			delete(l.sources, ip)
		}
	}
}
