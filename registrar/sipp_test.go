package registrar_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
)

const sippDir = "../test/interop/sipp"

// TestSIPp_RegisterAuth runs test/interop/sipp/register_auth.xml (digest with SIPp's
// [authentication]) against a registrar on UDP backed by the bolt store. It fails
// when sipp is not installed (.ci/run installs it). By hand: SIPP_CALLS and SIPP_RATE scale it up,
// SIPP_TRANSPORT=tcp runs it over one TCP connection, SIPP_STORE=memory swaps the store:
//
//	SIPP_CALLS=20000 SIPP_RATE=3000 go test -run TestSIPp -v ./registrar/
func TestSIPp_RegisterAuth(t *testing.T) {
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		// .ci/run installs it: a missing tool is a failure, not a skip.
		t.Fatalf("sipp not installed (apt-get install sip-tester): %v", err)
	}
	calls, rate := envInt("SIPP_CALLS", 300), envInt("SIPP_RATE", 300)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var st store.Store = store.NewMemory()
	if os.Getenv("SIPP_STORE") != "memory" {
		st, err = store.OpenBolt(ctx, store.BoltConfig{Path: filepath.Join(t.TempDir(), "sipsvc.db")})
		if err != nil {
			t.Fatal(err)
		}
	}
	defer st.Close()
	n := seedUsers(t, st, filepath.Join(sippDir, "users.csv"))
	// SIPp 3.6 answers the first challenge and knows only MD5: offer MD5 first.
	reg, err := registrar.New(registrar.Config{Store: st, Realm: "sipsvc", AuthFailLimit: -1, Algorithms: []string{"MD5", "SHA-256"}})
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	srv, _ := sipgo.NewServer(ua)
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) { reg.ServeRegister(ctx, req, tx) })
	var target string
	sippTransport := "u1"
	if os.Getenv("SIPP_TRANSPORT") == "tcp" {
		sippTransport = "t1"
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.ServeTCP(l) }()
		defer l.Close()
		target = l.Addr().String()
	} else {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.ServeUDP(udp) }()
		defer udp.Close()
		target = udp.LocalAddr().String()
	}

	out := filepath.Join(t.TempDir(), "sipp")
	args := []string{"-sf", filepath.Join(sippDir, "register_auth.xml"), "-inf", filepath.Join(sippDir, "users.csv"),
		"-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-l", strconv.Itoa(min(calls, 2*rate)),
		"-i", "127.0.0.1", "-bg", "-nostdin", "-trace_err", "-trace_stat", "-stf", out + ".csv", "-error_file", out + ".err",
		"-timeout", "60s", "-max_socket", "1000", "-t", sippTransport, target}
	cmd := exec.CommandContext(ctx, sipp, args[:len(args)]...)
	// -bg forks; run in the foreground instead so we get the exit code.
	cmd.Args = slicesDelete(cmd.Args, "-bg")
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		errs, _ := os.ReadFile(out + ".err")
		t.Fatalf("sipp: %v\n%s\nerrors:\n%.3000s", err, tail(string(outb), 3000), errs)
	}
	t.Logf("sipp: %d calls (%d users, 3 REGISTER transactions each) at rate %d/s in %s", calls, n, rate, took.Round(time.Millisecond))
	all, _ := st.AllBindings(ctx)
	if len(all) != 0 {
		t.Fatalf("%d bindings left; every call ends with an unREGISTER", len(all))
	}
}

func slicesDelete(a []string, s string) []string {
	out := a[:0]
	for _, x := range a {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func envInt(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return d
}

// seedUsers creates one self-registered DN per users.csv line (number;password;…).
func seedUsers(t testing.TB, st store.Store, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ";")
		if len(f) < 2 {
			continue // SEQUENTIAL header
		}
		num, pw := f[0], f[1]
		d := dn.DN{Number: num, Type: dn.TypeExtension, Contact: "*"}
		d.HA1MD5, d.HA1SHA256 = dn.HashPassword(num, "sipsvc", pw)
		if err := st.PutDN(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
