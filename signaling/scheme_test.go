package signaling

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// okRegistrar answers every REGISTER it is handed with 200, so that a refusal can only come
// from the edge check in front of it.
type okRegistrar struct{}

func (okRegistrar) ServeRegister(_ context.Context, req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// TestSchemeEveryMethod checks issue 13 over real UDP sockets: every method, not only INVITE,
// gets 416 for a Request-URI scheme other than sip/sips (R18) and 480 with Warning 380 for a
// sips Request-URI over a non-TLS transport (R4, P11); ACK gets no answer at all.
func TestSchemeEveryMethod(t *testing.T) {
	tests := []struct {
		name, file string
		want       string // status code, or "none"
	}{
		{"R18_OPTIONS_tel_416", "options_tel.sip", "416"},
		{"R18_MESSAGE_tel_416", "message_tel.sip", "416"},
		{"R18_REGISTER_tel_416", "register_tel.sip", "416"},
		{"R18_SUBSCRIBE_tel_416", "subscribe_tel.sip", "416"},
		{"R4_P11_OPTIONS_sips_over_UDP_480", "options_sips.sip", "480"},
		{"R4_P11_MESSAGE_sips_over_UDP_480", "message_sips.sip", "480"},
		{"R4_P11_REGISTER_sips_over_UDP_480", "register_sips.sip", "480"},
		{"R4_P11_SUBSCRIBE_sips_over_UDP_480", "subscribe_sips.sip", "480"},
		{"ACK_sips_dropped", "ack_sips.sip", "none"},
		{"ACK_tel_dropped", "ack_tel.sip", "none"},
		{"OPTIONS_sip_200", "options_sip.sip", "200"},
	}
	b := startB2BUA(t, func(c *Config) { c.Registrar = okRegistrar{} })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "scheme", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tc.want == "none" {
				wait = 300 * time.Millisecond
			}
			got := sendRawUDP(t, b.udp, data, wait)
			if got.String() != tc.want {
				t.Fatalf("answer %s, want %s", got, tc.want)
			}
			if got.code == 480 {
				w := got.res.GetHeader("Warning")
				if w == nil || w.Value() != `380 sipsvc "SIPS Not Allowed"` {
					t.Errorf("Warning %v, want 380 sipsvc \"SIPS Not Allowed\"", w)
				}
			}
		})
	}
}

// countingMetrics records the messages counted in and out.
type countingMetrics struct {
	mu      sync.Mutex
	in, out []string
}

func (m *countingMetrics) MessageIn(method string, status int, transport string) {
	m.mu.Lock()
	m.in = append(m.in, fmt.Sprintf("%s %d %s", method, status, transport))
	m.mu.Unlock()
}

func (m *countingMetrics) MessageOut(method string, status int, transport string) {
	m.mu.Lock()
	m.out = append(m.out, fmt.Sprintf("%s %d %s", method, status, transport))
	m.mu.Unlock()
}

func (m *countingMetrics) TLSHandshake(string, string)       {}
func (m *countingMetrics) RoutingDone(time.Duration, string) {}
func (m *countingMetrics) has(list *[]string, want string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(*list, want)
}

// TestRefusalsCounted checks that refusals are counted like any other message: one refused
// before parsing (the request-line check, UDP and TCP) and one refused by the request check.
func TestRefusalsCounted(t *testing.T) {
	m := &countingMetrics{}
	b := startB2BUA(t, func(c *Config) { c.Metrics = m })
	ltgt := readTorture(t, "rfc4475/ltgtruri.dat")
	if got := sendRawUDP(t, b.udp, withRport(ltgt), 2*time.Second); got.code != 400 {
		t.Fatalf("ltgtruri over UDP: %s", got)
	}
	if got := sendRawTCP(t, b.tcp, ltgt, 2*time.Second); got.code != 400 {
		t.Fatalf("ltgtruri over TCP: %s", got)
	}
	tel, err := os.ReadFile(filepath.Join("testdata", "scheme", "options_tel.sip"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sendRawTCP(t, b.tcp, tel, 2*time.Second); got.code != 416 {
		t.Fatalf("OPTIONS tel: over TCP: %s", got)
	}
	for _, want := range []string{"INVITE 0 UDP", "INVITE 0 TCP", "OPTIONS 0 TCP"} {
		if !m.has(&m.in, want) {
			t.Errorf("no message in %q; got %v", want, m.in)
		}
	}
	for _, want := range []string{"INVITE 400 UDP", "INVITE 400 TCP", "OPTIONS 416 TCP"} {
		if !m.has(&m.out, want) {
			t.Errorf("no message out %q; got %v", want, m.out)
		}
	}
}
