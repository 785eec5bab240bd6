package signaling

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/internal/siptest"
)

// Shared test helpers (internal/siptest) under this package's names.
const testSDP = siptest.SDP

var (
	serverTLS  = siptest.ServerTLS
	clientTLS  = siptest.ClientTLS
	testLogger = siptest.Logger
	must       = siptest.Must
	hdr        = siptest.Header
)

// memDir is an in-memory Directory for tests.
type memDir struct {
	mu       sync.Mutex
	dns      map[string]dn.DN
	bindings map[string][]dn.Binding
}

func newMemDir(dns ...dn.DN) *memDir {
	m := &memDir{dns: map[string]dn.DN{}, bindings: map[string][]dn.Binding{}}
	for _, d := range dns {
		m.dns[d.Number] = d
	}
	return m
}

func (m *memDir) Lookup(_ context.Context, n string) (dn.DN, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dns[n]
	if !ok {
		return dn.DN{}, fmt.Errorf("lookup %s: %w", n, dn.ErrNotFound)
	}
	return d, nil
}

func (m *memDir) Bindings(_ context.Context, n string) ([]dn.Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]dn.Binding(nil), m.bindings[n]...), nil
}

func (m *memDir) put(d dn.DN) {
	m.mu.Lock()
	m.dns[d.Number] = d
	m.mu.Unlock()
}

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Observe(_ context.Context, ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

func (r *recorder) rewrites(leg string) map[string]Rewrite {
	out := map[string]Rewrite{}
	for _, e := range r.all() {
		if e.Kind == EventHeaderRewritten && e.Rewrite.Leg == leg {
			out[e.Rewrite.Header] = *e.Rewrite
		}
	}
	return out
}

func (r *recorder) decision(leg string) *LegDecision {
	for _, e := range r.all() {
		if e.Kind == EventLegSchemeDecided && e.Decision.Leg == leg {
			return e.Decision
		}
	}
	return nil
}

func (r *recorder) waitKind(t testing.TB, kind EventKind) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range r.all() {
			if e.Kind == kind {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s event; got %v", kind, r.all())
	return Event{}
}

// b2bua is a Server under test with its listen addresses.
type b2bua struct {
	s              *Server
	udp, tcp, tlsA string
	dir            *memDir
	rec            *recorder
}

func startB2BUA(t testing.TB, mut func(*Config), dns ...dn.DN) *b2bua {
	t.Helper()
	b := &b2bua{dir: newMemDir(dns...), rec: &recorder{}}
	cfg := Config{
		Hostname:    "127.0.0.1",
		ServerTLS:   serverTLS(t),
		ClientTLS:   clientTLS(),
		Directory:   b.dir,
		Observers:   []Observer{b.rec},
		Logger:      testLogger(),
		RingTimeout: 5 * time.Second,
	}
	if mut != nil {
		mut(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.s = s
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.udp, b.tcp, b.tlsA = u.LocalAddr().String(), tl.Addr().String(), sl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, Listeners{UDP: []net.PacketConn{u}, TCP: []net.Listener{tl}, TLS: []net.Listener{sl}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	// Wait until Serve is ready: a request sent before sipgo holds the UDP listener leaves
	// from a socket sipgo opens for it, which its Close does not always stop (goleak).
	for deadline := time.Now().Add(5 * time.Second); s.Ready() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b2bua not ready: %v", s.Ready())
		}
	}
	return b
}

func (b *b2bua) addr(transport string) string {
	switch strings.ToUpper(transport) {
	case "UDP":
		return b.udp
	case "TCP":
		return b.tcp
	}
	return b.tlsA
}

// phone is a test phone (siptest.Phone) answering with testSDP.
type phone struct{ *siptest.Phone }

// uac is a call placed by a phone.
type uac = siptest.UAC

func newPhone(t testing.TB, name, transport string) *phone {
	t.Helper()
	return &phone{siptest.NewPhone(t, name, transport, siptest.Options{})}
}

// inviteOpts shape the INVITE a phone sends.
type inviteOpts struct {
	ruri    string // full Request-URI
	from    string // From URI
	contact string // Contact URI
	headers []sip.Header
	noSDP   bool
}

// invite sends an INVITE to the B2BUA on the phone's transport (From display "<name> display").
func (p *phone) invite(b *b2bua, user string, o inviteOpts) *uac {
	p.T.Helper()
	if o.contact == "" {
		o.contact = fmt.Sprintf("sip:%s@%s", p.Name, p.Addr) + siptest.TransportParam(p.Transport)
	}
	return p.Invite(b.addr(p.Transport), user, siptest.InviteOptions{
		RURI: o.ruri, From: o.from, FromName: p.Name + " display", Contact: o.contact, Headers: o.headers, NoSDP: o.noSDP,
	})
}

// answerWith makes p answer every INVITE with the final status code and reason, with a To tag.
func answerWith(p *phone, code int, reason string) {
	p.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		res.To().Params.Add("tag", "bobtag")
		_ = tx.Respond(res)
	})
}

// benchCall places one call from alice through srv to bob (INVITE, 200, ACK, BYE) and waits
// until bob has received the n-th BYE: the loop body of the whole-call benchmarks.
func benchCall(b *testing.B, alice, bob *phone, srv *b2bua, n int) {
	call := alice.invite(srv, "6000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		b.Fatalf("call %d: final %d", n, res.StatusCode)
	}
	call.Ack()
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		b.Fatalf("call %d: BYE → %d", n, res.StatusCode)
	}
	waitCount(b, bob, sip.BYE, n, 5*time.Second)
}
