package signaling

import (
	"net"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// Advertised addresses (what Via and Contact carry so that peers can reach us back).
//
// In order: Config.Advertise for the transport, Config.Hostname, the listener's own address
// when it is not a wildcard. A wildcard listener (0.0.0.0, ::) has no address a peer can
// use, so sipsvc asks the kernel which local address it would use to reach each peer (a
// connected UDP socket sends nothing; the answer is cached) and writes that one: a phone on
// 10.231.0.2 is told 10.231.0.1, not 127.0.0.1. Where no peer is known yet, the default
// is the address of the interface of the default route.

// routeProbe is a TEST-NET-1 address (RFC 5737): routing toward it yields the default
// route's source address; no packet is ever sent to it.
const routeProbe = "192.0.2.1:9"

// maxRouteCache bounds the per-peer source-address cache; it is emptied when full.
const maxRouteCache = 4096

// routeCache maps a peer IP to the local address the kernel uses to reach it.
type routeCache struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

// advertised returns the host (or host:port) to advertise for a listener on host/ip, and
// whether it is the per-peer automatic choice.
func (s *Server) advertised(transport, host string, ip net.IP) (string, bool) {
	for t, v := range s.cfg.Advertise {
		if strings.EqualFold(t, transport) && v != "" {
			return v, false
		}
	}
	if s.cfg.Hostname != "" {
		return s.cfg.Hostname, false
	}
	if ip != nil && !ip.IsUnspecified() {
		return host, false
	}
	return defaultSource(), true
}

// defaultSource is the source address of the default route, else the first non-loopback
// IPv4 address of an interface that is up, else 127.0.0.1.
func defaultSource() string {
	if a := sourceFor(routeProbe); a != "" {
		return a
	}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// sourceFor returns the local address the kernel picks to reach hostport (an IP literal
// with a port), or "" when there is no route.
func sourceFor(hostport string) string {
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return ""
	}
	defer c.Close()
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
		return ua.IP.String()
	}
	return ""
}

// sourceToward returns the local address to advertise to the peer at dest (host:port). It
// is la.host unless la is automatic and dest is an IP literal with a route.
func (s *Server) sourceToward(la listenAddr, dest string) string {
	if !la.auto {
		return la.host
	}
	h, _, err := net.SplitHostPort(dest)
	if err != nil {
		return la.host
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return la.host
	}
	key := ip.String()
	s.srcCache.mu.Lock()
	src, ok := s.srcCache.m[key]
	s.srcCache.mu.Unlock()
	if ok {
		return src
	}
	src = sourceFor(net.JoinHostPort(key, "9"))
	if src == "" {
		src = la.host
	}
	s.srcCache.mu.Lock()
	if s.srcCache.m == nil || len(s.srcCache.m) >= maxRouteCache {
		s.srcCache.m = make(map[string]string)
	}
	s.srcCache.m[key] = src
	s.srcCache.mu.Unlock()
	return src
}

// advertiseRequest rewrites the top Via and the Contact of a request about to leave for dest
// when the transport's listener is a wildcard: they carry the address of the interface that
// reaches dest.
func (s *Server) advertiseRequest(req *sip.Request, transport, dest string) {
	la := s.local(transport)
	if !la.auto {
		return
	}
	src := s.sourceToward(la, dest)
	if src == la.host {
		return
	}
	if v := req.Via(); v != nil && v.Host == la.host {
		v.Host = src
	}
	if c := req.Contact(); c != nil && c.Address.Host == la.host {
		c.Address.Host = src
	}
}

// advertiseURI returns u with its host set to the address that reaches dest, when u carries
// the automatic default of the transport's wildcard listener.
func (s *Server) advertiseURI(u sip.Uri, transport, dest string) sip.Uri {
	la := s.local(transport)
	if la.auto && u.Host == la.host {
		u.Host = s.sourceToward(la, dest)
	}
	return u
}

// logListen logs the address advertised for each transport.
func (s *Server) logListen() {
	p := s.listen.Load()
	if p == nil {
		return
	}
	for _, t := range []string{"UDP", "TCP", "TLS"} {
		if a, ok := (*p)[t]; ok {
			how := "configured"
			if a.auto {
				how = "per peer (wildcard listener); default"
			}
			s.log.Info("SIP advertised address", "transport", t, "host", a.host, "port", a.port, "choice", how)
		}
	}
}
