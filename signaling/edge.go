package signaling

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"time"

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

// wrapTLS applies the same framing and request-line check to TLS connections, after the
// handshake (l is the connlimit TLS listener, whose connections complete the handshake on
// their first read). The framed connection exposes the *tls.Conn through NetConn, so the
// readers of the peer certificate (connlimit.TLSConn) still find it.
func (s *Server) wrapTLS(l net.Listener) net.Listener {
	return sipcheck.WrapListener(l, s.wireConfig("TLS"))
}

// wireConfig is the configuration of the checks before parsing. Each refused request is
// counted as a message in and, when answered, a message out.
func (s *Server) wireConfig(transport string) sipcheck.WireConfig {
	cfg := sipcheck.WireConfig{
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
	if transport == "UDP" {
		// RFC 3261 §18.1.1, for the requests that leave from the listener (all of ours
		// once it is up: prepare); checkUDPRequestSize covers the others.
		cfg.MaxRequest, cfg.SizeCause = MaxUDPRequest, sip.ErrUDPMTUCongestion
	}
	return cfg
}

// errNoResponseDial refuses a connection sipgo would open to send a response.
var errNoResponseDial = errors.New("signaling: not dialling out to answer a request whose connection is gone")

// sipgoServerConnection is the sipgo function that finds the connection to answer a request
// on and, failing that, dials the top Via's sent-by (RFC 3261 §18.2.2). responseDialer
// recognises its dials by this name; TestNoDialOutForResponse fails if sipgo renames it.
const sipgoServerConnection = "github.com/emiago/sipgo/sip.(*TransportLayer).serverRequestConnection"

// streamTransports gives sipgo TCP and TLS transports whose dialer refuses the dials sipgo
// makes to answer a request (responseDialer); dials for our own requests are unchanged.
func (s *Server) streamTransports() sip.TransportLayerOption {
	return sip.WithTransportLayerTransports(sip.TransportsConfig{
		TCP: &sip.TransportTCP{DialerCreate: s.responseDialer("TCP")},
		TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: s.responseDialer("TLS")}},
	})
}

// responseDialer is the dialer factory of a stream transport. A response to a request that
// came over TCP or TLS goes back over that connection (RFC 3261 §18.2.2). When the
// connection is gone (the peer closed it, or it was closed on a framing error) sipgo would
// dial the host and port the request's Via names, with a 10 s timeout, in a goroutine that
// outlives the Server: a peer could make sipsvc connect anywhere by sending one request and
// hanging up. Those dials are refused before a packet leaves; the request is dropped (sipgo
// logs it), and the refusal is logged and counted. Dials for our own requests (a leg to a
// DN over TCP or TLS) pass, with sipgo's default timeout.
func (s *Server) responseDialer(transport string) func(laddr net.Addr) net.Dialer {
	return func(laddr net.Addr) net.Dialer {
		if !answeringRequest() {
			return net.Dialer{Timeout: time.Minute, LocalAddr: laddr}
		}
		return net.Dialer{
			ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
				s.log.Warn("response dropped: the request's connection is gone and sipsvc does not dial the peer back",
					"transport", transport, "via_addr", address)
				if c, ok := s.cfg.Metrics.(ResponseDropCounter); ok {
					c.ResponseDropped(transport, "connection_gone")
				}
				return errNoResponseDial
			},
		}
	}
}

// ResponseDropCounter is implemented by a Metrics that counts responses sipsvc could not send
// and did not try to send another way: reason "connection_gone" (a request that came over TCP
// or TLS whose connection closed before its response).
type ResponseDropCounter interface {
	ResponseDropped(transport, reason string)
}

// answeringRequest reports whether the calling goroutine is in sipgo's search for the
// connection to answer a request on.
func answeringRequest() bool {
	var pcs [24]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if f.Function == sipgoServerConnection {
			return true
		}
		if !more {
			return false
		}
	}
}
