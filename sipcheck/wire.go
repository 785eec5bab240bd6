package sipcheck

import (
	"bytes"
	"net"
	"strconv"
	"time"
)

// WireConfig configures the checks before parsing: the datagram check of WrapPacketConn and
// the stream framing of WrapListener and WrapConn.
type WireConfig struct {
	// Server is the value of the Server header of the responses formed here.
	Server string
	// WarnAgent is the warn-agent of their Warning header (RFC 3261 §20.43).
	WarnAgent string
	// OnRefuse, if set, is told of every request answered or dropped here, just before the
	// answer is sent: the request method and the status code (0 when dropped). It is called
	// on the read loop: it must not block.
	OnRefuse func(method string, code int)
	// DrainWait bounds how long a stream connection (WrapConn) holds back the end of its
	// input while requests it passed on still await their final response. Default 2 s.
	DrainWait time.Duration
	// MaxRequest, when above 0, is the largest request WrapPacketConn lets out: a larger
	// one is refused with a *RequestSizeError (RFC 3261 §18.1.1), counted on the bytes the
	// stack formatted for the write. Responses are not limited (§18.2.2).
	MaxRequest int
	// SizeCause is the error a *RequestSizeError wraps.
	SizeCause error
}

// RequestSizeError is the error of a request refused for its size on a datagram socket.
// It wraps Cause, so that errors.Is finds the stack's own error for the case.
type RequestSizeError struct {
	Method string // the request method
	Size   int    // the request's length in bytes
	Limit  int    // WireConfig.MaxRequest
	Cause  error  // what errors.Is matches, e.g. sip.ErrUDPMTUCongestion
}

func (e *RequestSizeError) Error() string {
	return e.Method + " of " + strconv.Itoa(e.Size) + " bytes over UDP (RFC 3261 §18.1.1 limit " + strconv.Itoa(e.Limit) + ")"
}

// Unwrap returns Cause.
func (e *RequestSizeError) Unwrap() error { return e.Cause }

// Verdict is what CheckDatagram decides about one datagram. The zero Verdict passes it on.
type Verdict struct {
	// Code is the status of the response to send (Reason, Text say why); 0 with Drop false
	// passes the datagram on to the parser.
	Code   int
	Reason string
	Text   string
	// Drop discards the datagram without an answer (an ACK: RFC 3261 §17.2.1).
	Drop bool
	// Method is the request method, when the request line has one.
	Method string
}

// CheckDatagram checks the request line and the framing of one UDP datagram, the parts that
// make sipgo's parser drop a request silently although a response can be formed: more or
// fewer than two SP in the request line (RFC 4475 lwsstart, lwsruri, trws: 400), "<" or ">"
// in the Request-URI (ltgtruri: 400), a scheme other than sip or sips (novelsc: 416, R18),
// an IPv6 host without brackets (RFC 5118 ipv6-bad: 400), and a Content-Length longer than
// the datagram's body (clerr: 400, RFC 3261 §18.3). Responses and keep-alives pass. It reads
// the start line and the header names only and does not allocate.
func CheckDatagram(data []byte) Verdict {
	eol := bytes.Index(data, crlf)
	if eol <= 0 || bytes.HasPrefix(data, sipSlash) {
		return Verdict{} // a keep-alive, a response, or no line at all: the parser decides
	}
	if v := checkRequestLine(data[:eol]); v.Code != 0 || v.Drop {
		return v
	}
	if bodyShort(data[eol+2:]) {
		if bytes.HasPrefix(data, []byte("ACK ")) {
			return Verdict{Drop: true, Method: "ACK"}
		}
		return Verdict{Code: 400, Reason: "Bad Request", Text: "Content-Length larger than the datagram's body", Method: methodOf(data[:eol])}
	}
	return Verdict{}
}

// methodOf is the method of a request line (allocates: refusal path only).
func methodOf(line []byte) string {
	m, _, _ := bytes.Cut(line, []byte(" "))
	return string(m)
}

// checkRequestLine checks a request line (without its CRLF): two single SP, a Request-URI
// without "<" or ">", a sip or sips scheme, a bracketed IPv6 host. A line that is not a SIP
// request line at all passes: sipgo's parser drops or refuses it.
func checkRequestLine(line []byte) Verdict {
	if bytes.HasPrefix(line, sipSlash) {
		return Verdict{} // a status line
	}
	trimmed := bytes.TrimRight(line, " \t")
	sp1 := bytes.IndexByte(trimmed, ' ')
	spL := bytes.LastIndexByte(trimmed, ' ')
	if sp1 <= 0 || spL <= sp1 || !bytes.HasPrefix(trimmed[spL+1:], sipSlash) {
		return Verdict{} // not a SIP request line; the parser drops it
	}
	method, uri := trimmed[:sp1], trimmed[sp1+1:spL]
	isAck := bytes.Equal(method, []byte("ACK"))
	refuse := func(code int, reason, text string) Verdict {
		if isAck {
			return Verdict{Drop: true, Method: "ACK"}
		}
		return Verdict{Code: code, Reason: reason, Text: text, Method: string(method)}
	}
	bad := func(text string) Verdict { return refuse(400, "Bad Request", text) }
	switch {
	case len(trimmed) != len(line) || len(uri) == 0 || bytes.IndexByte(uri, ' ') >= 0 || bytes.IndexByte(line, '\t') >= 0:
		return bad("malformed Request-Line")
	case bytes.IndexByte(uri, '<') >= 0 || bytes.IndexByte(uri, '>') >= 0:
		return bad("Request-URI in angle brackets")
	}
	colon := bytes.IndexByte(uri, ':')
	if colon <= 0 {
		return bad("Request-URI without a scheme")
	}
	scheme := uri[:colon]
	if !bytes.EqualFold(scheme, []byte("sip")) && !bytes.EqualFold(scheme, []byte("sips")) {
		return refuse(416, "Unsupported URI Scheme", "Request-URI scheme is not sip or sips") // R18
	}
	if !hostOK(uri[colon+1:]) {
		return bad("IPv6 host without brackets in the Request-URI")
	}
	return Verdict{}
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
	sipSlash = []byte("SIP/")
)

// hostOK reports whether the hostport of a sip/sips URI (after "sip:") is not an IPv6
// address without its brackets (RFC 5118 §4.2).
func hostOK(s []byte) bool {
	if i := bytes.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	if i := bytes.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	return len(s) == 0 || s[0] == '[' || bytes.Count(s, []byte(":")) <= 1
}

// bodyShort reports whether the single Content-Length of the header section in data (the
// bytes after the start line) is larger than the body that follows it in the datagram.
// Several or malformed Content-Length headers are left to Request (400).
func bodyShort(data []byte) bool {
	body, cl := frameHead(data)
	return body >= 0 && cl > len(data)-body
}

// frameHead scans the header section in data (the bytes after the start line). It returns
// the offset of the body, just after the empty line, or -1 when the section is incomplete or
// a line ends in a bare LF; and the value of its one Content-Length, or -1 when there is
// none, several, or one that is not a number.
func frameHead(data []byte) (body, cl int) {
	cl, found := -1, 0
	for off := 0; ; {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return -1, -1
		}
		l := data[off : off+i]
		off += i + 1
		if len(l) == 0 || l[len(l)-1] != '\r' {
			return -1, -1
		}
		l = l[:len(l)-1]
		if len(l) == 0 {
			if found != 1 {
				cl = -1
			}
			return off, cl
		}
		if l[0]|0x20 != 'c' && l[0]|0x20 != 'l' {
			continue // cheap test first: most header lines are not Content-Length
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		found++
		n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
		if err != nil || n < 0 {
			n = -1
			found++ // a malformed value: no usable length
		}
		cl = n
	}
}

// WrapPacketConn wraps the UDP socket that sipgo reads: each datagram goes through
// CheckDatagram first, and one it refuses is answered here (to its source address and port,
// since its Via may not be trustworthy) or dropped, and never reaches sipgo.
func WrapPacketConn(c net.PacketConn, cfg WireConfig) net.PacketConn {
	if cfg.WarnAgent == "" {
		cfg.WarnAgent = "sipsvc"
	}
	return &packetConn{PacketConn: c, cfg: cfg}
}

type packetConn struct {
	net.PacketConn
	cfg WireConfig
}

// ReadFrom returns the next datagram CheckDatagram passes.
func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := p.PacketConn.ReadFrom(b)
		if err != nil || n == 0 {
			return n, addr, err
		}
		v := CheckDatagram(b[:n])
		if v.Code == 0 && !v.Drop {
			return n, addr, nil
		}
		var res []byte
		if !v.Drop {
			res = Response(b[:n], v, p.cfg)
		}
		if p.cfg.OnRefuse != nil {
			code := 0
			if res != nil {
				code = v.Code
			}
			p.cfg.OnRefuse(v.Method, code) // before the answer: whoever sees it sees it counted
		}
		if res != nil {
			_, _ = p.PacketConn.WriteTo(res, addr) // a lost answer is like a lost datagram
		}
	}
}

// WriteTo writes a datagram, unless it is a request larger than WireConfig.MaxRequest: the
// check costs a length comparison on bytes already formatted, where counting the message
// before handing it to the stack would format it twice.
func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if p.cfg.MaxRequest > 0 && len(b) > p.cfg.MaxRequest && !bytes.HasPrefix(b, sipSlash) {
		return 0, &RequestSizeError{Method: methodOf(b), Size: len(b), Limit: p.cfg.MaxRequest, Cause: p.cfg.SizeCause}
	}
	return p.PacketConn.WriteTo(b, addr)
}

// Response forms the response of a Verdict to the request in data, statelessly: the status
// line, the request's Via, From, To, Call-ID and CSeq lines as received (RFC 3261 §8.2.6.2),
// a Warning with the Verdict's text, Server, and Content-Length 0. It returns nil when the
// request has no Via, Call-ID or CSeq to copy: a peer could not match such a response.
// Header lines with control characters are not copied.
func Response(data []byte, v Verdict, cfg WireConfig) []byte {
	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		return nil
	}
	first := bytes.Index(data, crlf)
	out := make([]byte, 0, 512)
	out = append(out, "SIP/2.0 "...)
	out = strconv.AppendInt(out, int64(v.Code), 10)
	out = append(out, ' ')
	out = append(out, v.Reason...)
	out = append(out, crlf...)
	var via, callID, cseq bool
	hdrs := data[first+2 : end+2]
	copying := false
	for len(hdrs) > 0 {
		i := bytes.Index(hdrs, crlf)
		if i < 0 {
			break
		}
		l := hdrs[:i]
		hdrs = hdrs[i+2:]
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			if copying && printable(l) {
				out = append(out, l...)
				out = append(out, crlf...)
			}
			continue
		}
		copying = false
		name, _, ok := bytes.Cut(l, []byte(":"))
		if !ok || !printable(l) {
			continue
		}
		switch n := string(bytes.ToLower(bytes.TrimRight(name, " \t"))); n {
		case "via", "v":
			via = true
		case "call-id", "i":
			callID = true
		case "cseq":
			cseq = true
		case "from", "f", "to", "t":
		default:
			continue
		}
		copying = true
		out = append(out, l...)
		out = append(out, crlf...)
	}
	if !via || !callID || !cseq {
		return nil
	}
	if v.Text != "" {
		out = append(out, "Warning: 399 "...)
		out = append(out, cfg.WarnAgent...)
		out = append(out, ' ')
		out = strconv.AppendQuote(out, v.Text)
		out = append(out, crlf...)
	}
	if cfg.Server != "" {
		out = append(out, "Server: "...)
		out = append(out, cfg.Server...)
		out = append(out, crlf...)
	}
	return append(out, "Content-Length: 0\r\n\r\n"...)
}

// printable reports whether a header line has no control characters but HTAB.
func printable(l []byte) bool {
	for _, c := range l {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
