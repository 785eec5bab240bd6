package signaling

import (
	"crypto/tls"
	"debug/elf"
	"debug/gosym"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// dropMetrics counts what the edge reports; it implements Metrics and ResponseDropCounter.
type dropMetrics struct {
	countingMetrics
	drops atomic.Int64
}

func (m *dropMetrics) ResponseDropped(string, string) { m.drops.Add(1) }

// requestFromPort is an OPTIONS whose top Via names 127.0.0.1:port (no rport), the address
// sipgo dials when the request's connection is gone (RFC 3261 §18.2.2).
func requestFromPort(transport string, port, n int) []byte {
	id := "hangup-" + transport + "-" + strconv.Itoa(n)
	return []byte("OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " 127.0.0.1:" + strconv.Itoa(port) + ";branch=z9hG4bK" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:127.0.0.1>\r\n" +
		"From: <sip:hangup@127.0.0.1>;tag=" + id + "\r\n" +
		"Call-ID: " + id + "@127.0.0.1\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// TestNoDialOutForResponse: a peer that sends a request over TCP or TLS and closes the
// connection at once must not make sipsvc open a connection to the address its Via names
// (security: a peer must not make us dial out on its say-so). A listener on that address
// must see no connection within a second, and no dial may outlive the server (goleak in
// TestMain). Over TCP and TLS the framing holds the connection open until the response is
// written on it (or DrainWait passes); should sipgo still lose the race with the close, the
// dial it then tries is refused by responseDialer.
func TestNoDialOutForResponse(t *testing.T) {
	trap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer trap.Close()
	dialled := make(chan string, 64)
	go func() {
		for {
			c, err := trap.Accept()
			if err != nil {
				return
			}
			dialled <- c.RemoteAddr().String()
			_ = c.Close()
		}
	}()
	port := trap.Addr().(*net.TCPAddr).Port

	m := &dropMetrics{}
	b := startB2BUA(t, func(c *Config) { c.Metrics = m })
	const rounds = 10
	for i := range rounds {
		c, err := net.DialTimeout("tcp", b.tcp, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(requestFromPort("TCP", port, i)); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()

		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", b.tlsA, clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Write(requestFromPort("TLS", port, i)); err != nil {
			t.Fatal(err)
		}
		_ = tc.Close()
	}
	select {
	case from := <-dialled:
		t.Fatalf("sipsvc dialled the Via address of a request whose connection was gone (from %s)", from)
	case <-time.After(time.Second):
	}
	// The server still serves after the hang-ups.
	if got := sendRawTCP(t, b.tcp, aliveOPTIONS("TCP", 1), 2*time.Second); got.code != 200 {
		t.Errorf("OPTIONS after the hang-ups: %s, want 200", got)
	}
	t.Logf("response dials refused: %d", m.drops.Load())
}

// TestResponseDialerKnowsSipgo: responseDialer recognises sipgo's dials for responses by the
// name of the sipgo function that makes them. That function must exist in the binary, or the
// refusal would silently stop working after a sipgo upgrade.
func TestResponseDialerKnowsSipgo(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatalf("reading the test binary: %v", err)
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Fatal("the test binary has no .gopclntab or .text section")
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatal(err)
	}
	if tab.LookupFunc(sipgoServerConnection) == nil {
		t.Fatalf("%s is not in the binary: sipgo renamed it; update responseDialer", sipgoServerConnection)
	}
	if tab.LookupFunc(sipgoServerConnection+"x") != nil {
		t.Fatal("LookupFunc finds a function that does not exist")
	}
}
