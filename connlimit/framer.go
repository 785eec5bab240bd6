package connlimit

import (
	"bytes"
	"strconv"
)

// maxHeader bounds the header bytes the framer keeps to find Content-Length. A longer header
// block is the parser's to refuse; the framer then assumes no body.
const maxHeader = 64 << 10

// framer follows SIP message boundaries on a stream (RFC 3261 §18.3: headers end at an empty
// line, then Content-Length bytes of body) just enough to tell whether a message is in
// progress. CRLFs between messages (RFC 5626 keep-alives) do not start a message.
type framer struct {
	state   int // stIdle, stHeaders, stBody
	hdr     []byte
	tail    uint32 // last bytes seen in headers, to find CRLFCRLF across reads
	body    int    // body bytes still to come
	started bool   // a message began during the last feed
}

const (
	stIdle = iota
	stHeaders
	stBody
)

func (f *framer) inMessage() bool { return f.state != stIdle }

// feed consumes p and reports whether a message that began in p is still incomplete.
func (f *framer) feed(p []byte) bool {
	f.started = false
	for len(p) > 0 {
		switch f.state {
		case stIdle:
			i := 0
			for i < len(p) && (p[i] == '\r' || p[i] == '\n') {
				i++
			}
			p = p[i:]
			if len(p) > 0 {
				f.state, f.hdr, f.tail, f.started = stHeaders, f.hdr[:0], 0, true
			}
		case stHeaders:
			end := -1
			for i, b := range p {
				f.tail = f.tail<<8 | uint32(b)
				if f.tail == 0x0d0a0d0a || f.tail&0xffff == 0x0a0a {
					end = i + 1
					break
				}
			}
			chunk := p
			if end >= 0 {
				chunk = p[:end]
			}
			if room := maxHeader - len(f.hdr); room > 0 {
				f.hdr = append(f.hdr, chunk[:min(room, len(chunk))]...)
			}
			if end < 0 {
				return f.started
			}
			p = p[end:]
			if n := contentLength(f.hdr); n > 0 {
				f.state, f.body = stBody, n
			} else {
				f.state = stIdle
				f.started = false
			}
		case stBody:
			n := min(f.body, len(p))
			f.body -= n
			p = p[n:]
			if f.body == 0 {
				f.state = stIdle
				f.started = false
			}
		}
	}
	return f.started && f.state != stIdle
}

// contentLength finds Content-Length (or its compact form l) in a header block; 0 when it is
// absent or not a number.
func contentLength(h []byte) int {
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		name, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	return 0
}
