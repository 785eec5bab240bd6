package signaling

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sipsvc/sipsvc/connlimit"
)

// DefaultShutdownTimeout bounds the end of calls when Serve stops because its context was
// cancelled (Shutdown takes its own deadline).
const DefaultShutdownTimeout = 10 * time.Second

// Errors of Serve and Shutdown.
var (
	// ErrServerClosed: Serve was called after Shutdown, or a second time.
	ErrServerClosed = errors.New("signaling: server closed")
)

// lifecycle tracks Serve and Shutdown in the way net/http's Server does (inShutdown): once
// shutdown has begun, no goroutine is added to Server.wg, so waiting for it ends.
type lifecycle struct {
	mu sync.Mutex // guards the fields below
	// started: Serve was called; inShutdown: shutdown has begun (no new call goroutines).
	started    bool
	inShutdown bool
	// shutdownCtx bounds the end of calls; set by Shutdown, else DefaultShutdownTimeout.
	shutdownCtx context.Context
	// stop is closed when shutdown begins; done when Serve has returned.
	stop chan struct{}
	done chan struct{}
}

func newLifecycle() *lifecycle {
	return &lifecycle{stop: make(chan struct{}), done: make(chan struct{})}
}

// start marks Serve as running; a second Serve, or Serve after Shutdown, is refused.
func (lc *lifecycle) start() error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.started || lc.inShutdown {
		return ErrServerClosed
	}
	lc.started = true
	return nil
}

// begin starts shutdown (once) with ctx as its deadline and reports whether this call did.
func (lc *lifecycle) begin(ctx context.Context) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.inShutdown {
		return false
	}
	lc.inShutdown = true
	lc.shutdownCtx = ctx
	close(lc.stop)
	return true
}

func (lc *lifecycle) deadline() context.Context {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.shutdownCtx
}

// enter adds one goroutine to s.wg unless shutdown has begun; it reports whether it did.
// The caller calls s.wg.Done when the goroutine ends. Add and the shutdown flag change
// under one lock, so Shutdown's wait never races an Add.
func (s *Server) enter() bool {
	s.lc.mu.Lock()
	defer s.lc.mu.Unlock()
	if s.lc.inShutdown {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops the server: listeners close, new requests are no longer taken, calls in
// progress are ended (BYE or CANCEL) in parallel, and Serve returns. It waits until Serve has
// returned or ctx is done, whichever is first, and returns ctx's error in the second case.
// Shutdown before Serve makes a later Serve return ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.lc.mu.Lock()
	started := s.lc.started
	s.lc.mu.Unlock()
	s.lc.begin(ctx)
	if !started {
		return nil
	}
	select {
	case <-s.lc.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signaling: shutdown: %w", ctx.Err())
	}
}

// validateServe checks everything Serve needs before it starts any listener.
func (s *Server) validateServe(l Listeners) error {
	if len(l.UDP)+len(l.TCP)+len(l.TLS) == 0 {
		return errors.New("signaling: no listeners")
	}
	var errs []error
	for i, c := range l.UDP {
		if c == nil {
			errs = append(errs, fmt.Errorf("signaling: UDP listener %d is nil", i))
		}
	}
	for i, c := range l.TCP {
		if c == nil {
			errs = append(errs, fmt.Errorf("signaling: TCP listener %d is nil", i))
		}
	}
	for i, c := range l.TLS {
		if c == nil {
			errs = append(errs, fmt.Errorf("signaling: TLS listener %d is nil", i))
		}
	}
	if len(l.TLS) > 0 && s.cfg.ServerTLS == nil {
		errs = append(errs, errors.New("signaling: TLS listener without Config.ServerTLS"))
	}
	return errors.Join(errs...)
}

// limitListener wraps an inbound stream listener with the connection caps (shared by all
// TCP and TLS listeners: lim) and deadlines; tlsCfg is set for TLS listeners (the handshake
// then runs under HandshakeTimeout).
func (s *Server) limitListener(lim *connlimit.Limiter, l net.Listener, transport string, tlsCfg *tls.Config) net.Listener {
	var onClose func(string)
	if cm, ok := s.cfg.Metrics.(ConnMetrics); ok {
		onClose = func(reason string) { cm.ConnClosed(transport, reason) }
	}
	return lim.Wrap(l, tlsCfg, onClose)
}

// ConnMetrics is implemented by a Metrics that also counts inbound TCP/TLS connections
// refused over a cap or closed at a deadline (connlimit reasons: max_conns, max_per_source,
// handshake_timeout, handshake_failed, idle_timeout, message_timeout).
type ConnMetrics interface {
	ConnClosed(transport, reason string)
}

// endCalls ends every call in parallel, each bounded by ctx, and waits for all of them.
func (s *Server) endCalls(ctx context.Context) {
	calls := s.liveCalls()
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cancel()
			c.hangup(ctx, nil, "shutdown")
		}()
	}
	wg.Wait()
}

// waitCalls waits for the call goroutines until ctx is done and reports whether they ended.
func (s *Server) waitCalls(ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
