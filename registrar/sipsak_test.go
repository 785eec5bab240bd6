package registrar_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sipsvc/sipsvc/registrar"
)

// TestSipsak_Register registers with sipsak (usrloc mode, digest) over UDP and TCP. It
// fails when sipsak is not installed (.ci/run installs it). sipsak 0.9.8 only knows MD5 and answers the first
// challenge, so this registrar offers MD5 first.
func TestSipsak_Register(t *testing.T) {
	sipsak, err := exec.LookPath("sipsak")
	if err != nil {
		// .ci/run installs it: a missing tool is a failure, not a skip.
		t.Fatalf("sipsak not installed (apt-get install sipsak): %v", err)
	}
	// With the default order (SHA-256 first) sipsak fails: "unsupported authentication
	// algorithm" — it does not skip to the next challenge as RFC 8760 §2.3 asks.
	h := newHarness(t, nil, func(c *registrar.Config) { c.Algorithms = []string{"MD5", "SHA-256"} })
	h.addDN("1000", "*", "secret")
	for _, tp := range []string{"UDP", "TCP"} {
		t.Run(tp, func(t *testing.T) {
			host, port, _ := strings.Cut(h.addr[tp], ":")
			contact := "sip:1000@127.0.0.1:5999"
			if tp == "TCP" {
				contact = "sip:1000@127.0.0.1:5998" // sipsak cannot parse a ;transport parameter in -C
			}
			args := []string{"-U", "-C", contact, "-x", "600", "-s", "sip:1000@" + host + ":" + port,
				"-a", "secret", "-u", "1000", "--transport", strings.ToLower(tp), "-vv"}
			out, err := exec.Command(sipsak, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("sipsak %v: %v\n%s", args, err, out)
			}
			found := false
			for _, b := range h.bindings("1000") {
				if b.Contact == contact && b.Transport == tp {
					found = true
				}
			}
			if !found {
				t.Fatalf("binding %s not stored: %+v\n%s", contact, h.bindings("1000"), out)
			}
		})
	}
}
