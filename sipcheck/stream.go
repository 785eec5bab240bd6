package sipcheck

import (
	"bytes"
	"io"
	"net"
	"sync"
)

// maxFrame bounds the bytes a stream connection buffers for one message: more than that and
// the connection falls back to handing bytes through unchecked (sipgo then refuses the
// oversized message and closes the connection).
const maxFrame = 65535

// WrapListener wraps a TCP listener so that every connection it accepts goes through
// WrapConn.
func WrapListener(l net.Listener, cfg WireConfig) net.Listener {
	if cfg.WarnAgent == "" {
		cfg.WarnAgent = "sipsvc"
	}
	return &listener{Listener: l, cfg: cfg}
}

type listener struct {
	net.Listener
	cfg WireConfig
}

// Accept returns the next connection, wrapped.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return WrapConn(c, l.cfg), nil
}

// WrapConn wraps a stream connection that sipgo reads: it frames the messages by their
// Content-Length (RFC 3261 §18.3) and checks each request line as CheckDatagram does. A
// request it refuses is answered on the connection (or, an ACK, dropped) and skipped, so the
// connection stays open, where sipgo would close it. A message without a usable
// Content-Length, or larger than 64 KiB, switches the connection to handing bytes through
// unchecked: sipgo then applies its own framing rules (and closes the connection).
func WrapConn(c net.Conn, cfg WireConfig) net.Conn {
	return &streamConn{Conn: c, cfg: cfg}
}

type streamConn struct {
	net.Conn
	cfg WireConfig

	// Read state: sipgo reads a connection from one goroutine.
	buf     [4096]byte
	in      []byte   // bytes read and not yet framed
	store   []byte   // the buffer c.in starts in when it empties
	out     [][]byte // framed segments for the reader, in order; never merged
	through bool     // framing gave up: bytes pass unchecked
	rerr    error    // read error to return once out is drained

	wmu sync.Mutex // serialises Write: sipgo's responses and our refusals
}

// Read returns the next framed bytes: at most one segment (a message, or keep-alive CRLFs)
// per call, so that sipgo sees a keep-alive ping on its own.
func (c *streamConn) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out[0])
			if c.out[0] = c.out[0][n:]; len(c.out[0]) == 0 {
				c.out[0] = nil
				c.out = c.out[1:]
			}
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.through {
			if len(c.in) > 0 {
				c.out, c.in = append(c.out, c.in), nil
				continue
			}
			return c.Conn.Read(p)
		}
		n, err := c.Conn.Read(c.buf[:])
		if n > 0 {
			c.feed(c.buf[:n])
		}
		if err != nil {
			c.rerr = err
			if err == io.EOF && len(c.in) > 0 {
				c.out, c.in = append(c.out, c.in), nil // let sipgo see the partial rest
			}
		}
	}
}

// feed appends read bytes to c.in and frames them. c.out is empty when it is called (Read
// only reads once its segments are handed out), so when c.in is empty too nothing refers to
// the buffer any more and it is reused.
func (c *streamConn) feed(b []byte) {
	if len(c.in) == 0 {
		c.in = c.store[:0]
	}
	c.in = append(c.in, b...)
	if len(c.in) == len(b) {
		c.store = c.in[:0] // keep the (possibly grown) buffer for the next time
	}
	c.frame()
}

// frame moves the complete messages at the start of c.in to c.out, answering and skipping
// the refused ones.
func (c *streamConn) frame() {
	for len(c.in) > 0 {
		// Keep-alive CRLFs (RFC 5626 §3.5.1) pass as their own segment.
		k := 0
		for k+1 < len(c.in) && c.in[k] == '\r' && c.in[k+1] == '\n' {
			k += 2
		}
		if k > 0 {
			c.out, c.in = append(c.out, c.in[:k:k]), c.in[k:]
			continue
		}
		eol := bytes.Index(c.in, crlf)
		if eol < 0 {
			if len(c.in) > maxFrame {
				c.through = true
			}
			return
		}
		body, cl := frameHead(c.in[eol+2:])
		if body < 0 {
			if len(c.in) > maxFrame || bytes.Contains(c.in, []byte("\n\r\n")) {
				c.through = true // an oversized head, or an empty line after a bare LF: sipgo decides
			}
			return
		}
		if cl < 0 || eol+2+body+cl > maxFrame {
			c.through = true // no usable Content-Length (§18.3): sipgo decides
			return
		}
		size := eol + 2 + body + cl
		if len(c.in) < size {
			return // wait for the rest of the body
		}
		msg := c.in[:size:size]
		c.in = c.in[size:]
		if bytes.HasPrefix(msg, sipSlash) && !statusLineOK(msg[:eol]) {
			continue // a response that cannot be parsed is discarded (RFC 3261 §18.1.2, RFC 4475 bigcode)
		}
		v := checkRequestLine(msg[:eol])
		if v.Code == 0 && !v.Drop {
			c.out = append(c.out, msg)
			continue
		}
		var res []byte
		if !v.Drop {
			res = Response(msg, v, c.cfg)
		}
		if c.cfg.OnRefuse != nil {
			code := 0
			if res != nil {
				code = v.Code
			}
			c.cfg.OnRefuse(v.Method, code) // before the answer: whoever sees it sees it counted
		}
		if res != nil {
			_, _ = c.Write(res) // a write error surfaces on sipgo's next read or write
		}
	}
}

// Write writes to the connection; it is safe to call while frame answers a refusal.
func (c *streamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// statusLineOK reports whether a status line has the form "SIP/2.0 ddd reason", with a
// status code from 100 to 699 (RFC 3261 §7.2, §21).
func statusLineOK(line []byte) bool {
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return false
	}
	return '1' <= rest[0] && rest[0] <= '6' && '0' <= rest[1] && rest[1] <= '9' && '0' <= rest[2] && rest[2] <= '9'
}
