package registrar

import (
	"testing"
	"time"

	"github.com/icholy/digest"
)

func TestNonces(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &nonces{secret: []byte("k1"), ttl: time.Minute}
	other := &nonces{secret: []byte("k2"), ttl: time.Minute}
	a := n.issue(now)
	if a == n.issue(now) {
		t.Fatal("two nonces issued at the same instant are equal")
	}
	tests := []struct {
		name  string
		nonce string
		at    time.Time
		want  nonceState
	}{
		{"fresh", a, now.Add(30 * time.Second), nonceValid},
		{"expired", a, now.Add(61 * time.Second), nonceExpired},
		{"other secret", other.issue(now), now, nonceForeign},
		{"garbage", "not-a-nonce", now, nonceForeign},
		{"tampered", a[:10] + flip(a[10]) + a[11:], now, nonceForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := n.check(tc.nonce, tc.at); got != tc.want {
				t.Fatalf("check = %d, want %d", got, tc.want)
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestNCTracker(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newNCTracker(3, time.Minute)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	steps := []struct {
		nonce  string
		issued int
		nc     uint32
		now    int
		want   bool
	}{
		{"a", 0, 1, 1, true},
		{"a", 0, 1, 1, false}, // replay
		{"a", 0, 3, 1, true},  // may skip
		{"a", 0, 2, 1, false}, // may not go back
		{"b", 1, 1, 2, true},
		{"c", 2, 1, 3, true},
		{"d", 3, 1, 4, true},     // full: evicts a, floor = 0s
		{"a", 0, 4, 4, false},    // evicted and at/below floor: refused
		{"e", 0, 1, 4, false},    // unseen but issued at floor: refused
		{"f", 5, 1, 6, true},     // evicts b, floor = 1s
		{"b", 1, 2, 6, false},    // evicted
		{"d", 3, 2, 6, true},     // still tracked
		{"g", 100, 1, 100, true}, // c, d, f expired: dropped without raising the floor
		{"h", 99, 1, 100, true},  // issued after floor (1s)
	}
	for i, s := range steps {
		if got := tr.use(s.nonce, at(s.issued), s.nc, at(s.now)); got != s.want {
			t.Fatalf("step %d (%s nc=%d): %v, want %v", i, s.nonce, s.nc, got, s.want)
		}
	}
	if tr.count > 3 || len(tr.seen) != tr.count {
		t.Fatalf("count %d, map %d", tr.count, len(tr.seen))
	}
	if !tr.floor.Equal(at(1)) {
		t.Fatalf("floor %s", tr.floor)
	}
}

func TestLockout(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLockout(3, time.Minute)
	for i := range 2 {
		if l.fail("10.0.0.1", now) {
			t.Fatalf("locked after %d failures", i+1)
		}
	}
	// Failures outside the window do not add up.
	if l.fail("10.0.0.1", now.Add(2*time.Minute)) || l.locked("10.0.0.1", now.Add(2*time.Minute)) {
		t.Fatal("stale failures counted")
	}
	later := now.Add(2 * time.Minute)
	l.fail("10.0.0.1", later)
	if !l.fail("10.0.0.1", later) {
		t.Fatal("third failure in the window did not lock")
	}
	if l.fail("10.0.0.1", later) {
		t.Fatal("lockout reported twice")
	}
	if !l.locked("10.0.0.1", later.Add(59*time.Second)) || l.locked("10.0.0.2", later) {
		t.Fatal("locked() wrong")
	}
	if l.locked("10.0.0.1", later.Add(time.Minute)) {
		t.Fatal("still locked after the period")
	}
	l.sweep(later.Add(3 * time.Minute))
	if len(l.sources) != 0 {
		t.Fatalf("sweep left %d", len(l.sources))
	}
}

// TestChallengeFmt: a challenge rendered ahead of time is what the library writes for the
// same nonce, fresh and stale, in a realm that needs quoting.
func TestChallengeFmt(t *testing.T) {
	n := &nonces{secret: []byte("k"), ttl: time.Minute}
	for _, realm := range []string{"sipsvc", `a "quoted" realm`} {
		for _, alg := range []string{algSHA256, algMD5} {
			f := newChallengeFmt(realm, alg)
			for _, stale := range []bool{false, true} {
				nonce := n.issue(time.Now())
				want := (&digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}).String()
				if got := f.render(nonce, stale); got != want {
					t.Errorf("render(%s, %s, stale=%v)\n got %s\nwant %s", realm, alg, stale, got, want)
				}
			}
		}
	}
}
