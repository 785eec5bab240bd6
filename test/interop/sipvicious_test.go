package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// svwarFound matches a row of svwar's result table: "| 1000      | reqauth        |";
// svwarGuess its warning about an extension it did not put in the table.
var (
	svwarFound = regexp.MustCompile(`(?m)^\|\s*(\S+)\s*\|\s*(\S+)\s*\|$`)
	svwarGuess = regexp.MustCompile(`extension '([^']+)' probably exists`)
)

// TestSIPViciousSvwarFindsNoDN (issue 10) scans a range holding three DNs — two
// self-registered with passwords, one with a fixed contact — with SIPVicious svwar
// (Debian sipvicious), by REGISTER, OPTIONS and INVITE, with and without --force (which
// skips svwar's own sanity check). svwar reports an extension whose answer differs from
// the answer to a random, surely unknown one; it must report none: an unknown user and a
// known user without credentials get the same answer (a 401 challenge of the same shape
// to REGISTER, the same 200 to OPTIONS).
//
// INVITE: a DN with a password answers an INVITE from itself with a 407 and an unknown
// user does not, so svwar -m INVITE tells them apart until call admission treats unknown
// callers like known ones (the admission work in registrar/authorize.go).
func TestSIPViciousSvwarFindsNoDN(t *testing.T) {
	svwar := requireTool(t, "sipvicious", "sipvicious_svwar", "svwar")
	svc := startSipsvc(t, svcOptions{DNs: []dnSpec{
		{Number: "1000", Contact: "*", Password: "s3cret-1000"},
		{Number: "1001", Contact: "*", Password: "s3cret-1001"},
		{Number: "1010", Contact: fmt.Sprintf("sip:1010@127.0.0.1:%d", freePort(t))},
	}})
	for _, method := range []string{"REGISTER", "OPTIONS", "INVITE"} {
		for _, force := range []bool{false, true} {
			name := method
			if force {
				name += "_force"
			}
			t.Run(name, func(t *testing.T) {
				args := []string{"-m", method, "-e", "995-1015", "-p", strconv.Itoa(svc.udp), "-P", strconv.Itoa(freePort(t))}
				if force {
					args = append(args, "--force")
				}
				out, code := runCmd(t, 90*time.Second, svwar, append(args, "127.0.0.1")...)
				if code != 0 {
					t.Fatalf("svwar %s: exit %d\n%s", strings.Join(args, " "), code, out)
				}
				var found []string
				for _, m := range svwarFound.FindAllStringSubmatch(out, -1) {
					if m[1] != "Extension" {
						found = append(found, m[1]+" ("+m[2]+")")
					}
				}
				for _, m := range svwarGuess.FindAllStringSubmatch(out, -1) {
					if !slices.Contains(found, m[1]+" (probably exists)") {
						found = append(found, m[1]+" (probably exists)")
					}
				}
				if len(found) > 0 {
					t.Fatalf("svwar -m %s enumerated %v\n%s\n--- sipsvc log\n%s", method, found, out, tail(svc.log, 3000))
				}
				if !strings.Contains(out, "found nothing") {
					t.Fatalf("svwar -m %s: no result (want \"found nothing\")\n%s", method, out)
				}
			})
		}
	}
}

// TestSIPViciousSvcrackStoppedByBackoff (issue 10): svcrack guesses the password of DN 1000
// from a wordlist whose right password comes after 30 wrong ones (MD5 offered: svcrack has
// no SHA-256). After registrar.auth_fail_limit wrong answers the registrar answers 503
// with Retry-After and checks nothing more from that user and source: svcrack stops
// without the password, and no binding is made. As a control, svcrack finds the password
// of DN 1001 when it is second in its list, so the tool does work against sipsvc.
func TestSIPViciousSvcrackStoppedByBackoff(t *testing.T) {
	svcrack := requireTool(t, "sipvicious", "sipvicious_svcrack", "svcrack")
	const limit = 5
	svc := startSipsvc(t, svcOptions{
		DNs: []dnSpec{
			{Number: "1000", Contact: "*", Password: "s3cret-1000"},
			{Number: "1001", Contact: "*", Password: "s3cret-1001"},
		},
		Extra: fmt.Sprintf("registrar:\n  digest_algorithms: [MD5]\n  auth_fail_limit: %d\n  lockout_backoff: 1m\n  lockout: 5m\n", limit),
	})
	dir := t.TempDir()
	words := func(name string, list ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(list, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var wrong []string
	for i := range 30 {
		wrong = append(wrong, "guess"+strconv.Itoa(i))
	}
	crack := func(user, list string) string {
		t.Helper()
		out, _ := runCmd(t, 90*time.Second, svcrack, "-u", user, "-d", list,
			"-p", strconv.Itoa(svc.udp), "-P", strconv.Itoa(freePort(t)), "127.0.0.1")
		return out
	}

	out := crack("1000", words("1000.txt", append(wrong, "s3cret-1000")...))
	if strings.Contains(out, "s3cret-1000") {
		t.Fatalf("svcrack found the password of 1000 despite the backoff\n%s\n--- sipsvc log\n%s", out, tail(svc.log, 4000))
	}
	log, err := os.ReadFile(svc.log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "user=1000 method=REGISTER reason=bad_credentials"); n != limit {
		t.Errorf("sipsvc checked %d wrong passwords of 1000, want exactly auth_fail_limit=%d", n, limit)
	}
	if !strings.Contains(string(log), "backing off") {
		t.Errorf("no backoff logged\n%s", tail(svc.log, 4000))
	}
	if strings.Contains(string(log), `msg="registration added" component=registrar dn=1000`) {
		t.Error("a binding was made for 1000")
	}

	out = crack("1001", words("1001.txt", "nope", "s3cret-1001"))
	if !strings.Contains(out, "s3cret-1001") {
		t.Fatalf("control: svcrack did not find the password of 1001 (second in its list)\n%s\n--- sipsvc log\n%s", out, tail(svc.log, 4000))
	}
}
