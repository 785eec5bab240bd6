package registrar

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// lockKey is what failures are counted against: the user named by the request (the To
// user of a REGISTER, the From user of an INVITE) and the source IP, without port. Keying
// by both means a guesser locks out only its own attempts at one user: the real user,
// from another address, is not refused (issue 10, "lockout must not be a weapon").
type lockKey struct {
	user string
	ip   string
}

// lockState is the failure record of one key.
type lockState struct {
	fails int       // failures counted since the key was last forgiven
	last  time.Time // time of the last counted failure
	until time.Time // backing off until this time; zero when not backing off
}

// lockout counts failed digest answers per (user, source IP) and makes a key back off
// exponentially once it reaches limit: the limit-th failure starts a backoff of base, each
// further failure after a backoff ended doubles it, up to max. A key with no failure for
// max (and not backing off) is forgiven. The table is a hard-capped LRU: every operation
// is O(1), and a flood of new keys evicts the least recently failed ones, never grows the
// table.
type lockout struct {
	limit int
	base  time.Duration // first backoff
	max   time.Duration // longest backoff, and the quiet time after which a key is forgiven

	mu sync.Mutex // guards table
	// table holds the failure record of each key, least recently failed first out.
	table *simplelru.LRU[lockKey, *lockState]
}

func newLockout(limit int, base, max time.Duration, size int) *lockout {
	t, err := simplelru.NewLRU[lockKey, *lockState](size, nil)
	if err != nil {
		panic(err) // only for size <= 0, which New never passes
	}
	return &lockout{limit: limit, base: min(base, max), max: max, table: t}
}

// blocked returns how long key must still wait at now; 0 means it may try.
func (l *lockout) blocked(user, ip string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.table.Peek(lockKey{user, ip}) // Peek: a check does not refresh the entry
	if !ok || !now.Before(st.until) {
		return 0
	}
	return st.until.Sub(now)
}

// fail counts a failure of key at now and returns the backoff it started, or 0 when the
// key may go on trying.
func (l *lockout) fail(user, ip string, now time.Time) time.Duration {
	k := lockKey{user, ip}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.table.Get(k)
	if !ok {
		st = &lockState{}
		l.table.Add(k, st)
	}
	if now.Before(st.until) {
		return 0 // callers check blocked first; a race may still land here
	}
	if st.fails > 0 && now.Sub(st.last) > l.max && now.Sub(st.until) > l.max {
		st.fails = 0 // quiet long enough: forgiven
	}
	st.fails++
	st.last = now
	if st.fails < l.limit {
		return 0
	}
	shift := min(st.fails-l.limit, 30)
	b := min(l.base<<shift, l.max)
	if b <= 0 { // overflow
		b = l.max
	}
	st.until = now.Add(b)
	return b
}

// len is the number of keys tracked.
func (l *lockout) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.table.Len()
}
