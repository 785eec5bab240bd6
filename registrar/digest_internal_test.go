package registrar

import (
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

func TestNonces(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &nonces{secret: []byte("k1"), ttl: time.Minute}
	other := &nonces{secret: []byte("k2"), ttl: time.Minute}
	a := n.issue(now, "192.0.2.1")
	if a == n.issue(now, "192.0.2.1") {
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
		{"other secret", other.issue(now, "192.0.2.1"), now, nonceForeign},
		{"garbage", "not-a-nonce", now, nonceForeign},
		{"tampered", a[:10] + flip(a[10]) + a[11:], now, nonceForeign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := n.check(tc.nonce, tc.at, "192.0.2.1"); got != tc.want {
				t.Fatalf("check = %d, want %d", got, tc.want)
			}
		})
	}
	// A nonce is bound to the source IP it was issued to.
	if _, got := n.check(a, now, "192.0.2.2"); got != nonceForeign {
		t.Fatalf("nonce checked from another source: %d, want foreign", got)
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

// TestLockout: failures are counted per (user, source IP); the limit-th starts a backoff
// that doubles with each further failure up to the maximum; a quiet key is forgiven.
func TestLockout(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLockout(3, time.Second, time.Minute, 100)
	for i := range 2 {
		if b := l.fail("1000", "10.0.0.1", now); b != 0 {
			t.Fatalf("backoff %s after %d failures", b, i+1)
		}
	}
	// Other keys are not affected: another user from the same IP, the same user elsewhere.
	if l.blocked("1001", "10.0.0.1", now) != 0 || l.blocked("1000", "10.0.0.2", now) != 0 {
		t.Fatal("another key blocked")
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	at := now
	for i, w := range want {
		b := l.fail("1000", "10.0.0.1", at)
		if b != w {
			t.Fatalf("failure %d: backoff %s, want %s", i+3, b, w)
		}
		if got := l.blocked("1000", "10.0.0.1", at); got != w {
			t.Fatalf("blocked %s, want %s", got, w)
		}
		// A failure while backing off (a race past blocked) changes nothing.
		if l.fail("1000", "10.0.0.1", at.Add(w/2)) != 0 || l.blocked("1000", "10.0.0.1", at.Add(w/2)) != w/2 {
			t.Fatal("failure during backoff counted")
		}
		at = at.Add(w)
		if l.blocked("1000", "10.0.0.1", at) != 0 {
			t.Fatal("still blocked when the backoff ended")
		}
	}
	// Quiet for longer than the maximum: forgiven, two free failures again.
	at = at.Add(2 * time.Minute)
	if l.fail("1000", "10.0.0.1", at) != 0 || l.fail("1000", "10.0.0.1", at) != 0 || l.fail("1000", "10.0.0.1", at) != time.Second {
		t.Fatal("not forgiven after a quiet period")
	}
}

// TestLockoutTableIsBounded: a flood of distinct keys never grows the table past its cap;
// the least recently failed keys go first, and a key that keeps failing stays.
func TestLockoutTableIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLockout(2, time.Minute, time.Hour, 50)
	l.fail("1000", "10.0.0.1", now)
	for i := range 1000 {
		l.fail("u"+strconv.Itoa(i), "192.0.2.1", now)
		if i%10 == 0 {
			l.fail("1000", "10.0.0.1", now) // keeps failing: recently used, never evicted
		}
		if n := l.len(); n > 50 {
			t.Fatalf("table holds %d keys, cap 50", n)
		}
	}
	if l.blocked("1000", "10.0.0.1", now) == 0 {
		t.Fatal("the active key was evicted by the flood")
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
				nonce := n.issue(time.Now(), "192.0.2.1")
				want := (&digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}).String()
				if got := f.render(nonce, stale); got != want {
					t.Errorf("render(%s, %s, stale=%v)\n got %s\nwant %s", realm, alg, stale, got, want)
				}
			}
		}
	}
}

// TestSameURI: the digest uri must name the Request-URI (issue 10, RFC 2617 §3.2.2.5):
// scheme, user, host and port; case-insensitive scheme and host; parameters ignored.
func TestSameURI(t *testing.T) {
	tests := []struct {
		ruri, uri string
		want      bool
	}{
		{"sip:127.0.0.1:5060", "sip:127.0.0.1:5060", true},
		{"sip:127.0.0.1:5060;transport=tcp", "sip:127.0.0.1:5060", true},
		{"sip:127.0.0.1:5060", "sip:127.0.0.1:5060;transport=tcp", true},
		{"sip:Example.COM", "SIP:example.com", true},
		{"sip:1000@example.com", "sip:1000@example.com", true},
		{"sips:[::1]:5061", "sips:[::1]:5061", true},
		{"sip:[2001:db8::1]", "sip:[2001:db8::1]", true},
		{"sip:127.0.0.1:5060", "sip:127.0.0.1:5061", false},
		{"sip:127.0.0.1:5060", "sip:127.0.0.1:15060", false},
		{"sip:127.0.0.1:5060", "sip:127.0.0.1", false},
		{"sip:127.0.0.1", "sip:127.0.0.1:5060", false},
		{"sip:127.0.0.1", "sips:127.0.0.1", false},
		{"sip:127.0.0.1", "sip:127.0.0.2", false},
		{"sip:127.0.0.1", "sip:1000@127.0.0.1", false},
		{"sip:1000@127.0.0.1", "sip:127.0.0.1", false},
		{"sip:[2001:db8::1]", "sip:[2001:db8::2]", false},
		{"sip:127.0.0.1:5060", "", false},
		{"sip:127.0.0.1:5060", ":5060", false},
		{"sip:127.0.0.1:5060", "*", false},
	}
	for _, tc := range tests {
		var u sip.Uri
		if err := sip.ParseUri(tc.ruri, &u); err != nil {
			t.Fatal(err)
		}
		if got := sameURI(tc.uri, &u); got != tc.want {
			t.Errorf("sameURI(%q, %q) = %v, want %v", tc.uri, tc.ruri, got, tc.want)
		}
	}
	var u sip.Uri
	_ = sip.ParseUri("sip:registrar.example.net:5060;transport=udp", &u)
	if n := testing.AllocsPerRun(100, func() { sameURI("sip:registrar.example.net:5060", &u) }); n != 0 {
		t.Errorf("sameURI allocates %v times", n)
	}
}
