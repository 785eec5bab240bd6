package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// CallerClass says how sipsvc established who places a call.
type CallerClass string

// Caller classes.
const (
	// CallerAuthenticated: the caller answered a digest challenge for the DN in From.
	CallerAuthenticated CallerClass = "authenticated"
	// CallerTrusted: the request came from a trunk's trusted source (IP/CIDR) or over TLS
	// with a verified client certificate whose subject a DN trusts.
	CallerTrusted CallerClass = "trusted"
	// CallerAnonymous: neither. The From user is only a claim.
	CallerAnonymous CallerClass = "anonymous"
)

// Caller is who places a call and how that was established.
type Caller struct {
	// Class is how the caller was established.
	Class CallerClass
	// DN is the authenticated DN, or the DN whose trust rule matched; nil when anonymous.
	DN *dn.DN
	// Rule names the trust rule that matched, e.g. "source 10.0.0.0/8" or "cert sbc.example.net".
	Rule string
	// User is the From user, its escapes decoded (RFC 3261 §19.1.4).
	User string
}

// Classifier is an Authenticator that also tells how it established the caller, and can
// challenge a caller it does not admit. registrar.Registrar implements it; an
// Authenticator that does not is used through AuthorizeCall (a returned DN is then taken as
// authenticated, nil as anonymous).
type Classifier interface {
	// ClassifyCall classifies an out-of-dialog INVITE. When it returns ok=false it has
	// answered tx (407, 403, 500).
	ClassifyCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (c Caller, ok bool)
	// ChallengeCall answers tx with the same 407 challenge a DN with a password gets (or
	// 403 when the request carries credentials): a caller may not place this call unless it
	// authenticates, and cannot tell whether the dialed number exists.
	ChallengeCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction)
}

// AnonymousPolicy says which DNs an anonymous caller may reach.
type AnonymousPolicy string

// Anonymous policies.
const (
	// AnonymousPerDN (the default): only DNs with allow_anonymous set.
	AnonymousPerDN AnonymousPolicy = "per-dn"
	// AnonymousExtensions: every extension and ACD position (never a trunk, a VoIP service
	// or a URI target).
	AnonymousExtensions AnonymousPolicy = "extensions"
)

// Admission configures who may place a call and how many calls peers may make sipsvc hold.
// Zero values mean the documented defaults (see WithDefaults).
type Admission struct {
	// Anonymous is the anonymous-caller policy. Default AnonymousPerDN.
	Anonymous AnonymousPolicy
	// MaxCalls caps concurrent calls. Default 10000.
	MaxCalls int
	// MaxCallsPerSource caps concurrent inbound calls from one source IP. Default 1000.
	MaxCallsPerSource int
	// MaxCallsPerDN caps concurrent inbound calls from or to one number. Default 200.
	MaxCallsPerDN int
	// MaxSessionExpires is the largest Session-Expires a caller may ask for (RFC 4028): a
	// larger one is lowered to it in our 2xx. Default 2h.
	MaxSessionExpires time.Duration
	// MaxCallDuration ends a call (BYE both legs, or CANCEL) this long after it began.
	// Default 8h.
	MaxCallDuration time.Duration
}

// Admission defaults.
const (
	DefaultMaxCalls          = 10000
	DefaultMaxCallsPerSource = 1000
	DefaultMaxCallsPerDN     = 200
	DefaultMaxSessionExpires = 2 * time.Hour
	DefaultMaxCallDuration   = 8 * time.Hour
)

// WithDefaults returns a with every zero field set to its default.
func (a Admission) WithDefaults() Admission {
	if a.Anonymous == "" {
		a.Anonymous = AnonymousPerDN
	}
	if a.MaxCalls <= 0 {
		a.MaxCalls = DefaultMaxCalls
	}
	if a.MaxCallsPerSource <= 0 {
		a.MaxCallsPerSource = DefaultMaxCallsPerSource
	}
	if a.MaxCallsPerDN <= 0 {
		a.MaxCallsPerDN = DefaultMaxCallsPerDN
	}
	if a.MaxSessionExpires <= 0 {
		a.MaxSessionExpires = DefaultMaxSessionExpires
	}
	if a.MaxCallDuration <= 0 {
		a.MaxCallDuration = DefaultMaxCallDuration
	}
	return a
}

// Validate reports a bad field by its name.
func (a Admission) Validate() error {
	switch a.Anonymous {
	case "", AnonymousPerDN, AnonymousExtensions:
	default:
		return fmt.Errorf("anonymous: %q is not per-dn or extensions", a.Anonymous)
	}
	return nil
}

// AdmissionMetrics is implemented by a Metrics that counts refused calls. reason is one
// of the Refused* constants.
type AdmissionMetrics interface {
	CallRefused(reason string)
}

// Reasons a call is refused at admission (the reason label of the refused-calls counter).
const (
	RefusedAnonymous   = "anonymous"     // an anonymous caller may not reach the dialed number
	RefusedTarget      = "target"        // the routing answer held only targets the caller may not reach
	RefusedCapGlobal   = "cap_global"    // MaxCalls
	RefusedCapSource   = "cap_source"    // MaxCallsPerSource
	RefusedCapDN       = "cap_dn"        // MaxCallsPerDN
	RefusedMaxDuration = "max_duration"  // a call ended by MaxCallDuration
	RefusedBadTarget   = "target_unsafe" // a routing answer's URI cannot be written onto the wire
)

// capRetryAfter is the Retry-After of a 503 sent over a cap (seconds).
const capRetryAfter = "5"

// admitter holds the call counts behind the caps.
type admitter struct {
	cfg Admission

	mu       sync.Mutex // guards the fields below
	total    int
	bySource map[string]int
	byDN     map[string]int
}

func newAdmitter(cfg Admission) *admitter {
	return &admitter{cfg: cfg.WithDefaults(), bySource: map[string]int{}, byDN: map[string]int{}}
}

// admission is one admitted call: who calls and the cap slots it holds until release.
type admission struct {
	caller Caller
	source string
	dns    []string
	timer  *time.Timer
	once   sync.Once
}

// acquire takes a slot of each cap, or none and the reason of the cap that is full.
func (m *admitter) acquire(source string, dns []string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.total >= m.cfg.MaxCalls {
		return RefusedCapGlobal
	}
	if source != "" && m.bySource[source] >= m.cfg.MaxCallsPerSource {
		return RefusedCapSource
	}
	for _, n := range dns {
		if m.byDN[n] >= m.cfg.MaxCallsPerDN {
			return RefusedCapDN
		}
	}
	m.total++
	if source != "" {
		m.bySource[source]++
	}
	for _, n := range dns {
		m.byDN[n]++
	}
	return ""
}

func (m *admitter) release(source string, dns []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total--
	if source != "" {
		if m.bySource[source]--; m.bySource[source] <= 0 {
			delete(m.bySource, source)
		}
	}
	for _, n := range dns {
		if m.byDN[n]--; m.byDN[n] <= 0 {
			delete(m.byDN, n)
		}
	}
}

// admitInvite classifies the caller of a new INVITE, refuses an anonymous caller the
// dialed number does not admit (with the 407 challenge a known DN gets, so that an
// anonymous scanner cannot tell which numbers exist, and before anything rings), and takes
// the cap slots. When it returns ok=false it has answered tx.
func (s *Server) admitInvite(req *sip.Request, tx sip.ServerTransaction) (*admission, bool) {
	ctx := context.Background()
	c, ok := s.classify(ctx, req, tx)
	if !ok {
		return nil, false
	}
	dialed := dn.NormalizeUser(req.Recipient.User)
	if c.Class == CallerAnonymous && !s.anonymousMayReach(ctx, dialed) {
		s.refused(RefusedAnonymous)
		s.log.Debug("anonymous caller refused", "from", c.User, "dialed", dialed, "source", req.Source())
		s.challenge(ctx, req, tx)
		return nil, false
	}
	adm := &admission{caller: c, source: sourceHost(req.Source())}
	if c.DN != nil && c.Class == CallerAuthenticated {
		adm.dns = append(adm.dns, c.DN.Number)
	}
	if dialed != "" && (len(adm.dns) == 0 || adm.dns[0] != dialed) {
		adm.dns = append(adm.dns, dialed)
	}
	if reason := s.adm.acquire(adm.source, adm.dns); reason != "" {
		s.refused(reason)
		s.log.Info("call refused: over a cap", "cap", reason, "source", adm.source, "numbers", adm.dns)
		s.reply(tx, req, 503, "Service Unavailable", sip.NewHeader("Retry-After", capRetryAfter))
		return nil, false
	}
	return adm, true
}

// ErrOverCap is returned by MakeCall when a call cap is full (the API answers
// RESOURCE_EXHAUSTED); the wrapping error names the cap.
var ErrOverCap = errors.New("signaling: over a call cap")

// admitMakeCall takes the cap slots of a third-party call placed through the API: the
// global cap and the per-DN cap of the origin and of the dialed number (the API caller is
// authenticated by the API, so the class is trusted; there is no source IP).
func (s *Server) admitMakeCall(origin dn.DN, dialed string) (*admission, error) {
	adm := &admission{caller: Caller{Class: CallerTrusted, DN: &origin, Rule: "call-control API", User: origin.Number}}
	adm.dns = append(adm.dns, origin.Number)
	if dialed != "" && dialed != origin.Number {
		adm.dns = append(adm.dns, dialed)
	}
	if reason := s.adm.acquire("", adm.dns); reason != "" {
		s.refused(reason)
		return nil, fmt.Errorf("%w: %s (numbers %v)", ErrOverCap, reason, adm.dns)
	}
	return adm, nil
}

// classify runs the Authenticator. Without one, every caller is trusted (an embedder that
// sets no Authenticator vouches for its peers; cmd/sipsvc always sets one).
func (s *Server) classify(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (Caller, bool) {
	user := ""
	if f := req.From(); f != nil {
		user = dn.NormalizeUser(f.Address.User)
	}
	switch a := s.cfg.Authenticator.(type) {
	case nil:
		return Caller{Class: CallerTrusted, Rule: "no authenticator", User: user}, true
	case Classifier:
		return a.ClassifyCall(ctx, req, tx)
	default:
		d, ok := a.AuthorizeCall(ctx, req, tx)
		if !ok {
			return Caller{}, false
		}
		if d == nil {
			return Caller{Class: CallerAnonymous, User: user}, true
		}
		return Caller{Class: CallerAuthenticated, DN: d, User: user}, true
	}
}

// challenge refuses a caller that may authenticate: the Classifier's 407, else 403.
func (s *Server) challenge(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) {
	if cl, ok := s.cfg.Authenticator.(Classifier); ok {
		cl.ChallengeCall(ctx, req, tx)
		return
	}
	s.reply(tx, req, 403, "Forbidden")
}

// anonymousMayReach reports whether an anonymous caller may reach the DN number: an
// enabled extension or ACD position that allows anonymous callers, itself or by the global
// policy. Trunks, VoIP services and unknown numbers: never.
func (s *Server) anonymousMayReach(ctx context.Context, number string) bool {
	if number == "" {
		return false
	}
	d, err := s.cfg.Directory.Lookup(ctx, number)
	if err != nil {
		return false
	}
	return s.anonymousMayReachDN(d)
}

func (s *Server) anonymousMayReachDN(d dn.DN) bool {
	if d.Disabled || (d.Type != dn.TypeExtension && d.Type != dn.TypeACDPosition) {
		return false
	}
	return d.AllowAnonymous || s.adm.cfg.Anonymous == AnonymousExtensions
}

// admitted ties an admission to its call: the call releases the cap slots when it ends,
// and is ended by MaxCallDuration. A call that ended already (it is visible to the API
// from newInboundCall on) releases them here: end closes done before it reads c.adm, and
// this stores c.adm before it looks at done, so one of the two sees the other.
func (s *Server) admitted(c *call, adm *admission) {
	id := c.id
	adm.timer = time.AfterFunc(s.adm.cfg.MaxCallDuration, func() {
		s.refused(RefusedMaxDuration)
		c.log(slog.LevelInfo, "call ended: maximum call duration reached", "max", s.adm.cfg.MaxCallDuration)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.ReleaseCall(ctx, id); err != nil && !errors.Is(err, ErrCallNotFound) {
			c.log(slog.LevelWarn, "release at maximum call duration failed", "error", err)
		}
	})
	c.mu.Lock()
	c.adm = adm
	c.mu.Unlock()
	select {
	case <-c.done:
		c.releaseAdmission()
	default:
	}
}

// admission returns the call's admission, or nil (MakeCall, or not admitted yet).
func (c *call) admission() *admission {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adm
}

// releaseAdmission gives back the call's cap slots, once. The call's end calls it.
func (c *call) releaseAdmission() {
	adm := c.admission()
	if adm == nil {
		return
	}
	adm.once.Do(func() {
		if adm.timer != nil {
			adm.timer.Stop()
		}
		c.s.adm.release(adm.source, adm.dns)
	})
}

// describeCaller tells the router who calls and how that was established.
func (c *call) describeCaller(rr *RouteRequest) {
	adm := c.admission()
	if adm == nil {
		return
	}
	cl := adm.caller
	rr.CallerClass = cl.Class
	rr.CallerRule = cl.Rule
	if cl.DN != nil {
		rr.CallerDN = cl.DN.Number
	}
	if c.span.IsRecording() {
		c.span.SetAttributes(sc.AttrCallerClass.String(string(cl.Class)))
	}
}

// admitTargets removes the targets the caller may not reach, whatever the router
// answered: an anonymous caller reaches only DNs that admit anonymous callers (never a
// trunk or a URI), and no URI target that would not survive the wire is dialled. When no
// target is left it answers leg A (an anonymous caller gets the challenge) and ends the
// call; ok is then false.
func (c *call) admitTargets(a *leg, d RouteDecision) (RouteDecision, bool) {
	if d.Reject != nil || len(d.Targets) == 0 {
		return d, true
	}
	adm := c.admission()
	anon := adm != nil && adm.caller.Class == CallerAnonymous
	kept := d.Targets[:0:0]
	refusedClass, refusedWire := 0, 0
	for _, t := range d.Targets {
		switch {
		case t.DN == "":
			if _, err := dn.CheckWireURI(t.URI); err != nil {
				refusedWire++
				c.log(slog.LevelWarn, "routing answer refused: target URI cannot be written onto the wire", "uri", strconv.Quote(t.URI), "error", err)
				continue
			}
			if anon {
				refusedClass++
				continue
			}
		case anon:
			td, err := c.s.cfg.Directory.Lookup(c.ctx, t.DN)
			if err != nil || !c.s.anonymousMayReachDN(td) {
				refusedClass++
				continue
			}
		}
		kept = append(kept, t)
	}
	if len(kept) > 0 {
		d.Targets = kept
		return d, true
	}
	if refusedWire > 0 {
		c.s.refused(RefusedBadTarget)
	}
	if refusedClass > 0 {
		c.s.refused(RefusedTarget)
	}
	if anon && refusedClass > 0 {
		c.s.challenge(c.ctx, a.invite, a.serverTx)
		c.finish(a, "anonymous caller may not reach the routed targets", 407)
		return d, false
	}
	c.fail(a, failure{status: 480, reason: "Temporarily Unavailable", cause: "routing answer held no target that can be dialled"})
	return d, false
}

// checkLegOnWire is the last check before an originated INVITE is written: a target URI
// that does not survive a round trip through the SIP parser, or holds characters that end
// a header, fails the leg (480); a display name that would, is not written (the call goes
// on without it). Values from the configuration, the API and the routing service were
// checked on entry; this catches what came another way (a registered contact, a caller's
// display name, a store edited by hand).
func (c *call) checkLegOnWire(l *leg, target sip.Uri) *failure {
	if err := dn.CheckDisplayName(l.localDisplay); err != nil {
		c.log(slog.LevelWarn, "display name not written: it would change the message", "display_name", strconv.Quote(l.localDisplay), "error", err)
		l.localDisplay = ""
	}
	if err := dn.CheckURIOnWire(target); err != nil {
		c.s.refused(RefusedBadTarget)
		return &failure{status: 480, reason: "Temporarily Unavailable", cause: "target URI cannot be written onto the wire: " + err.Error()}
	}
	return nil
}

// failureHeaders are the Reason and Warning headers of a final failure to leg A. A caller
// that is not trusted gets none that carry internal detail (x509 errors, addresses, a
// downstream Warning): only our own RFC 5630 warnings (380, 381), whose text is fixed.
// The detail stays in the logs and the call's span.
func (c *call) failureHeaders(f failure) []sip.Header {
	if adm := c.admission(); adm == nil || adm.caller.Class == CallerTrusted {
		return f.headers()
	}
	if f.warning != "" && (strings.HasPrefix(f.warning, "380 "+warnAgent+" ") || strings.HasPrefix(f.warning, "381 "+warnAgent+" ")) {
		return []sip.Header{sip.NewHeader("Warning", f.warning)}
	}
	return nil
}

// clampSessionExpires lowers a Session-Expires above MaxSessionExpires to it (RFC 4028 §9:
// the UAS may reduce the interval; it stays above our Min-SE).
func (s *Server) clampSessionExpires(se sessionExpires) sessionExpires {
	if max := s.adm.cfg.MaxSessionExpires; se.interval > max {
		se.interval = max
	}
	return se
}

// refused counts a refusal by reason.
func (s *Server) refused(reason string) {
	if m, ok := s.cfg.Metrics.(AdmissionMetrics); ok {
		m.CallRefused(reason)
	}
}

func sourceHost(src string) string {
	if host, _, err := net.SplitHostPort(src); err == nil {
		return host
	}
	return src
}
