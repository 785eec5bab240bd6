package dn

import (
	"net/netip"
	"strings"
)

func validSource(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// sourceSet is a TrustedSources list parsed once (see DN.WithSourcesParsed). It is never
// modified after it is built, so copies of a DN share it safely.
type sourceSet struct {
	// src is the list it was parsed from: TrustsSource uses the set only while the DN's
	// TrustedSources still equals it, entry by entry.
	src []string
	// addrs are the IP entries, unmapped; prefixes the CIDR entries. Entries that do not
	// parse are left out: they match nothing, as when parsed on each call.
	addrs    []netip.Addr
	prefixes []netip.Prefix
}

// parseSources parses a TrustedSources list.
func parseSources(src []string) *sourceSet {
	ss := &sourceSet{src: append([]string(nil), src...)}
	for _, s := range src {
		if strings.Contains(s, "/") {
			if p, err := netip.ParsePrefix(s); err == nil {
				ss.prefixes = append(ss.prefixes, p)
			}
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			ss.addrs = append(ss.addrs, a.Unmap())
		}
	}
	return ss
}

// parsedFrom reports whether ss was parsed from a list equal to src. The strings of a DN
// that carries ss share their bytes with ss.src, so each comparison is a pointer check.
func (ss *sourceSet) parsedFrom(src []string) bool {
	if ss == nil || len(ss.src) != len(src) {
		return false
	}
	for i, s := range src {
		if ss.src[i] != s {
			return false
		}
	}
	return true
}

// contains reports whether the unmapped address a matches an entry.
func (ss *sourceSet) contains(a netip.Addr) bool {
	for _, b := range ss.addrs {
		if b == a {
			return true
		}
	}
	for _, p := range ss.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// WithSourcesParsed returns d carrying its TrustedSources parsed, so that TrustsSource
// does not parse them again on each call. Stores that keep DNs in memory call it once per
// write; the parsed form is not part of the DN's JSON or YAML. If TrustedSources is changed
// afterwards, TrustsSource notices and parses the new list on each call, as it does for a
// DN that was never passed through WithSourcesParsed.
func (d DN) WithSourcesParsed() DN {
	if len(d.TrustedSources) == 0 {
		d.sources = nil
	} else if !d.sources.parsedFrom(d.TrustedSources) {
		d.sources = parseSources(d.TrustedSources)
	}
	return d
}

// TrustsSource reports whether the IP address ip (no port) matches one of the DN's trusted
// sources. Entries that are not an IP address or CIDR match nothing.
func (d DN) TrustsSource(ip string) bool {
	if len(d.TrustedSources) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	ss := d.sources
	if !ss.parsedFrom(d.TrustedSources) {
		ss = parseSources(d.TrustedSources) // a DN built by hand, or changed since
	}
	return ss.contains(a)
}
