package sipcheck

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// maxFrame bounds the bytes a stream connection buffers for one message: more than that and
// the connection falls back to handing bytes through unchecked (sipgo then refuses the
// oversized message and closes the connection).
const maxFrame = 65535

// defaultDrainWait bounds how long the end of a connection's input is held back from sipgo
// while requests it was handed still await their final response (see WrapConn).
const defaultDrainWait = 2 * time.Second

// WrapListener wraps a stream (TCP or TLS) listener so that every connection it accepts goes through
// WrapConn.
func WrapListener(l net.Listener, cfg WireConfig) net.Listener {
	if cfg.WarnAgent == "" {
		cfg.WarnAgent = "sipsvc"
	}
	if cfg.DrainWait <= 0 {
		cfg.DrainWait = defaultDrainWait
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
//
// sipgo closes a connection as soon as its reader sees the end of the input (the peer closed,
// a read error) or bytes it cannot frame, even when requests it read before are still being
// answered; their responses would then be lost, or sipgo would dial the peer anew to send
// them. So the end of the input, and the first bytes handed through unchecked, are held back
// until every request handed to sipgo on the connection has had a final response written on
// it (RFC 3261 §18.2.2: the response goes back over the connection the request came on), or
// DrainWait has passed, or the connection is closed.
func WrapConn(c net.Conn, cfg WireConfig) net.Conn {
	if cfg.DrainWait <= 0 {
		cfg.DrainWait = defaultDrainWait
	}
	return &streamConn{Conn: c, cfg: cfg, done: make(chan struct{})}
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
	drained bool     // the end of the checked input waited for pending responses once

	wmu sync.Mutex // serialises Write: sipgo's responses and our refusals

	pmu sync.Mutex // guards pending and idle
	// pending counts the requests (ACK aside) handed to sipgo that have not had a final
	// response written yet; idle, when not nil, is closed when pending drops to zero.
	pending int
	idle    chan struct{}

	done      chan struct{} // closed by Close
	closeOnce sync.Once
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
			c.drain()
			if c.rerr == io.EOF && len(c.in) > 0 {
				c.out, c.in = append(c.out, c.in), nil // let sipgo see the partial rest
				continue
			}
			return 0, c.rerr
		}
		if c.through {
			c.drain() // sipgo may close the connection on what follows
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
		}
	}
}

// drain waits, the first time it is called, until every request handed to sipgo has had its
// final response written, DrainWait has passed, or the connection is closed. Read calls it
// once all the framed messages were handed out: sipgo has then passed each of them on (it
// does so before it reads again), so their answers are on their way.
func (c *streamConn) drain() {
	if c.drained {
		return
	}
	c.drained = true
	c.pmu.Lock()
	if c.pending == 0 {
		c.pmu.Unlock()
		return
	}
	idle := make(chan struct{})
	c.idle = idle
	c.pmu.Unlock()
	t := time.NewTimer(c.cfg.DrainWait)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	case <-c.done:
	}
}

// handOut passes a framed message to sipgo, counting it when it is a request that expects a
// response (not an ACK).
func (c *streamConn) handOut(msg []byte, startLine []byte) {
	c.out = append(c.out, msg)
	if !expectsResponse(startLine) {
		return
	}
	c.pmu.Lock()
	c.pending++
	c.pmu.Unlock()
}

// answered counts a final response written on the connection.
func (c *streamConn) answered() {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pending == 0 {
		return // more final responses than requests (a retransmission): nothing waits
	}
	if c.pending--; c.pending == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
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
			c.handOut(msg, msg[:eol])
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
			_, _ = c.write(res) // a write error surfaces on sipgo's next read or write
		}
	}
}

// Write writes to the connection; it is safe to call while frame answers a refusal. A final
// response written completely answers one pending request (see WrapConn).
func (c *streamConn) Write(p []byte) (int, error) {
	n, err := c.write(p)
	if err == nil && isFinal(p) {
		c.answered()
	}
	return n, err
}

func (c *streamConn) write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

// NetConn returns the wrapped connection, so that code reading a TLS peer's certificate
// finds the *tls.Conn under a framed TLS connection (connlimit.TLSConn unwraps NetConn).
func (c *streamConn) NetConn() net.Conn { return c.Conn }

// Close closes the connection and ends a wait for pending responses.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// expectsResponse reports whether a start line is that of a request other than ACK (RFC 3261
// §17.2.1: an ACK is never answered).
func expectsResponse(line []byte) bool {
	if bytes.HasPrefix(line, sipSlash) {
		return false // a response
	}
	m, _, ok := bytes.Cut(line, []byte(" "))
	return ok && len(m) > 0 && !bytes.EqualFold(m, []byte("ACK"))
}

// isFinal reports whether p starts with the status line of a final response (2xx to 6xx).
func isFinal(p []byte) bool {
	return len(p) > 9 && bytes.HasPrefix(p, []byte("SIP/2.0 ")) && '2' <= p[8] && p[8] <= '6'
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
