package signaling

import (
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// BenchmarkCallTLS runs b.N complete calls, one after another, TLS on both legs (the caller
// on the B2BUA's TLS listener, so through connlimit; the callee over a pooled outbound TLS
// connection). cpu-ns/call is the process CPU time (user+system, both phones included) per
// call: compare it before and after a change to the transport path.
func BenchmarkCallTLS(b *testing.B) {
	bob := newPhone(b, "bob", "TLS")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Ring(req, tx)
		bob.OK(req, tx, []byte(testSDP))
	})
	srv := startB2BUA(b, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(b, "alice", "TLS")
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	n := 0
	start := cpu()
	for b.Loop() {
		n++
		benchCall(b, alice, bob, srv, n)
	}
	b.ReportMetric(float64(cpu()-start)/float64(n), "cpu-ns/call")
}
