package registrar

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/sips"
	"github.com/sipsvc/sipsvc/store"
)

// Config configures a Registrar. Store is required; zero values take the defaults named
// on each field (the same as config.Default).
type Config struct {
	// Store holds DNs and bindings (required).
	Store store.Store
	// Realm of the digest challenges. Default "sipsvc".
	Realm string
	// DefaultExpires applies when a REGISTER names no expiry. Default 3600 s.
	DefaultExpires time.Duration
	// MinExpires: shorter non-zero expiries get 423 with Min-Expires. Default 60 s.
	MinExpires time.Duration
	// MaxExpires: longer expiries are clamped to it. Default 7200 s.
	MaxExpires time.Duration
	// Algorithms are the digest algorithms offered, one challenge each, in this order; only
	// these are accepted. Default MD5 alone: baresip refuses a whole challenge in which any
	// header is not MD5, and SIPp 3.6, sipsak and many phones read only the first one
	// (issue 12). A DN may override it (dn.DN.DigestAlgorithms), e.g. to require SHA-256.
	Algorithms []string
	// NonceTTL is how long a nonce stays valid. Default 5 min.
	NonceTTL time.Duration
	// AuthFailLimit failed digest answers (to nonces we issued and that are still valid) for
	// one user from one source IP start a backoff: LockoutBackoff, doubled by each further
	// failure, at most Lockout. Default 10; negative disables the lockout.
	AuthFailLimit int
	// Lockout is the longest backoff, and how long a (user, source IP) must stay quiet to be
	// forgiven. Default 5 min.
	Lockout time.Duration
	// LockoutBackoff is the first backoff. Default 1 s.
	LockoutBackoff time.Duration
	// LockoutTableSize caps the (user, source IP) failure table, an LRU. Default 100000.
	LockoutTableSize int
	// MaxContactsPerRegister caps the Contacts of one REGISTER; more get 403. Default 10.
	MaxContactsPerRegister int
	// MaxBindingsPerDN caps the live bindings of one DN; a REGISTER that would pass it gets
	// 403 and changes nothing. Default 10.
	MaxBindingsPerDN int
	// OpenRegistration lets a self-registered DN without a password register without a
	// challenge: anyone who reaches the server can then take its calls. Labs only; default
	// false, where such a DN is answered like an unknown one (challenge, then 403).
	OpenRegistration bool
	// PurgeInterval is how often Run purges expired bindings. Default 30 s.
	PurgeInterval time.Duration
	// NonceCacheSize bounds the nonce-count tracker. Default 100000 nonces.
	NonceCacheSize int
	// ServiceRoute, when set, is returned as Service-Route in the 200 OK to every successful
	// REGISTER (RFC 3608 §6.1), in order: with the sips scheme when the REGISTER's Contacts
	// are all sips, else with the sip scheme (R34, sips.ServiceRoute). Each entry is a sip: or
	// sips: URI with a host and no transport=udp (sips.ParseServiceRoute), e.g.
	// "sip:edge.example.net;lr". Default none.
	ServiceRoute []string
	// Secret signs nonces. Empty means 32 random bytes per process (nonces issued before a
	// restart are then answered with stale=true). Set it to share nonces between nodes.
	Secret []byte
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Observer receives registration events; nil means none.
	Observer signaling.Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TracerProvider makes the "sip.transaction REGISTER" spans; nil means no tracing.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the MetricRefusals counter; nil means no metrics.
	MeterProvider metric.MeterProvider
}

// The defaults of Config, which sipsvc's configuration file defaults (config.Default) use too.
const (
	DefaultRealm          = "sipsvc"
	DefaultExpires        = 3600 * time.Second
	DefaultMinExpires     = 60 * time.Second
	DefaultMaxExpires     = 7200 * time.Second
	DefaultNonceTTL       = 5 * time.Minute
	DefaultAuthFailLimit  = 10
	DefaultLockout        = 5 * time.Minute
	DefaultPurgeInterval  = 30 * time.Second
	DefaultNonceCacheSize = 100000
	// DefaultLockoutBackoff is the first backoff of a (user, source IP) key.
	DefaultLockoutBackoff = time.Second
	// DefaultLockoutTableSize caps the (user, source IP) failure table.
	DefaultLockoutTableSize = 100000
	// DefaultMaxContactsPerRegister caps the Contacts of one REGISTER.
	DefaultMaxContactsPerRegister = 10
	// DefaultMaxBindingsPerDN caps the live bindings of one DN.
	DefaultMaxBindingsPerDN = 10
)

// DefaultAlgorithms returns the digest algorithms offered by default: MD5 alone, which
// every common client answers (issue 12; see Config.Algorithms). Require SHA-256 with
// Config.Algorithms or per DN with dn.DN.DigestAlgorithms.
func DefaultAlgorithms() []string { return []string{algMD5} }

// Registrar serves REGISTER, authorizes calls and purges expired bindings. It implements
// signaling.Registrar and signaling.Authenticator. Create it with New.
type Registrar struct {
	cfg    Config
	store  store.Store
	log    *slog.Logger
	now    func() time.Time
	tracer trace.Tracer
	traced bool // false with the no-op provider: no span is started at all
	nonces *nonces
	nc     *ncTracker
	lock   *lockout // nil when disabled
	// serviceRoute holds the Service-Route header values: [0] for a binding that allows sip,
	// [1] for a sips-only one (R34, sips.ServiceRoute).
	serviceRoute [2][]string
	// challengeFmt is the challenge of each of cfg.Algorithms, in order, rendered once.
	challengeFmt []challengeFmt
	// fmtByAlg is the challenge of each algorithm, for DNs with their own algorithms.
	fmtByAlg map[string]challengeFmt
	refusals refusals

	// locks serialises the read-check-write of one DN's bindings (striped by number).
	locks [256]sync.Mutex
}

// Interface guards.
var (
	_ signaling.Registrar     = (*Registrar)(nil)
	_ signaling.Authenticator = (*Registrar)(nil)
	_ signaling.Classifier    = (*Registrar)(nil)
)

// New checks cfg, applies defaults and returns a Registrar.
func New(cfg Config) (*Registrar, error) {
	if cfg.Store == nil {
		return nil, errors.New("registrar: Config.Store is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if strings.ContainsAny(cfg.Realm, "\"\\\r\n") {
		return nil, fmt.Errorf("registrar: realm %q: quotes, backslashes and line breaks are not allowed", cfg.Realm)
	}
	def(&cfg.DefaultExpires, DefaultExpires)
	def(&cfg.MinExpires, DefaultMinExpires)
	def(&cfg.MaxExpires, DefaultMaxExpires)
	def(&cfg.NonceTTL, DefaultNonceTTL)
	def(&cfg.Lockout, DefaultLockout)
	def(&cfg.PurgeInterval, DefaultPurgeInterval)
	if cfg.AuthFailLimit == 0 {
		cfg.AuthFailLimit = DefaultAuthFailLimit
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms()
	}
	algs, err := normalizeAlgorithms(cfg.Algorithms)
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	cfg.Algorithms = algs
	if cfg.NonceCacheSize <= 0 {
		cfg.NonceCacheSize = DefaultNonceCacheSize
	}
	def(&cfg.LockoutBackoff, DefaultLockoutBackoff)
	if cfg.LockoutTableSize <= 0 {
		cfg.LockoutTableSize = DefaultLockoutTableSize
	}
	if cfg.MaxContactsPerRegister <= 0 {
		cfg.MaxContactsPerRegister = DefaultMaxContactsPerRegister
	}
	if cfg.MaxBindingsPerDN <= 0 {
		cfg.MaxBindingsPerDN = DefaultMaxBindingsPerDN
	}
	ref, err := newRefusals(cfg.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("registrar: metrics: %w", err)
	}
	if cfg.MinExpires > cfg.MaxExpires {
		return nil, fmt.Errorf("registrar: min expires %s is above max expires %s", cfg.MinExpires, cfg.MaxExpires)
	}
	if cfg.DefaultExpires < cfg.MinExpires || cfg.DefaultExpires > cfg.MaxExpires {
		return nil, fmt.Errorf("registrar: default expires %s is outside [%s, %s]", cfg.DefaultExpires, cfg.MinExpires, cfg.MaxExpires)
	}
	var routes []sip.Uri
	for i, v := range cfg.ServiceRoute {
		u, err := sips.ParseServiceRoute(v)
		if err != nil {
			return nil, fmt.Errorf("registrar: service_route[%d]: %w", i, err)
		}
		routes = append(routes, u)
	}
	// The header values are fixed by config: render both schemes once (R34).
	var serviceRoute [2][]string // [0] sip, [1] sips
	for i, sipsOnly := range []bool{false, true} {
		for _, u := range sips.ServiceRoute(routes, sipsOnly) {
			serviceRoute[i] = append(serviceRoute[i], "<"+u.String()+">")
		}
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = make([]byte, 32)
		if _, err := rand.Read(cfg.Secret); err != nil {
			return nil, fmt.Errorf("registrar: nonce secret: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	_, isNoop := cfg.TracerProvider.(noop.TracerProvider)
	r := &Registrar{
		cfg:    cfg,
		tracer: cfg.TracerProvider.Tracer(instrumentationName),
		traced: !isNoop,
		store:  cfg.Store,
		log:    cfg.Logger.With("component", "registrar"),
		now:    cfg.Now,
		nonces: &nonces{secret: cfg.Secret, ttl: cfg.NonceTTL},
		nc:     newNCTracker(cfg.NonceCacheSize, cfg.NonceTTL),

		serviceRoute: serviceRoute,
		refusals:     ref,
		fmtByAlg: map[string]challengeFmt{
			algMD5: newChallengeFmt(cfg.Realm, algMD5), algSHA256: newChallengeFmt(cfg.Realm, algSHA256),
		},
	}
	for _, alg := range cfg.Algorithms {
		r.challengeFmt = append(r.challengeFmt, r.fmtByAlg[alg])
	}
	if cfg.AuthFailLimit > 0 {
		r.lock = newLockout(cfg.AuthFailLimit, cfg.LockoutBackoff, cfg.Lockout, cfg.LockoutTableSize)
	}
	return r, nil
}

func (r *Registrar) dnLock(number string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(number))
	return &r.locks[h.Sum32()%uint32(len(r.locks))]
}

// reply answers tx; a failed send is logged (the client retransmits or gives up).
func (r *Registrar) reply(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		r.log.Debug("send response", "status", code, "call_id", callID(req), "error", err)
	}
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// sourceIP is the IP of the request's transport source, without port.
func sourceIP(req *sip.Request) string {
	src := req.Source()
	if host, _, err := net.SplitHostPort(src); err == nil {
		return strings.Trim(host, "[]")
	}
	return src
}

func (r *Registrar) emit(ctx context.Context, kind signaling.EventKind, b dn.Binding, now time.Time) {
	if r.cfg.Observer == nil {
		return
	}
	r.cfg.Observer.Observe(ctx, signaling.Event{Kind: kind, Time: now, DN: b.Number, SIPCallID: b.CallID, Binding: &b})
}

// authOutcome says what authenticate did.
type authOutcome int

const (
	authPassed   authOutcome = iota // go on
	authAnswered                    // a 401/403/407 was sent
)

// authenticate runs the digest exchange for number. eligible says whether the request may
// succeed at all (the DN exists and may do this); when it may not, the same challenge is
// sent and credentials are checked against dummy hashes, then 403 — the client cannot
// tell the difference. challengeCode is 401 (REGISTER) or 407 (INVITE).
func (r *Registrar) authenticate(req *sip.Request, tx sip.ServerTransaction, number string, d dn.DN, eligible bool, challengeCode int) authOutcome {
	return r.authenticateCtx(context.Background(), req, tx, number, d, eligible, challengeCode)
}

// authenticateCtx is authenticate with the request's context, which carries its span.
//
// A (user, source IP) that is backing off after repeated failures gets 503 with
// Retry-After, its credentials unchecked. A wrong answer to a nonce we issued and that is
// still valid gets 403 and counts toward the backoff; a wrong answer to a nonce that is
// not ours (made up, from before a restart) or has expired gets a fresh challenge and
// counts nothing, so nobody can lock a user out with made-up nonces.
func (r *Registrar) authenticateCtx(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, number string, d dn.DN, eligible bool, challengeCode int) authOutcome {
	now := r.now()
	ip := sourceIP(req)
	if r.lock != nil {
		if wait := r.lock.blocked(number, ip, now); wait > 0 {
			r.refuse(ctx, RefusalBackoff)
			secs := int((wait + time.Second - 1) / time.Second)
			r.reply(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", strconv.Itoa(secs)))
			return authAnswered
		}
	}
	h := hashes{md5: d.HA1MD5, sha256: d.HA1SHA256}
	algs, fmts := r.cfg.Algorithms, r.challengeFmt
	if !eligible {
		h = dummyHashes(r.cfg.Secret, number)
	} else if len(d.DigestAlgorithms) > 0 {
		algs, fmts = r.dnAlgorithms(d)
	}
	credHeader, chalHeader, reason := "Authorization", "WWW-Authenticate", "Unauthorized"
	if challengeCode == 407 {
		credHeader, chalHeader, reason = "Proxy-Authorization", "Proxy-Authenticate", "Proxy Authentication Required"
	}
	v := r.verifyDigest(req, credHeader, number, ip, h, algs, now)
	switch v {
	case noCredentials, staleCredentials, unknownNonce:
		ch := r.challenges(now, ip, v == staleCredentials, fmts)
		hdrs := make([]sip.Header, len(ch))
		for i, c := range ch {
			hdrs[i] = sip.NewHeader(chalHeader, c)
		}
		r.reply(tx, req, challengeCode, reason, hdrs...)
		if challengeCode == 401 {
			// The REGISTER challenge is stateless (RFC 3261 §8.2.7): nothing was stored, so
			// a retransmitted REGISTER just gets a fresh challenge. Ending the transaction now
			// spares holding it for Timer J (64*T1) at thousands of registrations a second.
			// An INVITE's 407 keeps its transaction, which absorbs the ACK.
			tx.Terminate()
		}
		return authAnswered
	case badCredentials, uriMismatch:
		why := RefusalBadCredentials
		if v == uriMismatch {
			why = RefusalURIMismatch
		}
		r.failed(ctx, req, ip, number, now, why)
		r.reply(tx, req, 403, "Forbidden")
		return authAnswered
	}
	if !eligible {
		// Only reachable with right credentials for a DN that may not do this.
		r.reply(tx, req, 403, "Forbidden")
		return authAnswered
	}
	return authPassed
}

// dnAlgorithms returns the algorithms a DN with its own DigestAlgorithms accepts and
// their challenges, in its order; the global ones if none of its entries is known.
func (r *Registrar) dnAlgorithms(d dn.DN) ([]string, []challengeFmt) {
	algs := make([]string, 0, len(d.DigestAlgorithms))
	fmts := make([]challengeFmt, 0, len(d.DigestAlgorithms))
	for _, a := range d.DigestAlgorithms {
		a = strings.ToUpper(a)
		f, ok := r.fmtByAlg[a]
		if !ok || slices.Contains(algs, a) {
			continue
		}
		algs, fmts = append(algs, a), append(fmts, f)
	}
	if len(algs) == 0 {
		return r.cfg.Algorithms, r.challengeFmt
	}
	return algs, fmts
}

// failed counts a wrong digest answer (to a nonce we issued) from ip for number.
func (r *Registrar) failed(ctx context.Context, req *sip.Request, ip, number string, now time.Time, why string) {
	r.refuse(ctx, why)
	r.log.Debug("digest authentication failed", "source", ip, "user", number, "method", req.Method.String(), "reason", why)
	if r.lock == nil {
		return
	}
	if b := r.lock.fail(number, ip, now); b > 0 {
		r.log.Warn("user backing off after repeated authentication failures from one source",
			"source", ip, "user", number, "limit", r.cfg.AuthFailLimit, "backoff", b)
	}
}

// normalizeAlgorithms upper-cases a list of digest algorithms and checks that each is
// SHA-256 or MD5, once; an empty list is the default.
func normalizeAlgorithms(given []string) ([]string, error) {
	if len(given) == 0 {
		return DefaultAlgorithms(), nil
	}
	algs := make([]string, 0, len(given))
	for _, g := range given {
		a := strings.ToUpper(g)
		if (a != algSHA256 && a != algMD5) || slices.Contains(algs, a) {
			return nil, fmt.Errorf("digest algorithm %q: want SHA-256 or MD5, each once", g)
		}
		algs = append(algs, a)
	}
	return algs, nil
}

// Run purges expired bindings every PurgeInterval, emitting EventRegistrationRemoved for
// each, until ctx is done. It returns nil on a clean stop.
func (r *Registrar) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.PurgeInterval)
	defer t.Stop()
	for {
		if _, err := r.Purge(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("purge expired bindings", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Purge deletes the bindings expired now and emits EventRegistrationRemoved for each. It
// returns how many were purged.
func (r *Registrar) Purge(ctx context.Context) (int, error) {
	now := r.now()
	gone, err := r.store.PurgeExpiredBindings(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("registrar: purge: %w", err)
	}
	for _, b := range gone {
		r.log.Info("registration expired", "dn", b.Number, "contact", b.Contact)
		r.emit(ctx, signaling.EventRegistrationRemoved, b, now)
	}
	return len(gone), nil
}

// List returns the live bindings of a DN; dn.ErrNotFound if the DN does not exist.
func (r *Registrar) List(ctx context.Context, number string) ([]dn.Binding, error) {
	if _, err := r.store.Lookup(ctx, number); err != nil {
		return nil, fmt.Errorf("registrar: list %s: %w", number, err)
	}
	bs, err := r.store.Bindings(ctx, number)
	if err != nil {
		return nil, fmt.Errorf("registrar: list %s: %w", number, err)
	}
	return bs, nil
}

// Remove deletes one binding of a DN, named by its contact URI or its key
// (dn.BindingKey), and emits EventRegistrationRemoved; dn.ErrNotFound if there is none.
func (r *Registrar) Remove(ctx context.Context, number, contactOrKey string) error {
	key := contactOrKey
	if strings.Contains(contactOrKey, ":") && (strings.HasPrefix(strings.ToLower(contactOrKey), "sip:") || strings.HasPrefix(strings.ToLower(contactOrKey), "sips:")) {
		key = dn.BindingKey(contactOrKey)
	}
	mu := r.dnLock(number)
	mu.Lock()
	b, err := r.removeLocked(ctx, number, key)
	mu.Unlock()
	if err != nil {
		return err
	}
	r.log.Info("registration removed by the control plane", "dn", number, "contact", b.Contact)
	r.emit(ctx, signaling.EventRegistrationRemoved, b, r.now())
	return nil
}

// removeLocked deletes the live binding of number with key; the caller holds the DN's lock.
func (r *Registrar) removeLocked(ctx context.Context, number, key string) (dn.Binding, error) {
	bs, err := r.store.Bindings(ctx, number)
	if err != nil {
		return dn.Binding{}, fmt.Errorf("registrar: remove %s: %w", number, err)
	}
	for _, b := range bs {
		if b.Key != key {
			continue
		}
		if err := r.store.DeleteBinding(ctx, number, key); err != nil {
			return dn.Binding{}, fmt.Errorf("registrar: remove %s %s: %w", number, key, err)
		}
		return b, nil
	}
	return dn.Binding{}, fmt.Errorf("registrar: remove %s %s: %w", number, key, dn.ErrNotFound)
}

// parseDelta parses a delta-seconds value (RFC 3261 §25.1: 1*DIGIT, at most 2^32-1).
func parseDelta(s string) (uint32, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}
