package siptest

import (
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/devcert"
)

// PKI is the test certificate (for 127.0.0.1 and localhost) of every TLS listener in the
// tests; every TLS client in the tests trusts it.
var PKI = func() devcert.Pair {
	p, err := devcert.Generate("sipsvc test", []string{"127.0.0.1", "localhost"})
	if err != nil {
		panic(err)
	}
	return p
}()

// ServerTLS returns a server TLS configuration with the PKI's certificate.
func ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := PKI.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// ClientTLS returns a client TLS configuration that trusts the PKI.
func ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: PKI.Pool(), MinVersion: tls.VersionTLS12}
}

// Quiet is a logger that discards everything.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Logger returns a debug logger to stderr when SIPSVC_TEST_LOG is set, else Quiet.
func Logger() *slog.Logger {
	if os.Getenv("SIPSVC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Quiet
}

// SDP is an offer/answer body; tests check it passes through unchanged.
const SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

// Must fails the test on a non-nil error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Header returns the value of a message's header, or "".
func Header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// NoopBuild is the request builder passed to sipgo for requests built in full by the caller.
func NoopBuild(*sipgo.Client, *sip.Request) error { return nil }
