package registrar

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest algorithms offered, in order of preference (RFC 8760 §2.4: strongest first).
const (
	algSHA256 = "SHA-256"
	algMD5    = "MD5"
)

// nonceLen is the raw nonce: 8 bytes issue time (unix ns), 8 random bytes, 16 bytes MAC.
const nonceLen = 32

// nonces issues and checks HMAC-signed, timestamped nonces bound to the source IP they
// were issued to. It holds no per-nonce state. The binding means a nonce obtained from one
// address is foreign from another: a wrong answer sent with a spoofed UDP source cannot
// count as a failure of the real user's address (the backoff counts only our live nonces).
type nonces struct {
	secret []byte
	ttl    time.Duration
	macs   sync.Pool // of hash.Hash: HMAC-SHA-256 keyed with secret, reused across nonces
}

// sign writes the HMAC-SHA-256 of msg and peer under the secret to out.
func (n *nonces) sign(msg []byte, peer string, out *[sha256.Size]byte) {
	mac, _ := n.macs.Get().(hash.Hash)
	if mac == nil {
		mac = hmac.New(sha256.New, n.secret)
	} else {
		mac.Reset()
	}
	// One buffer for both: what goes to the interface call escapes, and this way only m
	// does (the caller's nonce bytes stay on its stack).
	var m [16 + 48]byte
	mac.Write(append(append(m[:0], msg...), peer...))
	mac.Sum(out[:0])
	n.macs.Put(mac)
}

// issue returns a new nonce stamped with now for the source IP peer.
func (n *nonces) issue(now time.Time, peer string) string {
	var raw [nonceLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[8:16]) // crypto/rand never fails on supported platforms
	var sum [sha256.Size]byte
	n.sign(raw[:16], peer, &sum)
	copy(raw[16:], sum[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// nonceState is the outcome of checking a nonce.
type nonceState int

const (
	nonceValid   nonceState = iota
	nonceExpired            // ours, but older than ttl
	nonceForeign            // not signed by us for this source (forged, another source, or from before a restart)
)

// check verifies a nonce's MAC for the source IP peer and its age, and returns its issue
// time.
func (n *nonces) check(nonce string, now time.Time, peer string) (time.Time, nonceState) {
	var raw [nonceLen]byte
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != nonceLen {
		return time.Time{}, nonceForeign
	}
	if _, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce)); err != nil {
		return time.Time{}, nonceForeign
	}
	var sum [sha256.Size]byte
	n.sign(raw[:16], peer, &sum)
	if !hmac.Equal(sum[:16], raw[16:]) {
		return time.Time{}, nonceForeign
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	if now.Sub(issued) > n.ttl || issued.After(now.Add(time.Minute)) {
		return issued, nonceExpired
	}
	return issued, nonceValid
}

// ncTracker remembers the highest nonce-count seen per nonce, in a bounded FIFO. When a
// live nonce is evicted to make room, floor rises to its issue time, and any nonce issued
// at or before floor that is no longer tracked is refused: eviction can cost a client a
// re-challenge but never opens a replay.
type ncTracker struct {
	ttl time.Duration

	mu sync.Mutex // guards the fields below
	// seen maps nonce → entry; ring holds the same nonces in first-use order.
	seen  map[string]ncEntry
	ring  []string
	head  int // index of the oldest nonce in ring
	count int // number of nonces in ring
	floor time.Time
}

type ncEntry struct {
	nc     uint32
	issued time.Time
}

func newNCTracker(size int, ttl time.Duration) *ncTracker {
	return &ncTracker{ttl: ttl, seen: make(map[string]ncEntry, size), ring: make([]string, size)}
}

// use records nc for nonce and reports whether it is fresh (strictly above every nc seen
// for that nonce).
func (t *ncTracker) use(nonce string, issued time.Time, nc uint32, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.seen[nonce]; ok {
		if nc <= e.nc {
			return false
		}
		e.nc = nc
		t.seen[nonce] = e
		return true
	}
	if !issued.After(t.floor) {
		return false
	}
	// Drop expired nonces from the front: they are refused by age anyway.
	for t.count > 0 {
		old := t.ring[t.head]
		if now.Sub(t.seen[old].issued) <= t.ttl {
			break
		}
		t.popLocked()
	}
	if t.count == len(t.ring) {
		if e := t.popLocked(); e.issued.After(t.floor) {
			t.floor = e.issued
		}
	}
	t.ring[(t.head+t.count)%len(t.ring)] = nonce
	t.count++
	t.seen[nonce] = ncEntry{nc: nc, issued: issued}
	return true
}

func (t *ncTracker) popLocked() ncEntry {
	old := t.ring[t.head]
	e := t.seen[old]
	delete(t.seen, old)
	t.ring[t.head] = ""
	t.head = (t.head + 1) % len(t.ring)
	t.count--
	return e
}

// verdict is the outcome of checking a request's digest credentials.
type verdict int

const (
	// noCredentials: no credentials for our realm; challenge.
	noCredentials verdict = iota
	// badCredentials: a wrong username or response, or unusable parameters, answering a
	// nonce we issued that is still valid; 403 and count toward the backoff.
	badCredentials
	// staleCredentials: right response but expired/foreign nonce or replayed nc; challenge
	// with stale=true.
	staleCredentials
	// unknownNonce: a wrong answer to a nonce that is not ours or has expired; challenge
	// afresh and count nothing (made-up nonces must not lock anyone out).
	unknownNonce
	// uriMismatch: the right response, but its digest uri is not the Request-URI (RFC 2617
	// §3.2.2.5, RFC 7616 §3.4.6): 403 and count.
	uriMismatch
	// goodCredentials: authenticated.
	goodCredentials
)

func (v verdict) String() string {
	switch v {
	case noCredentials:
		return "no-credentials"
	case badCredentials:
		return "bad-credentials"
	case staleCredentials:
		return "stale"
	case unknownNonce:
		return "unknown-nonce"
	case uriMismatch:
		return "uri-mismatch"
	case goodCredentials:
		return "ok"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// hashes are the HA1 values to check a response against.
type hashes struct{ md5, sha256 string }

// verifyDigest checks the Authorization (REGISTER) or Proxy-Authorization (INVITE)
// credentials of req for username against h, accepting the algorithms algs. The response
// is computed before anything else is decided, so every path costs about the same.
func (r *Registrar) verifyDigest(req *sip.Request, header, username, ip string, h hashes, algs []string, now time.Time) verdict {
	cred := r.findCredentials(req, header)
	if cred == nil {
		return noCredentials
	}
	issued, nst := r.nonces.check(cred.Nonce, now, ip)
	// bad is the verdict of a wrong answer: counted only when it answers a live nonce of ours.
	bad := badCredentials
	if nst != nonceValid {
		bad = unknownNonce
	}
	var ha1 string
	alg := strings.ToUpper(cred.Algorithm)
	if alg == "" {
		alg = algMD5 // RFC 2617: absent means MD5
	}
	if !slices.Contains(algs, alg) {
		return bad
	}
	switch alg {
	case algMD5:
		ha1 = h.md5
	case algSHA256:
		ha1 = h.sha256
	}
	if ha1 == "" || cred.Userhash || !strings.EqualFold(cred.QOP, "auth") || cred.Nc <= 0 || cred.Cnonce == "" {
		return bad
	}
	want, err := digest.Digest(&digest.Challenge{
		Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"},
	}, digest.Options{Method: req.Method.String(), URI: cred.URI, A1: ha1, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return bad
	}
	ok := subtle.ConstantTimeCompare([]byte(strings.ToLower(cred.Response)), []byte(want.Response)) == 1
	if !ok || cred.Username != username {
		return bad
	}
	if nst != nonceValid {
		return staleCredentials
	}
	// The response covers the digest uri, so a captured answer cannot be replayed to
	// another Request-URI as long as the two must match.
	if !sameURI(cred.URI, &req.Recipient) {
		return uriMismatch
	}
	if !r.nc.use(cred.Nonce, issued, uint32(cred.Nc), now) {
		return staleCredentials
	}
	return goodCredentials
}

// sameURI reports whether the digest uri s names the Request-URI ruri: the same scheme,
// user, host and port (host and scheme without case). RFC 3261 §22.4 has the digest-uri
// copied from the Request-URI; URI parameters and headers are not compared, since common
// clients (sipgo among them) leave them out of the digest uri, and they name neither the
// server nor the user. It reads s in place: no allocation on the REGISTER path.
func sameURI(s string, ruri *sip.Uri) bool {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, ruri.Scheme) {
		return false
	}
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	user, hostport, hasUser := strings.Cut(rest, "@")
	if !hasUser {
		user, hostport = "", rest
	}
	if user != ruri.User {
		return false
	}
	host := hostport
	if ruri.Port > 0 {
		var buf [12]byte
		p := strconv.AppendInt(append(buf[:0], ':'), int64(ruri.Port), 10)
		if len(hostport) < len(p) || hostport[len(hostport)-len(p):] != string(p) {
			return false
		}
		host = hostport[:len(hostport)-len(p)]
	} else if strings.LastIndexByte(hostport, ':') > strings.LastIndexByte(hostport, ']') {
		return false // a port the Request-URI does not have
	}
	return host != "" && (strings.EqualFold(host, ruri.Host) ||
		strings.EqualFold(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), strings.TrimSuffix(strings.TrimPrefix(ruri.Host, "["), "]")))
}

// findCredentials returns the first parseable Digest credentials for our realm.
func (r *Registrar) findCredentials(req *sip.Request, header string) *digest.Credentials {
	for _, h := range req.GetHeaders(header) {
		c, err := parseCredentials(h.Value())
		if err != nil || c.Realm != r.cfg.Realm {
			continue
		}
		return c
	}
	return nil
}

// challenges returns the WWW-Authenticate/Proxy-Authenticate values, one per challenge
// format in order (by default MD5 alone), sharing one fresh nonce for the source IP ip.
func (r *Registrar) challenges(now time.Time, ip string, stale bool, fmts []challengeFmt) []string {
	nonce := r.nonces.issue(now, ip)
	out := make([]string, len(fmts))
	for i, f := range fmts {
		out[i] = f.render(nonce, stale)
	}
	return out
}

// noncePlaceholder stands for the nonce in a challenge rendered ahead of time: base64url
// characters only, so the library writes it unescaped, as it writes a real nonce.
const noncePlaceholder = "NONCEPLACEHOLDER"

// challengeFmt is one algorithm's challenge, as digest.Challenge.String writes it, cut
// around its nonce: rendering it per 401 cost 9% of the bytes a REGISTER allocated.
type challengeFmt struct {
	head string    // up to the nonce
	tail [2]string // after the nonce: [0] fresh, [1] with stale=true
}

// newChallengeFmt renders the challenge of alg in realm, fresh and stale.
func newChallengeFmt(realm, alg string) challengeFmt {
	var f challengeFmt
	for i, stale := range []bool{false, true} {
		c := digest.Challenge{Realm: realm, Nonce: noncePlaceholder, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		f.head, f.tail[i], _ = strings.Cut(c.String(), noncePlaceholder)
	}
	return f
}

// render writes the challenge with nonce.
func (f challengeFmt) render(nonce string, stale bool) string {
	t := f.tail[0]
	if stale {
		t = f.tail[1]
	}
	return f.head + nonce + t
}

// dummyHashes are the hashes checked for a DN that may not register or does not exist:
// derived from the process secret, so no password can match them.
func dummyHashes(secret []byte, number string) hashes {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("dummy-ha1:" + number))
	s := hex.EncodeToString(mac.Sum(nil))
	return hashes{md5: s[:32], sha256: s}
}
