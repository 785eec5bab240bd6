package signaling

import (
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/sipcheck"
)

// supportedOptions are the option tags we support, as sent in Supported headers.
const supportedOptions = "replaces, 100rel, timer"

// newChecker is the edge check of every request: our option tags and body type.
func newChecker() *sipcheck.Checker {
	var tags []string
	for t := range strings.SplitSeq(supportedOptions, ",") {
		tags = append(tags, strings.TrimSpace(t))
	}
	return sipcheck.New(sipcheck.Config{Supported: tags, Accept: "application/sdp"})
}

// refuse answers a request that failed the edge check. ACK is never answered (RFC 3261
// §17.2.1): it is dropped. 480 carries Warning 380 "SIPS Not Allowed" as on the INVITE path
// (R4, R19, P11); other refusals say what is wrong in a 399 Warning.
func (s *Server) refuse(req *sip.Request, tx sip.ServerTransaction, r sipcheck.Refusal) {
	s.log.Debug("request refused at the edge", "method", req.Method, "code", r.Code, "why", r.Text)
	if req.IsAck() {
		return
	}
	sipcheck.EchoSafe(req)
	hdrs := make([]sip.Header, 0, 2)
	if r.Code == 480 {
		hdrs = append(hdrs, withWarning(380, "SIPS Not Allowed"))
	} else if r.Text != "" {
		hdrs = append(hdrs, withWarning(399, r.Text))
	}
	if r.Header != "" {
		hdrs = append(hdrs, sip.NewHeader(r.Header, r.Value))
	}
	s.reply(tx, req, r.Code, r.Reason, hdrs...)
}

// wrapUDP puts sipcheck's datagram check in front of sipgo's parser: requests whose
// request line or framing sipgo would drop silently are answered (400, 416) or, for ACK,
// dropped.
func (s *Server) wrapUDP(c net.PacketConn) net.PacketConn {
	return sipcheck.WrapPacketConn(c, s.wireConfig("UDP"))
}

// wrapTCP frames each TCP connection's messages and checks their request lines, so that a
// request line sipgo cannot parse is answered (400, 416) instead of closing the connection.
func (s *Server) wrapTCP(l net.Listener) net.Listener {
	return sipcheck.WrapListener(l, s.wireConfig("TCP"))
}

// wireConfig is the configuration of the checks before parsing. Each refused request is
// counted as a message in and, when answered, a message out.
func (s *Server) wireConfig(transport string) sipcheck.WireConfig {
	return sipcheck.WireConfig{
		Server:    s.cfg.UserAgent,
		WarnAgent: warnAgent,
		OnRefuse: func(method string, code int) {
			s.log.Debug("request refused before parsing", "transport", transport, "method", method, "code", code)
			if m := s.cfg.Metrics; m != nil {
				m.MessageIn(method, 0, transport)
				if code != 0 {
					m.MessageOut(method, code, transport)
				}
			}
		},
	}
}
