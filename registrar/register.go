package registrar

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// status is a final response decided while checking a request.
type status struct {
	code   int
	reason string
	hdrs   []sip.Header
	// refusal, when set, is the AttrRefusal reason counted for this answer.
	refusal string
}

func badRequest(reason string) *status { return &status{code: 400, reason: reason} }

// tooMany is the 403 to a REGISTER over a cap, with a Warning naming it. RFC 3261 has no
// code for a registrar's caps; 403 says "do not repeat this request unchanged", where 503
// would invite a retry of the same thing.
func tooMany(refusal, what string, limit int) *status {
	return &status{code: 403, reason: "Forbidden", refusal: refusal,
		hdrs: []sip.Header{sip.NewHeader("Warning", `399 sipsvc "at most `+strconv.Itoa(limit)+` `+what+`"`)}}
}

// contactReq is one binding a REGISTER asks for.
type contactReq struct {
	contact  string // as stored: scheme lower-cased, no transport parameter when sips
	key      string // dn.BindingKey(contact)
	secure   bool
	expires  time.Duration // 0 removes the binding
	instance string        // +sip.instance value without quotes
	// regID is the Contact's reg-id (RFC 5626 §4.2), 0 when absent; it is kept only for an
	// outbound registration (outboundContact), else ignored (§5.2: treated as normal).
	regID int
}

// registerReq is a checked REGISTER.
type registerReq struct {
	number   string
	star     bool
	contacts []contactReq // one per key; a later Contact for the same device wins (R29)
	// path is the URI of each Path value, in order (RFC 3327), stored with every binding.
	path []string
	// sipsOnly: every Contact is sips, so the Service-Route is returned as sips (R34).
	sipsOnly bool
	// outbound: the REGISTER makes an RFC 5626 outbound binding (outboundContact), answered
	// with "Require: outbound".
	outbound bool
}

// ServeRegister answers a REGISTER: it checks the request, authenticates it and updates
// the bindings of the To user's DN. It implements signaling.Registrar.
func (r *Registrar) ServeRegister(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) {
	ctx, span, tx := r.startRegisterSpan(ctx, req, tx)
	defer span.End()
	p, st := r.parseRegister(req)
	if st != nil {
		if st.refusal != "" {
			r.refuse(ctx, st.refusal)
		}
		r.reply(tx, req, st.code, st.reason, st.hdrs...)
		return
	}
	if span.IsRecording() {
		span.SetAttributes(sipconv.AttrSIPDN.String(p.number))
	}
	d, err := r.store.Lookup(ctx, p.number)
	if err != nil && !errors.Is(err, dn.ErrNotFound) {
		span.RecordError(err)
		r.log.Error("register: look up DN", "dn", p.number, "error", err)
		r.reply(tx, req, 500, "Server Internal Error")
		return
	}
	eligible := err == nil && !d.Disabled && d.SelfRegistered()
	if eligible && !d.HasPassword() && !r.cfg.OpenRegistration {
		// Deny by default: a self-registered DN without a password is answered like an
		// unknown one (challenge, then 403), unless the operator opted in.
		eligible = false
		r.refuse(ctx, RefusalNoPassword)
	}
	if !eligible || d.HasPassword() {
		if r.authenticateCtx(ctx, req, tx, p.number, d, eligible, 401) == authAnswered {
			return
		}
	}
	mu := r.dnLock(p.number)
	mu.Lock()
	st, evs := r.apply(ctx, req, p, span)
	mu.Unlock()
	if st.refusal != "" {
		r.refuse(ctx, st.refusal)
	}
	now := r.now()
	for _, e := range evs {
		r.emit(ctx, e.kind, e.b, now)
	}
	r.reply(tx, req, st.code, st.reason, st.hdrs...)
}

// parseRegister runs every check that needs no store: To, Contacts, expiries and the sips
// rules R26 and R28, and sips over TLS only.
func (r *Registrar) parseRegister(req *sip.Request) (registerReq, *status) {
	var p registerReq
	to := req.To()
	if to == nil {
		return p, badRequest("Missing To header")
	}
	aorScheme := strings.ToLower(to.Address.Scheme)
	if aorScheme != "sip" && aorScheme != "sips" {
		return p, &status{code: 416, reason: "Unsupported URI Scheme"}
	}
	if to.Address.User == "" {
		return p, badRequest("To has no user part")
	}
	p.number = to.Address.User // R27: the scheme does not matter
	ruriSecure := strings.EqualFold(req.Recipient.Scheme, "sips")
	path, pathSecure, ok := parsePath(req)
	if !ok {
		return p, badRequest("Malformed Path")
	}
	p.path = path

	var hdrExpires *uint32
	if h := req.GetHeader("Expires"); h != nil {
		v, ok := parseDelta(h.Value())
		if !ok {
			return p, badRequest("Bad Expires header")
		}
		hdrExpires = &v
	}

	hs := req.GetHeaders("Contact")
	if len(hs) > r.cfg.MaxContactsPerRegister {
		return p, tooMany(RefusalTooManyContacts, "Contacts in one REGISTER", r.cfg.MaxContactsPerRegister)
	}
	anySecure, allSecure, tooShort := false, true, false
	index := map[string]int{}
	for _, h := range hs {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return p, badRequest("Malformed Contact")
		}
		if ch.Address.Wildcard {
			p.star = true
			continue
		}
		c, st := r.parseContact(ch, hdrExpires)
		if st != nil {
			return p, st
		}
		if c.expires > 0 && c.expires < r.cfg.MinExpires {
			tooShort = true
		}
		anySecure = anySecure || c.secure
		allSecure = allSecure && c.secure
		if i, ok := index[c.key]; ok {
			p.contacts[i] = c
			continue
		}
		index[c.key] = len(p.contacts)
		p.contacts = append(p.contacts, c)
	}
	if p.star && (len(hs) != 1 || hdrExpires == nil || *hdrExpires != 0) {
		return p, badRequest(`"Contact: *" needs "Expires: 0" and no other Contact`)
	}
	// R26: a sips AOR registers only sips Contacts.
	if aorScheme == "sips" && !allSecure {
		return p, badRequest("To is sips: every Contact must be sips (RFC 5630 5.1.1.1)")
	}
	// R28: a sips Contact is accepted only if the Request-URI and every Path are sips.
	if anySecure {
		if !ruriSecure {
			return p, badRequest("sips Contact needs a sips Request-URI (RFC 5630 5.2)")
		}
		if !pathSecure {
			return p, badRequest("sips Contact needs sips Path entries (RFC 5630 5.2)")
		}
	}
	p.sipsOnly = len(p.contacts) > 0 && allSecure
	if st := outboundContact(req, &p); st != nil {
		return p, st
	}
	// sips only over TLS (RFC 5630 §4: rather fail than go without TLS; docs/sips.md T6, P11).
	if (ruriSecure || anySecure) && !strings.EqualFold(req.Transport(), "TLS") {
		return p, &status{code: 480, reason: "Temporarily Unavailable",
			hdrs: []sip.Header{sip.NewHeader("Warning", `380 sipsvc "SIPS Not Allowed"`)}}
	}
	if tooShort {
		return p, &status{code: 423, reason: "Interval Too Brief",
			hdrs: []sip.Header{sip.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second)))}}
	}
	return p, nil
}

// parseContact checks one Contact and works out its stored form and expiry.
func (r *Registrar) parseContact(ch *sip.ContactHeader, hdrExpires *uint32) (contactReq, *status) {
	var c contactReq
	u := ch.Address.Clone()
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "sip" && u.Scheme != "sips" {
		return c, badRequest("Contact must be a sip: or sips: URI")
	}
	if u.Host == "" {
		return c, badRequest("Contact has no host")
	}
	c.secure = u.Scheme == "sips"
	// Check before the transport parameter goes: sips with transport=udp is refused (R4,
	// issue 13), not stored as a sips binding.
	if err := dn.CheckContact(u); err != nil {
		return c, badRequest("Malformed Contact")
	}
	if c.secure {
		// The modelled product's rule: a sips binding is stored without transport (T4).
		dn.RemoveTransportParam(u)
	}
	c.contact = u.String()
	c.key = dn.KeyOf(*u)

	exp := uint32(r.cfg.DefaultExpires / time.Second)
	if hdrExpires != nil {
		exp = *hdrExpires
	}
	if v, ok := ch.Params.Get("expires"); ok {
		d, ok := parseDelta(v)
		if !ok {
			return c, badRequest("Bad Contact expires parameter")
		}
		exp = d
	}
	c.expires = min(time.Duration(exp)*time.Second, r.cfg.MaxExpires)
	if v, ok := ch.Params.Get("+sip.instance"); ok {
		c.instance = strings.Trim(v, `"`)
	}
	if v, ok := ch.Params.Get("reg-id"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > dn.MaxRegID {
			return c, badRequest("Bad Contact reg-id parameter")
		}
		c.regID = n
	}
	return c, nil
}

// parsePath returns the URI of every Path value in order (RFC 3327 §5.3), as the binding
// stores it, and whether all of them are sips (R28). ok is false when a value is not a
// sip:/sips: URI that sipsvc could send a request to (dn.CheckContact): the binding could
// not be reached through it.
func parsePath(req *sip.Request) (path []string, allSecure, ok bool) {
	allSecure = true
	for _, h := range req.GetHeaders("Path") {
		for _, v := range splitAddrList(h.Value()) {
			var u sip.Uri
			if _, err := sip.ParseAddressValue(v, &u, nil); err != nil {
				return nil, false, false
			}
			if err := dn.CheckContact(&u); err != nil {
				return nil, false, false
			}
			allSecure = allSecure && u.Scheme == "sips"
			path = append(path, u.String())
		}
	}
	return path, allSecure, true
}

// splitAddrList splits a comma-separated header value outside <> and quotes.
func splitAddrList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// pending is an event to emit once the DN's lock is released.
type pending struct {
	kind signaling.EventKind
	b    dn.Binding
}

// apply updates the bindings of an authenticated REGISTER and decides the answer: 200 with
// every current binding, or an error. The caller holds the DN's lock, and emits the events
// and sends the answer after releasing it. Store failures are recorded on span.
func (r *Registrar) apply(ctx context.Context, req *sip.Request, p registerReq, span trace.Span) (*status, []pending) {
	now := r.now()
	cid := callID(req)
	var cseq uint32
	if h := req.CSeq(); h != nil {
		cseq = h.SeqNo
	}
	var evs []pending
	failed := func(err error) (*status, []pending) {
		span.RecordError(err)
		r.log.Error("register: store", "dn", p.number, "error", err)
		return &status{code: 500, reason: "Server Internal Error"}, evs
	}
	current, err := r.store.Bindings(ctx, p.number)
	if err != nil {
		return failed(err)
	}
	// existing finds a current binding by key; a DN has a handful, so a scan beats a map.
	// It points into current rather than copying: apply's stack frame is kept small
	// (logRemoved).
	existing := func(key string) *dn.Binding {
		for i := range current {
			if current[i].Key == key {
				return &current[i]
			}
		}
		return nil
	}

	if p.star {
		if err := r.store.DeleteBindings(ctx, p.number); err != nil {
			return failed(err)
		}
		for i := range current {
			r.logRemoved(current[i], "contact-star")
			evs = append(evs, pending{signaling.EventRegistrationRemoved, current[i]})
		}
		return r.okStatus(ctx, req, p, false, now, failed), evs
	}

	// RFC 3261 §10.3 step 7: the same Call-ID with a CSeq that is not higher is out of
	// order; check every contact before writing any.
	for _, c := range p.contacts {
		if old := existing(c.key); old != nil && old.CallID == cid && cseq <= old.CSeq {
			return &status{code: 500, reason: "Server Internal Error",
				hdrs: []sip.Header{sip.NewHeader("Warning", `399 sipsvc "REGISTER out of order (CSeq not higher)"`)}}, nil
		}
	}
	// RFC 5626 §5.2: a REGISTER for the same instance and reg-id replaces that flow's
	// binding, whatever its Contact; other reg-ids of the instance are other flows. The
	// replaced bindings are left out of the cap's count, and removed once it passed.
	current, replaced := replacedFlows(p, current)
	// Cap the bindings of the DN: count what it would hold after this REGISTER.
	after := len(current)
	for _, c := range p.contacts {
		switch had := existing(c.key) != nil; {
		case c.expires == 0 && had:
			after--
		case c.expires > 0 && !had:
			after++
		}
	}
	if after > r.cfg.MaxBindingsPerDN && after > len(current) {
		return tooMany(RefusalTooManyBindings, "bindings per DN", r.cfg.MaxBindingsPerDN), nil
	}
	for _, b := range replaced {
		if err := r.store.DeleteBinding(ctx, p.number, b.Key); err != nil && !errors.Is(err, dn.ErrNotFound) {
			return failed(err)
		}
		r.logRemoved(b, "outbound-flow-replaced")
		evs = append(evs, pending{signaling.EventRegistrationRemoved, b})
	}
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}
	stored := false
	for _, c := range p.contacts {
		old := existing(c.key)
		had := old != nil
		if c.expires == 0 {
			if !had {
				continue
			}
			if err := r.store.DeleteBinding(ctx, p.number, c.key); err != nil && !errors.Is(err, dn.ErrNotFound) {
				return failed(err)
			}
			r.logRemoved(*old, "expires-0")
			evs = append(evs, pending{signaling.EventRegistrationRemoved, *old})
			continue
		}
		b := dn.Binding{
			Number: p.number, Contact: c.contact, Key: c.key, Secure: c.secure,
			Transport: strings.ToUpper(req.Transport()), Source: req.Source(),
			InstanceID: c.instance, Path: p.path, CallID: cid, CSeq: cseq, UserAgent: ua,
			Expires: now.Add(c.expires), Updated: now,
		}
		if p.outbound {
			b.RegID = c.regID
		}
		if err := r.store.PutBinding(ctx, b); err != nil {
			if errors.Is(err, dn.ErrInvalid) {
				// The store's check of the stored form refused what parseContact let
				// through: the request's fault, not the server's.
				r.log.Debug("register: binding refused", "dn", p.number, "error", err)
				return badRequest("Malformed Contact"), evs
			}
			return failed(err)
		}
		stored = true
		kind := signaling.EventRegistrationAdded
		if had {
			kind = signaling.EventRegistrationRefresh
		} else {
			r.logAdded(b, c.expires)
		}
		evs = append(evs, pending{kind, b})
	}
	return r.okStatus(ctx, req, p, stored, now, failed), evs
}

// logRemoved and logAdded log a binding's removal and creation. They are kept out of
// apply, whose stack frame their arguments (with copies of bindings) made 2.5 KB: the
// goroutine sipgo starts per request then had to grow its stack on most REGISTERs.
func (r *Registrar) logRemoved(b dn.Binding, reason string) {
	r.log.Info("registration removed", "dn", b.Number, "contact", b.Contact, "reason", reason)
}

func (r *Registrar) logAdded(b dn.Binding, expires time.Duration) {
	r.log.Info("registration added", "dn", b.Number, "contact", b.Contact, "transport", b.Transport,
		"source", b.Source, "secure", b.Secure, "expires", expires)
}

// okStatus is the 200 OK to a REGISTER: every live binding of the DN with its remaining
// seconds, then the Path stored with the bindings this REGISTER wrote (stored), echoed only
// when the UA sent "Supported: path" (RFC 3327 §5.3), then the configured Service-Route in
// the scheme R34 asks for (RFC 3608 §6.1).
func (r *Registrar) okStatus(ctx context.Context, req *sip.Request, p registerReq, stored bool, now time.Time, failed func(error) (*status, []pending)) *status {
	bs, err := r.store.Bindings(ctx, p.number)
	if err != nil {
		st, _ := failed(err)
		return st
	}
	hdrs := make([]sip.Header, 0, len(bs)+1+len(p.path)+len(r.serviceRoute[0]))
	for _, b := range bs {
		left := int((b.Expires.Sub(now) + time.Second - 1) / time.Second)
		v := "<" + b.Contact + ">;expires=" + strconv.Itoa(max(left, 1))
		if b.InstanceID != "" {
			v += `;+sip.instance="` + b.InstanceID + `"`
		}
		if b.RegID > 0 {
			v += ";reg-id=" + strconv.Itoa(b.RegID)
		}
		hdrs = append(hdrs, sip.NewHeader("Contact", v))
	}
	hdrs = append(hdrs, sip.NewHeader("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
	if stored && len(p.path) > 0 && signaling.HasOption(req, "Supported", "path") {
		for _, u := range p.path {
			hdrs = append(hdrs, sip.NewHeader("Path", "<"+u+">"))
		}
	}
	if p.outbound && stored {
		hdrs = append(hdrs, sip.NewHeader("Require", "outbound")) // RFC 5626 §5.2
	}
	routes := r.serviceRoute[0]
	if p.sipsOnly {
		routes = r.serviceRoute[1]
	}
	for _, v := range routes {
		hdrs = append(hdrs, sip.NewHeader("Service-Route", v))
	}
	return &status{code: 200, reason: "OK", hdrs: hdrs}
}
