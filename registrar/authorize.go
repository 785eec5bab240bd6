package registrar

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/connlimit"
	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

// AuthorizeCall decides whether an out-of-dialog INVITE may be routed and who calls: the
// authenticated or trusted DN, or nil for an anonymous caller. When it returns ok=false it
// has answered tx. It implements signaling.Authenticator; ClassifyCall says more.
func (r *Registrar) AuthorizeCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (*dn.DN, bool) {
	c, ok := r.ClassifyCall(ctx, req, tx)
	return c.DN, ok
}

// ClassifyCall classifies the caller of an out-of-dialog INVITE (signaling.Classifier):
//
//   - trusted: the source IP matches a DN's TrustedSources, or the TLS connection has a
//     verified client certificate whose subject a DN trusts (TrustedCertSubjects);
//   - authenticated: the From user, its escapes decoded (RFC 3261 §19.1.4, so that
//     "sip:%37789@h" is DN 7789), is an enabled DN with a password and the request answers
//     our 407 challenge for it;
//   - anonymous: anything else, including a From user that names a DN without a password
//     or a disabled DN (a claim nobody proved).
//
// When it returns ok=false it has answered tx (407, 403 or 500).
func (r *Registrar) ClassifyCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (signaling.Caller, bool) {
	from := ""
	if h := req.From(); h != nil {
		from = dn.NormalizeUser(h.Address.User)
	}
	anon := signaling.Caller{Class: signaling.CallerAnonymous, User: from}
	if d, rule, ok, err := r.trusted(ctx, req, tx, from); err != nil {
		r.log.Error("authorize call: list DNs", "error", err)
		r.reply(tx, req, 500, "Server Internal Error")
		return anon, false
	} else if ok {
		return signaling.Caller{Class: signaling.CallerTrusted, DN: &d, Rule: rule, User: from}, true
	}
	if from == "" {
		return anon, true
	}
	d, err := r.store.Lookup(ctx, from)
	switch {
	case errors.Is(err, dn.ErrNotFound):
		return anon, true
	case err != nil:
		r.log.Error("authorize call: look up DN", "dn", from, "error", err)
		r.reply(tx, req, 500, "Server Internal Error")
		return anon, false
	case d.Disabled, !d.HasPassword():
		return anon, true
	}
	if r.authenticate(req, tx, from, d, true, 407) == authAnswered {
		return anon, false
	}
	return signaling.Caller{Class: signaling.CallerAuthenticated, DN: &d, User: from}, true
}

// ChallengeCall answers an INVITE that an anonymous caller may not place with the same
// 407 a DN with a password gets, checked against dummy credentials: credentials then get
// 403, and the caller cannot tell whether the dialed number exists (signaling.Classifier).
func (r *Registrar) ChallengeCall(_ context.Context, req *sip.Request, tx sip.ServerTransaction) {
	from := "anonymous"
	if h := req.From(); h != nil && h.Address.User != "" {
		from = dn.NormalizeUser(h.Address.User)
	}
	r.authenticate(req, tx, from, dn.DN{}, false, 407)
}

// trusted finds a DN that trusts the request's source IP or TLS client certificate,
// preferring the From user's own DN, and names the rule that matched.
func (r *Registrar) trusted(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, from string) (dn.DN, string, bool, error) {
	ds, err := r.store.TrustedDNs(ctx)
	if err != nil {
		return dn.DN{}, "", false, err
	}
	ip := sourceIP(req)
	var cert *x509.Certificate
	certLoaded := false
	match := func(d dn.DN) string {
		if d.Disabled {
			return ""
		}
		if len(d.TrustedSources) > 0 && d.TrustsSource(ip) {
			return "source " + ip + " in trusted_sources of DN " + d.Number
		}
		if len(d.TrustedCertSubjects) == 0 {
			return ""
		}
		if !certLoaded {
			cert, certLoaded = peerCertificate(tx), true
		}
		if cert == nil {
			return ""
		}
		if s := certMatch(cert, d.TrustedCertSubjects); s != "" {
			return "certificate subject " + s + " in trusted_cert_subjects of DN " + d.Number
		}
		return ""
	}
	first, firstRule := -1, ""
	for i := range ds {
		rule := match(ds[i])
		if rule == "" {
			continue
		}
		if ds[i].Number == from {
			return ds[i], rule, true, nil
		}
		if first < 0 {
			first, firstRule = i, rule
		}
	}
	if first >= 0 {
		return ds[first], firstRule, true, nil
	}
	return dn.DN{}, "", false, nil
}

// peerCertificate returns the verified TLS client certificate of the connection the
// transaction's request arrived on, or nil. sipgo's server transaction exposes its
// connection, and a TLS connection is a *sip.TCPConnection wrapping a *tls.Conn. Only a
// certificate that the TLS layer verified (ClientAuth VerifyClientCertIfGiven or
// RequireAndVerifyClientCert with a ClientCAs pool) counts.
func peerCertificate(tx sip.ServerTransaction) *x509.Certificate {
	cx, ok := tx.(interface{ Connection() sip.Connection })
	if !ok {
		return nil
	}
	tc, ok := cx.Connection().(*sip.TCPConnection)
	if !ok || tc == nil {
		return nil
	}
	tl, ok := connlimit.TLSConn(tc.Conn) // inbound TLS arrives through a connlimit listener
	if !ok {
		return nil
	}
	cs := tl.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// certMatch returns the subject that the certificate's CN or a DNS, URI or e-mail SAN
// equals (case-insensitive), or "".
func certMatch(c *x509.Certificate, subjects []string) string {
	for _, s := range subjects {
		if certMatches(c, []string{s}) {
			return s
		}
	}
	return ""
}

// certMatches reports whether the certificate's CN or a DNS, URI or e-mail SAN equals one
// of the subjects (case-insensitive).
func certMatches(c *x509.Certificate, subjects []string) bool {
	names := []string{c.Subject.CommonName}
	names = append(names, c.DNSNames...)
	names = append(names, c.EmailAddresses...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return slices.ContainsFunc(subjects, func(s string) bool {
		return s != "" && slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, s) })
	})
}
