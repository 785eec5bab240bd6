package signaling

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
)

// prebuilt tells sipgo the request is complete: we write every header ourselves.
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// via builds our Via for a request sent on a transport (R8: TLS on a sips leg).
func (s *Server) via(transport string) *sip.ViaHeader {
	la := s.local(transport)
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(transport), Host: la.host, Port: la.port, Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranchN(16))
	v.Params.Add("rport", "")
	return v
}

// prepare sets where and how a request leaves: the leg's transport decision, never the
// library's default (R3, R5, R11), and the UDP listener as source.
func (s *Server) prepare(req *sip.Request, transport, dest string) {
	req.SetTransport(strings.ToUpper(transport))
	req.SetDestination(dest)
	s.advertiseRequest(req, transport, dest)
	if strings.EqualFold(transport, "UDP") {
		la := s.local("UDP")
		if la.ip != nil && s.udpListenerReady(la) {
			req.Laddr = sip.Addr{IP: la.ip, Port: la.port}
		}
	}
}

// inDialogRequest builds a request within the leg's dialog (RFC 3261 §12.2.1.1).
func (s *Server) inDialogRequest(l *leg, method sip.RequestMethod, body []byte, ctype string) *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	ruri := *l.remoteTarget.Clone()
	req := sip.NewRequest(method, ruri)
	req.AppendHeader(s.via(l.transport))
	for _, r := range l.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: l.localDisplay, Address: *l.localURI.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{DisplayName: l.remoteDisplay, Address: *l.remoteURI.Clone(), Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: l.nextCSeqLocked(method), MethodName: method})
	// R24: a target refresh on a secure leg keeps a sips Contact; R9: behind a sips route
	// it is a sips Contact on our TLS listener (routeTransportLocked).
	req.AppendHeader(&sip.ContactHeader{Address: *l.localContact.Clone()})
	req.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	if len(body) > 0 {
		req.AppendHeader(sip.NewHeader("Content-Type", ctype))
	}
	req.SetBody(body)
	s.prepare(req, l.transport, l.dest)
	return req
}

// send sends a request as a client transaction and returns the final response. Provisional
// responses are passed to onProvisional when it is not nil.
func (s *Server) send(ctx context.Context, req *sip.Request, onProvisional func(*sip.Response)) (*sip.Response, error) {
	if s.uaClosed.Load() {
		// sipgo would open a new socket for it, after its pool was cleared: a leak.
		return nil, fmt.Errorf("send %s: %w", req.Method, ErrServerClosed)
	}
	if err := checkUDPRequestSize(req); err != nil {
		return nil, fmt.Errorf("send %s: %w", req.Method, err)
	}
	tx, err := s.client.TransactionRequest(ctx, req, prebuilt)
	if err != nil {
		return nil, fmt.Errorf("send %s: %w", req.Method, err)
	}
	s.countOut(req)
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			s.countIn(res)
			if res.IsProvisional() {
				if onProvisional != nil {
					onProvisional(res)
				}
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, fmt.Errorf("%s transaction: %w", req.Method, txErr(tx.Err()))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func txErr(err error) error {
	if err == nil {
		return errors.New("transaction terminated")
	}
	return err
}

func (s *Server) countIn(res *sip.Response) {
	if s.cfg.Metrics == nil {
		return
	}
	method := ""
	if c := res.CSeq(); c != nil {
		method = string(c.MethodName)
	}
	s.cfg.Metrics.MessageIn(method, res.StatusCode, res.Transport())
}

// write sends a request outside any transaction (ACK for 2xx).
func (s *Server) write(req *sip.Request) error {
	if s.uaClosed.Load() {
		return fmt.Errorf("write %s: %w", req.Method, ErrServerClosed)
	}
	if err := checkUDPRequestSize(req); err != nil {
		return fmt.Errorf("write %s: %w", req.Method, err)
	}
	if err := s.client.WriteRequest(req, prebuilt); err != nil {
		return fmt.Errorf("write %s: %w", req.Method, err)
	}
	s.countOut(req)
	return nil
}

// respond answers the leg's peer on a server transaction with our tag and, for responses
// that establish or refresh a dialog, our Contact (R22, R24).
func (s *Server) respond(l *leg, tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, ctype string, hdrs ...sip.Header) error {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		withContact := code < 300 && (req.Method == sip.INVITE || req.Method == sip.UPDATE || req.Method == sip.SUBSCRIBE)
		var contact sip.Uri
		l.mu.Lock()
		tag := l.localTag
		if withContact {
			contact = *l.localContact.Clone()
		}
		l.mu.Unlock()
		if _, has := req.To().Params.Get("tag"); !has && tag != "" {
			to.Params.Add("tag", tag)
		}
		if withContact {
			res.AppendHeader(&sip.ContactHeader{Address: contact})
		}
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.addServerHeader(res)
	if len(body) > 0 {
		res.AppendHeader(sip.NewHeader("Content-Type", ctype))
		res.SetBody(body)
	}
	var r *retx
	if needsAck(req, code) { // RFC 3261 §13.3.1.4: the TU retransmits its 2xx over UDP
		r = l.expectAck(s, tx, res, req.CSeq().SeqNo)
	}
	if err := tx.Respond(res); err != nil {
		if r != nil {
			r.stop()
			r.drop()
		}
		return fmt.Errorf("respond %d: %w", code, err)
	}
	s.countOut(res)
	if r != nil {
		r.start()
	}
	return nil
}

// hostPort formats a URI's host and port (default by transport, R3).
func hostPort(u sip.Uri, transport string) string {
	port := u.Port
	if port == 0 {
		port = sips.DefaultPort(transport) // R3
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
}

// recordRoutes returns the Record-Route URIs of a message in order.
func recordRoutes(m interface{ GetHeaders(string) []sip.Header }) []sip.Uri {
	var out []sip.Uri
	for _, h := range m.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			out = append(out, *rr.Address.Clone())
		}
	}
	return out
}

func reverse(u []sip.Uri) []sip.Uri {
	out := make([]sip.Uri, len(u))
	for i := range u {
		out[len(u)-1-i] = u[i]
	}
	return out
}

func headerValue(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func contentType(m interface{ GetHeader(string) sip.Header }) string {
	if v := headerValue(m, "Content-Type"); v != "" {
		return v
	}
	return "application/sdp"
}

// HasOption reports whether a comma-separated header (Supported, Require, Allow…) of a
// request or response lists opt, case-insensitively (RFC 3261 §20.37 and the like).
func HasOption(m interface{ GetHeaders(string) []sip.Header }, name, opt string) bool {
	for _, h := range m.GetHeaders(name) {
		if listHas(h.Value(), opt) {
			return true
		}
	}
	return false
}

// udpListenerReady reports whether sipgo serves our UDP listener yet, so that requests can be
// sent from it (until then, a request sent from that address would try to bind it again).
func (s *Server) udpListenerReady(la listenAddr) bool {
	if s.udpReady.Load() {
		return true
	}
	addr := net.JoinHostPort(la.ip.String(), strconv.Itoa(la.port))
	if c, _ := s.ua.TransportLayer().GetConnection("udp", addr); c != nil {
		s.udpReady.Store(true)
		return true
	}
	return false
}

// routeTransportLocked applies the route set's transport to a leg (R35, P6): a sips top route
// means every in-dialog request on the leg goes over TLS, and our Contact on the leg
// becomes a sips URI on our TLS listener (R9: a sips top Route needs a sips Contact, so
// the peer is never told to reach us in the clear); a transport parameter on the top
// route selects that transport, unless the remote target (the Request-URI of every
// in-dialog request) is sips: then every route entry becomes sips (R12) and the route is
// reached over TLS whatever its scheme or transport parameter said (R11, R37; RFC 3261
// §8.1.2: a sips Request-URI is resolved as if every URI used to reach it were sips, so
// TLS on every hop, the first one included), at the route's explicit port or 5061. The caller holds l.mu (or owns the
// leg alone).
func (l *leg) routeTransportLocked() {
	if len(l.routeSet) == 0 {
		return
	}
	if strings.EqualFold(l.remoteTarget.Scheme, "sips") {
		l.routeSet = sipsRouteSet(l.routeSet) // R12
	}
	top := l.routeSet[0]
	tp := l.transport
	if v, ok := dn.TransportParam(top); ok {
		tp = strings.ToUpper(v)
	}
	if strings.EqualFold(top.Scheme, "sips") || strings.EqualFold(l.remoteTarget.Scheme, "sips") {
		tp = "TLS"
		if l.c != nil && l.c.s != nil && !strings.EqualFold(l.localContact.Scheme, "sips") {
			l.localContact = l.c.s.sipsContact(l.localContact)
		}
	}
	l.transport = tp
	l.dest = hostPort(top, tp)
}

// sipsRouteSet is the route set of requests whose Request-URI is sips (R12, RFC 5630
// §5.1.1): every sip: entry becomes sips: by its scheme alone (host, port and lr kept; no
// transport=tls or udp, R6, R4), so every hop is TLS. It returns a new slice.
func sipsRouteSet(rs []sip.Uri) []sip.Uri {
	out := make([]sip.Uri, len(rs))
	for i, r := range rs {
		out[i] = r
		if !strings.EqualFold(r.Scheme, "sips") {
			out[i] = sips.TargetURI(r, sips.Decision{Scheme: "sips"}, "")
		}
	}
	return out
}

// sipsContact turns our Contact u into a sips URI on our TLS listener (R9, P6): same user,
// no transport parameter (sips alone selects TLS, R6).
func (s *Server) sipsContact(u sip.Uri) sip.Uri {
	la := s.local("TLS")
	out := sip.Uri{Scheme: "sips", User: u.User, Host: la.host, Port: la.port, UriParams: sip.NewParams()}
	for _, kv := range u.UriParams {
		if !strings.EqualFold(kv.K, "transport") {
			out.UriParams.Add(kv.K, kv.V)
		}
	}
	return out
}
