package signaling

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/sipcheck"
)

// answerParser parses the answers to torture messages: a refusal echoes the request's Via,
// From, To and CSeq, malformed ones included, so it needs the lenient parser too.
var answerParser = sipcheck.NewParser()

// wireOutcome is what a peer sees after sending one raw message: a final status code, no
// response at all, or (TCP) the connection closed without a response.
type wireOutcome struct {
	code   int  // final status code (>= 200); 0 when none arrived
	closed bool // TCP: the server closed the connection
	res    *sip.Response
}

func (o wireOutcome) String() string {
	switch {
	case o.code != 0:
		return strconv.Itoa(o.code)
	case o.closed:
		return "closed"
	}
	return "none"
}

// readTorture reads one message of the RFC 4475 / RFC 5118 corpus byte for byte.
func readTorture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "torture", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendRawUDP sends data in one datagram from a fresh socket and reads what comes back to that
// socket (sipgo answers to the source address) until a final response or the wait ends.
func sendRawUDP(t testing.TB, addr string, data []byte, wait time.Duration) wireOutcome {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(data, ra); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return wireOutcome{}
		}
		m, err := answerParser.ParseSIP(buf[:n])
		if err != nil {
			t.Fatalf("unparsable answer: %v\n%s", err, buf[:n])
		}
		if res, ok := m.(*sip.Response); ok && res.StatusCode >= 200 {
			return wireOutcome{code: res.StatusCode, res: res}
		}
	}
}

// sendRawTCP sends data on a fresh TCP connection and reads responses until a final one, the
// server closing the connection, or the wait ending.
func sendRawTCP(t testing.TB, addr string, data []byte, wait time.Duration) wireOutcome {
	t.Helper()
	_, first := sendRawTCPSeq(t, addr, data, 1, wait)
	return first
}

// sendRawTCPSeq sends data on a fresh TCP connection and reads what comes back: one outcome per
// final response until it has want outcomes, the server closes the connection ("closed" is
// then the last outcome), or the wait ends ("none" when nothing came). The status codes are
// sorted and joined with "+" (responses to different requests may be written in any order,
// RFC 3261 §17.2), then " then closed" follows when the connection was closed after them:
// "404+405 then closed".
func sendRawTCPSeq(t testing.TB, addr string, data []byte, want int, wait time.Duration) (string, wireOutcome) {
	t.Helper()
	return sendRawStreamSeq(t, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 2*time.Second) }, data, want, wait)
}

// sendRawTLSSeq is sendRawTCPSeq over a fresh TLS connection (the test PKI's client
// configuration; the handshake completes before data is written).
func sendRawTLSSeq(t testing.TB, addr string, data []byte, want int, wait time.Duration) (string, wireOutcome) {
	t.Helper()
	return sendRawStreamSeq(t, func() (net.Conn, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, clientTLS())
		if err != nil {
			return nil, err
		}
		return c, nil
	}, data, want, wait)
}

// sendRawStreamSeq sends data on the connection dial opens; see sendRawTCPSeq.
func sendRawStreamSeq(t testing.TB, dial func() (net.Conn, error), data []byte, want int, wait time.Duration) (string, wireOutcome) {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(c)
	var seq []string
	var first wireOutcome
	for len(seq) < want {
		res, err := readStreamResponse(r)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if len(seq) == 0 {
					seq = append(seq, wireOutcome{}.String())
				}
				break
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
				strings.Contains(err.Error(), "reset") {
				if len(seq) == 0 {
					first = wireOutcome{closed: true}
				}
				seq = append(seq, wireOutcome{closed: true}.String())
				break
			}
			t.Fatalf("reading TCP answer: %v", err)
		}
		if res.StatusCode >= 200 {
			if len(seq) == 0 {
				first = wireOutcome{code: res.StatusCode, res: res}
			}
			seq = append(seq, strconv.Itoa(res.StatusCode))
		}
	}
	var codes []string
	end := ""
	for _, o := range seq {
		if o == "closed" || o == "none" {
			end = o
		} else {
			codes = append(codes, o)
		}
	}
	slices.Sort(codes)
	switch {
	case len(codes) == 0:
		return end, first
	case end == "closed":
		return strings.Join(codes, "+") + " then closed", first
	}
	return strings.Join(codes, "+"), first
}

// tcpOutcomes is the number of outcomes a TCP expectation of tortureCases names.
func tcpOutcomes(want string) int {
	return len(strings.FieldsFunc(want, func(r rune) bool { return r == '+' || r == ' ' })) - strings.Count(want, " then ")
}

// readStreamResponse reads one response framed by Content-Length from a stream.
func readStreamResponse(r *bufio.Reader) (*sip.Response, error) {
	var head bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && line == "\r\n" {
			continue // keep-alive CRLF between messages
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	m, err := answerParser.ParseSIP(head.Bytes())
	if err != nil {
		return nil, err
	}
	res, ok := m.(*sip.Response)
	if !ok {
		return nil, errors.New("not a response")
	}
	if cl := res.ContentLength(); cl != nil && *cl > 0 {
		if _, err := io.CopyN(io.Discard, r, int64(*cl)); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// aliveOPTIONS is a plain OPTIONS to check that the server still serves after a torture message.
func aliveOPTIONS(transport string, n int) []byte {
	return []byte("OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " 127.0.0.1:9;branch=z9hG4bKalive" + strconv.Itoa(n) + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:127.0.0.1>\r\n" +
		"From: <sip:alive@127.0.0.1>;tag=alive" + strconv.Itoa(n) + "\r\n" +
		"Call-ID: alive-" + strconv.Itoa(n) + "@127.0.0.1\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// withRport asks for symmetric response routing (RFC 3581) by adding rport to the first
// Via: RFC 3261 §18.2.2 sends UDP responses to the source IP and the Via port (5060 when
// absent), and a test cannot listen on a fixed port. The parameter goes at the end of the
// first Via value (before a comma, or at the end of its last folded line); nothing else in
// the message changes.
func withRport(data []byte) []byte {
	lines := bytes.SplitAfter(data, []byte("\r\n"))
	for i, l := range lines {
		if len(l) <= 2 {
			break // end of the header section
		}
		name, _, ok := bytes.Cut(l, []byte(":"))
		if !ok || l[0] == ' ' || l[0] == '\t' {
			continue
		}
		if n := strings.ToLower(strings.TrimSpace(string(name))); n != "via" && n != "v" {
			continue
		}
		j := i // the last line of this header (folded lines start with SP or HTAB)
		for j+1 < len(lines) && len(lines[j+1]) > 0 && (lines[j+1][0] == ' ' || lines[j+1][0] == '\t') {
			j++
		}
		at := j
		end := len(bytes.TrimRight(lines[j], "\r\n"))
		if k := bytes.IndexByte(l, ','); k >= 0 {
			at, end = i, k
		}
		out := append([]byte{}, bytes.Join(lines[:at], nil)...)
		out = append(out, lines[at][:end]...)
		out = append(out, ";rport"...)
		out = append(out, lines[at][end:]...)
		return append(out, bytes.Join(lines[at+1:], nil)...)
	}
	return data
}

// tortureCases are the RFC 4475 §3 and RFC 5118 §4 messages with the answer each gets over
// UDP and over TCP: a status code, "none" (no response: responses are dropped, or RFC 3261
// §18.3 waits for the rest of a stream), or "closed" (TCP: the connection is closed because
// its framing cannot be trusted); "a|b" accepts either (a race between the answer to a first
// message and the close of the stream it came on). docs/torture.md explains each row.
var tortureCases = []struct {
	file     string
	udp, tcp string
}{
	// RFC 4475 §3.1.1: valid messages: never 400.
	{"rfc4475/wsinv.dat", "481", "481"}, // To has a tag: a re-INVITE of an unknown dialog
	{"rfc4475/intmeth.dat", "405", "405"},
	{"rfc4475/esc01.dat", "404", "404"},
	{"rfc4475/escnull.dat", "405", "405"},
	{"rfc4475/esc02.dat", "405", "405"},
	{"rfc4475/lwsdisp.dat", "200", "200"},
	{"rfc4475/longreq.dat", "404", "404"},                // UDP: a 404 larger than 1300 bytes (RFC 3261 §18.2.2)
	{"rfc4475/dblreq.dat", "405", "404+405 then closed"}, // TCP: both requests answered, then closed
	{"rfc4475/semiuri.dat", "200", "200"},
	{"rfc4475/transports.dat", "200", "200"},
	{"rfc4475/mpart01.dat", "481", "481"},
	{"rfc4475/unreason.dat", "none", "none"},
	{"rfc4475/noreason.dat", "none", "none"},
	// RFC 4475 §3.1.2: invalid messages.
	{"rfc4475/badinv01.dat", "400", "400"},
	{"rfc4475/clerr.dat", "400", "none"}, // TCP: §18.3 waits for the rest of the body
	{"rfc4475/ncl.dat", "400", "closed"},
	{"rfc4475/scalar02.dat", "400", "400"},
	{"rfc4475/scalarlg.dat", "none", "none"},
	{"rfc4475/quotbal.dat", "400", "400"},
	{"rfc4475/ltgtruri.dat", "400", "400"},
	{"rfc4475/lwsruri.dat", "400", "400"},
	{"rfc4475/lwsstart.dat", "400", "400"},
	{"rfc4475/trws.dat", "400", "400"},
	{"rfc4475/escruri.dat", "400", "400"},
	{"rfc4475/baddate.dat", "404", "404"},
	{"rfc4475/regbadct.dat", "405", "405"},
	{"rfc4475/badaspec.dat", "400", "400"},
	{"rfc4475/baddn.dat", "400", "400"},
	{"rfc4475/badvers.dat", "505", "505"},
	{"rfc4475/mismatch01.dat", "400", "400"},
	{"rfc4475/mismatch02.dat", "400", "400"},
	{"rfc4475/bigcode.dat", "none", "none"},
	// RFC 4475 §3.2 and §3.3: transaction and application layer.
	{"rfc4475/badbranch.dat", "200", "200"},
	{"rfc4475/insuf.dat", "400", "400"},
	{"rfc4475/unkscm.dat", "416", "416"},
	{"rfc4475/novelsc.dat", "416", "416"},
	{"rfc4475/unksm2.dat", "405", "405"},
	{"rfc4475/bext01.dat", "420", "420"},
	{"rfc4475/invut.dat", "415", "415"},
	{"rfc4475/regaut01.dat", "405", "405"},
	{"rfc4475/multi01.dat", "400", "400"},
	// mcl01, TCP: the 400 to the OPTIONS races the close of the stream its unframed tail is on.
	{"rfc4475/mcl01.dat", "400", "closed|400"},
	{"rfc4475/bcast.dat", "none", "none"},
	{"rfc4475/zeromf.dat", "200", "200"},
	{"rfc4475/cparam01.dat", "405", "405"},
	{"rfc4475/cparam02.dat", "405", "405"},
	{"rfc4475/regescrt.dat", "405", "405"},
	{"rfc4475/sdp01.dat", "406", "406"},
	// RFC 4475 §3.4: backward compatibility.
	{"rfc4475/inv2543.dat", "404", "closed"}, // TCP: no Content-Length on a stream (§18.3)
	// RFC 5118 §4.
	{"rfc5118/ipv6-good.dat", "405", "405"},
	{"rfc5118/ipv6-bad.dat", "400", "400"},
	{"rfc5118/port-ambiguous.dat", "405", "405"},
	{"rfc5118/port-unambiguous.dat", "405", "405"},
	{"rfc5118/via-received-param-with-delim.dat", "481", "481"},
	{"rfc5118/via-received-param-no-delim.dat", "200", "200"},
	{"rfc5118/ipv6-in-sdp.dat", "404", "404"},
	{"rfc5118/mult-ip-in-header.dat", "481", "481"},
	{"rfc5118/mult-ip-in-sdp.dat", "404", "404"},
	{"rfc5118/ipv4-mapped-ipv6.dat", "404", "404"},
	{"rfc5118/ipv6-bug-abnf-3-colons.dat", "200", "200"},
	{"rfc5118/ipv6-correct-abnf-2-colons.dat", "200", "200"},
}

// TestTorture sends each torture message to a running server over UDP, TCP and TLS (a fresh
// server per message and transport: several messages share a branch and Call-ID and would
// otherwise match each other's transactions), checks the answer, and checks that the server
// still answers an OPTIONS afterwards.
func TestTorture(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range tortureCases {
		seen[tc.file] = true
	}
	for _, dir := range []string{"rfc4475", "rfc5118"} {
		ents, err := os.ReadDir(filepath.Join("testdata", "torture", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !seen[dir+"/"+e.Name()] {
				t.Errorf("testdata/torture/%s/%s has no row in tortureCases", dir, e.Name())
			}
		}
	}
	for i, tc := range tortureCases {
		data := readTorture(t, tc.file)
		for _, transport := range []string{"UDP", "TCP", "TLS"} {
			t.Run(tc.file+"/"+transport, func(t *testing.T) {
				b := startB2BUA(t, nil)
				var got, alive wireOutcome
				want := tc.udp
				switch transport {
				case "UDP":
					got = sendRawUDP(t, b.udp, withRport(data), 300*time.Millisecond)
					alive = sendRawUDP(t, b.udp, aliveOPTIONS("UDP", i), 2*time.Second)
				case "TCP", "TLS":
					// TLS connections go through the same framing and request-line check as
					// TCP (after the handshake): every row gets the TCP answer.
					want = tc.tcp
					send := sendRawTCPSeq
					if transport == "TLS" {
						send = sendRawTLSSeq
					}
					var seq string
					// want may list alternatives ("closed|400"): where the answer races the
					// close, either is right; read as many outcomes as the longest needs.
					alts, n := strings.Split(want, "|"), 0
					for _, alt := range alts {
						n = max(n, tcpOutcomes(alt))
					}
					seq, got = send(t, b.addr(transport), data, n, 300*time.Millisecond)
					_, alive = send(t, b.addr(transport), aliveOPTIONS(transport, i), 1, 2*time.Second)
					if !slices.Contains(alts, seq) {
						t.Errorf("answers %s, want %s", seq, want)
					}
				}
				if transport == "UDP" && !slices.Contains(strings.Split(want, "|"), got.String()) {
					t.Errorf("answer %s, want %s", got, want)
				}
				if alive.code != 200 {
					t.Errorf("OPTIONS after the message: %s, want 200 (server no longer serving)", alive)
				}
				if got.code == 420 && (got.res.GetHeader("Unsupported") == nil) {
					t.Errorf("420 without Unsupported")
				}
				if (got.code == 415 || got.code == 406) && got.res.GetHeader("Accept") == nil {
					t.Errorf("%d without Accept", got.code)
				}
			})
		}
	}
}
