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
)

// AuthorizeCall decides whether an out-of-dialog INVITE may be routed and who calls. A
// request from a trusted source (source IP or verified TLS client certificate, see
// TrustedSources and TrustedCertSubjects) passes as that DN. Otherwise the From user is
// the caller: a DN with a password must answer a 407 challenge, a disabled DN gets 403,
// and anything else passes (caller that DN, or nil for an unknown user). When it returns
// ok=false it has answered tx. It implements signaling.Authenticator.
func (r *Registrar) AuthorizeCall(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) (*dn.DN, bool) {
	from := ""
	if h := req.From(); h != nil {
		from = h.Address.User
	}
	if d, ok, err := r.trusted(ctx, req, tx, from); err != nil {
		r.log.Error("authorize call: list DNs", "error", err)
		r.reply(tx, req, 500, "Server Internal Error")
		return nil, false
	} else if ok {
		return &d, true
	}
	if from == "" {
		return nil, true
	}
	d, err := r.store.Lookup(ctx, from)
	switch {
	case errors.Is(err, dn.ErrNotFound):
		return nil, true
	case err != nil:
		r.log.Error("authorize call: look up DN", "dn", from, "error", err)
		r.reply(tx, req, 500, "Server Internal Error")
		return nil, false
	case d.Disabled:
		r.reply(tx, req, 403, "Forbidden")
		return nil, false
	case !d.HasPassword():
		return &d, true
	}
	if r.authenticate(req, tx, from, d, true, 407) == authAnswered {
		return nil, false
	}
	return &d, true
}

// trusted finds a DN that trusts the request's source IP or TLS client certificate,
// preferring the From user's own DN.
func (r *Registrar) trusted(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, from string) (dn.DN, bool, error) {
	ds, err := r.store.TrustedDNs(ctx)
	if err != nil {
		return dn.DN{}, false, err
	}
	ip := sourceIP(req)
	var cert *x509.Certificate
	certLoaded := false
	match := func(d dn.DN) bool {
		if d.Disabled {
			return false
		}
		if len(d.TrustedSources) > 0 && d.TrustsSource(ip) {
			return true
		}
		if len(d.TrustedCertSubjects) == 0 {
			return false
		}
		if !certLoaded {
			cert, certLoaded = peerCertificate(tx), true
		}
		return cert != nil && certMatches(cert, d.TrustedCertSubjects)
	}
	var first *dn.DN
	for i := range ds {
		if !match(ds[i]) {
			continue
		}
		if ds[i].Number == from {
			return ds[i], true, nil
		}
		if first == nil {
			first = &ds[i]
		}
	}
	if first != nil {
		return *first, true, nil
	}
	return dn.DN{}, false, nil
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
