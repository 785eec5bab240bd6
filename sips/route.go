package sips

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// ServiceRoute writes the Service-Route a registrar returns in the 200 OK to a REGISTER
// (RFC 3608 §6.1) from the configured routes, in the scheme R34 asks for (RFC 5630 §5.2):
// sips when the binding is sips-only (the REGISTER used sips Contacts), else sip, because a
// registrar "MUST return a service route consisting of SIP URIs if the intent … is to allow
// both SIP and SIPS". So a sips: route is returned as sip: to a plain binding. Only the
// scheme changes, except that a sips route never carries transport=tls (R6). The routes are
// copied; nil in, nil out.
func ServiceRoute(routes []sip.Uri, sipsOnly bool) []sip.Uri {
	if len(routes) == 0 {
		return nil
	}
	scheme := "sip"
	if sipsOnly {
		scheme = "sips"
	}
	out := make([]sip.Uri, len(routes))
	for i := range routes {
		out[i] = TargetURI(routes[i], Decision{Scheme: scheme}, "") // R6 on sips
	}
	return out
}

// ParseServiceRoute parses one configured Service-Route URI (registrar.service_route): a
// sip: or sips: URI with a host (dn.ParseContact). transport=udp is refused even on a sip:
// URI, because ServiceRoute returns the route as sips to a sips-only binding (R34) and UDP
// is not a transport for sips (R4).
func ParseServiceRoute(s string) (sip.Uri, error) {
	u, err := dn.ParseContact(s)
	if err != nil {
		return sip.Uri{}, err
	}
	if tp, ok := dn.TransportParam(u); ok && strings.EqualFold(tp, "udp") {
		return sip.Uri{}, fmt.Errorf("%q: transport=udp cannot be returned as sips to a sips-only binding (R34, R4)", s)
	}
	return u, nil
}

// RouteSet turns a binding's Path (dn.Binding.Path: one URI per entry, in order) into the
// preloaded Route set of a request sent to that binding (RFC 3327 §5.4, RFC 3261 §8.1.2):
// the request carries it as Route headers and goes to its first entry (loose routing). On a
// sips leg (d.Scheme "sips") every sip: entry becomes sips: by its scheme alone (R12), so
// the request keeps TLS on every hop; transport=tls is dropped from sips entries (R6). An
// entry that is not a sip:/sips: URI with a host is an error.
func RouteSet(path []string, d Decision) ([]sip.Uri, error) {
	if len(path) == 0 {
		return nil, nil
	}
	out := make([]sip.Uri, len(path))
	for i, p := range path {
		u, err := dn.ParseContact(p)
		if err != nil {
			return nil, fmt.Errorf("path[%d]: %w", i, err)
		}
		if d.Scheme == "sips" {
			u = TargetURI(u, Decision{Scheme: "sips"}, "") // R12, R6
		}
		out[i] = u
	}
	return out, nil
}
