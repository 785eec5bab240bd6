package connlimit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxConns         = 10000
	DefaultMaxPerSource     = 100
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultMessageTimeout   = 30 * time.Second
)

// Reasons passed to Config.OnClose.
const (
	ReasonMaxConns         = "max_conns"
	ReasonMaxPerSource     = "max_per_source"
	ReasonHandshakeTimeout = "handshake_timeout"
	ReasonHandshakeFailed  = "handshake_failed"
	ReasonIdleTimeout      = "idle_timeout"
	ReasonMessageTimeout   = "message_timeout"
)

// Config configures a Listener. Zero values take the defaults above; WithDefaults fills them.
type Config struct {
	// MaxConns caps the connections held at once, all sources together.
	MaxConns int
	// MaxPerSource caps the connections held at once from one source IP address.
	MaxPerSource int
	// HandshakeTimeout bounds the TLS handshake, from accept (TLS listeners only).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection on which nothing arrived for this long between
	// messages. RFC 5626 keep-alives (CRLF) count as traffic.
	IdleTimeout time.Duration
	// MessageTimeout bounds the time from the first byte of a SIP message to its last.
	MessageTimeout time.Duration
	// TLS, when set, makes the Listener a TLS server with this configuration.
	TLS *tls.Config
	// OnClose, when set, is called once for each connection refused or closed by a cap or
	// deadline, with one of the Reason constants. It must not block.
	OnClose func(reason string)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxPerSource == 0 {
		c.MaxPerSource = DefaultMaxPerSource
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MessageTimeout == 0 {
		c.MessageTimeout = DefaultMessageTimeout
	}
	return c
}

// Validate reports the first field that is out of range, naming it.
func (c Config) Validate() error {
	switch {
	case c.MaxConns < 0:
		return fmt.Errorf("max_conns %d: must not be negative", c.MaxConns)
	case c.MaxPerSource < 0:
		return fmt.Errorf("max_conns_per_source %d: must not be negative", c.MaxPerSource)
	case c.MaxConns > 0 && c.MaxPerSource > c.MaxConns:
		return fmt.Errorf("max_conns_per_source %d: above max_conns %d", c.MaxPerSource, c.MaxConns)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("handshake_timeout %s: must not be negative", c.HandshakeTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle_timeout %s: must not be negative", c.IdleTimeout)
	case c.MessageTimeout < 0:
		return fmt.Errorf("message_timeout %s: must not be negative", c.MessageTimeout)
	}
	return nil
}

// Limiter holds the caps shared by the listeners it wraps: MaxConns and MaxPerSource count
// the connections of all of them together.
type Limiter struct {
	cfg Config

	mu sync.Mutex // guards the fields below
	// total and bySource count the connections handed out and not yet closed.
	total    int
	bySource map[string]int
}

// NewLimiter returns a Limiter; cfg is completed with WithDefaults. Its TLS and OnClose
// fields are ignored: each wrapped listener has its own.
func NewLimiter(cfg Config) *Limiter {
	return &Limiter{cfg: cfg.WithDefaults(), bySource: map[string]int{}}
}

// Conns returns the number of connections held now by all listeners of the Limiter.
func (lim *Limiter) Conns() int {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	return lim.total
}

// Wrap returns l under the Limiter's caps and deadlines; tlsCfg makes it a TLS server,
// onClose (may be nil) receives its refusals and timeouts.
func (lim *Limiter) Wrap(l net.Listener, tlsCfg *tls.Config, onClose func(reason string)) *Listener {
	return &Listener{Listener: l, lim: lim, cfg: lim.cfg, tls: tlsCfg, onClose: onClose}
}

// Listener wraps a stream listener with the caps and deadlines of its Limiter.
type Listener struct {
	net.Listener
	lim     *Limiter
	cfg     Config
	tls     *tls.Config
	onClose func(reason string)
}

// NewListener wraps l with a Limiter of its own, cfg.TLS and cfg.OnClose.
func NewListener(l net.Listener, cfg Config) *Listener {
	return NewLimiter(cfg).Wrap(l, cfg.TLS, cfg.OnClose)
}

// Accept returns the next connection within the caps; connections over a cap are closed
// at once and reported.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if reason := l.lim.admit(src); reason != "" {
			l.report(reason) // before Close: whoever sees the close sees the count
			_ = c.Close()
			continue
		}
		return l.wrap(c, src), nil
	}
}

// Conns returns the number of connections held now by all listeners of l's Limiter.
func (l *Listener) Conns() int { return l.lim.Conns() }

func (lim *Limiter) admit(src string) string {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if lim.total >= lim.cfg.MaxConns {
		return ReasonMaxConns
	}
	if lim.bySource[src] >= lim.cfg.MaxPerSource {
		return ReasonMaxPerSource
	}
	lim.total++
	lim.bySource[src]++
	return ""
}

func (lim *Limiter) release(src string) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	lim.total--
	if n := lim.bySource[src] - 1; n > 0 {
		lim.bySource[src] = n
	} else {
		delete(lim.bySource, src)
	}
}

func (l *Listener) report(reason string) {
	if l.onClose != nil {
		l.onClose(reason)
	}
}

func (l *Listener) wrap(c net.Conn, src string) net.Conn {
	w := &conn{Conn: c, l: l, src: src}
	if l.tls != nil {
		tc := tls.Server(c, l.tls)
		w.Conn = tc
		w.tls = tc
	}
	return w
}

func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// conn applies the deadlines. Read is called by one goroutine (the connection's reader);
// Close may come from any goroutine.
type conn struct {
	net.Conn
	l   *Listener
	src string
	tls *tls.Conn // nil for plain TCP

	// Owned by the reading goroutine.
	handshaken bool
	fr         framer
	msgStart   time.Time

	closeOnce sync.Once
}

// ErrHandshakeTimeout is returned by Read when the TLS handshake missed its deadline.
var ErrHandshakeTimeout = errors.New("connlimit: TLS handshake timed out")

func (c *conn) Read(b []byte) (int, error) {
	cfg := &c.l.cfg
	if c.tls != nil && !c.handshaken {
		_ = c.Conn.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
		_ = c.Conn.SetWriteDeadline(time.Now().Add(cfg.HandshakeTimeout))
		if err := c.tls.Handshake(); err != nil {
			if isTimeout(err) {
				c.l.report(ReasonHandshakeTimeout)
				return 0, fmt.Errorf("%w: %w", ErrHandshakeTimeout, err)
			}
			c.l.report(ReasonHandshakeFailed)
			return 0, err
		}
		_ = c.Conn.SetWriteDeadline(time.Time{})
		c.handshaken = true
	}
	mid := c.fr.inMessage()
	if mid {
		_ = c.Conn.SetReadDeadline(c.msgStart.Add(cfg.MessageTimeout))
	} else {
		_ = c.Conn.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		if c.fr.feed(b[:n]) {
			// A message began in this read and is not complete: its deadline starts now.
			c.msgStart = time.Now()
		}
	}
	if err != nil && isTimeout(err) {
		if mid {
			c.l.report(ReasonMessageTimeout)
		} else {
			c.l.report(ReasonIdleTimeout)
		}
	}
	return n, err
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() { c.l.lim.release(c.src) })
	return c.Conn.Close()
}

// NetConn returns the wrapped connection (the *tls.Conn on a TLS listener).
func (c *conn) NetConn() net.Conn { return c.Conn }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TLSConn finds the *tls.Conn under c: c itself, or the connection of a TLS Listener
// (looking through wrappers that expose NetConn). Code that reads the peer's certificate
// from a connection uses it instead of a type assertion.
func TLSConn(c net.Conn) (*tls.Conn, bool) {
	for range 4 {
		if tl, ok := c.(*tls.Conn); ok {
			return tl, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok || w.NetConn() == nil {
			return nil, false
		}
		c = w.NetConn()
	}
	return nil, false
}
