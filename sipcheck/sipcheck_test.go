package sipcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request builds a request from lines joined with CRLF, an empty line and no body.
func request(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

const (
	hVia  = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1"
	hFrom = "From: <sip:a@example.com>;tag=1"
	hTo   = "To: <sip:b@example.com>"
	hCall = "Call-ID: c1"
	hMF   = "Max-Forwards: 70"
	hCL0  = "Content-Length: 0"
)

func options(ruri string, extra ...string) []byte {
	return request(append([]string{"OPTIONS " + ruri + " SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 1 OPTIONS", hMF, hCL0}, extra...)...)
}

// TestCheckDatagram pins what the datagram check decides per request line and framing.
func TestCheckDatagram(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		wantCode int
		wantDrop bool
	}{
		{"typical INVITE passes", readFile(t, "invite.sip"), 0, false},
		{"response passes", []byte("SIP/2.0 200 OK\r\n" + hVia + "\r\n\r\n"), 0, false},
		{"keep-alive passes", []byte("\r\n\r\n"), 0, false},
		{"lwsstart_two_SP_400", []byte("INVITE  sip:a@example.com  SIP/2.0\r\n" + hVia + "\r\n\r\n"), 400, false},
		{"trws_trailing_SP_400", []byte("OPTIONS sip:a@example.com SIP/2.0  \r\n" + hVia + "\r\n\r\n"), 400, false},
		{"lwsruri_SP_in_URI_400", []byte("INVITE sip:a@example.com; lr SIP/2.0\r\n" + hVia + "\r\n\r\n"), 400, false},
		{"ltgtruri_400", []byte("INVITE <sip:a@example.com> SIP/2.0\r\n" + hVia + "\r\n\r\n"), 400, false},
		{"R18_novelsc_416", options("soap.beep://192.0.2.103:3002"), 416, false},
		{"R18_tel_416", options("tel:+15551234567"), 416, false},
		{"R18_ACK_tel_dropped", []byte("ACK tel:+15551234567 SIP/2.0\r\n" + hVia + "\r\n\r\n"), 0, true},
		{"ACK_bad_line_dropped", []byte("ACK  sip:a@example.com SIP/2.0\r\n" + hVia + "\r\n\r\n"), 0, true},
		{"ipv6_bad_400", options("sip:2001:db8::10"), 400, false},
		{"ipv6_good_passes", options("sip:[2001:db8::10]:5070"), 0, false},
		{"host_port_passes", options("sip:user@example.com:5060;transport=udp"), 0, false},
		{"clerr_400", []byte("INVITE sip:a@example.com SIP/2.0\r\n" + hVia + "\r\nContent-Length: 9999\r\n\r\nv=0\r\n"), 400, false},
		{"dblreq_longer_datagram_passes", []byte("OPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\n\r\nINVITE junk"), 0, false},
		{"two_Content_Length_left_to_Request", []byte("OPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\nContent-Length: 50\r\n\r\n"), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := CheckDatagram(tc.data)
			if v.Code != tc.wantCode || v.Drop != tc.wantDrop {
				t.Fatalf("CheckDatagram = %+v, want code %d drop %v", v, tc.wantCode, tc.wantDrop)
			}
		})
	}
}

// TestResponse checks the stateless response of a refused datagram: the status line, the
// copied headers, our Warning, and that a peer's parser accepts it.
func TestResponse(t *testing.T) {
	data := []byte("INVITE <sip:a@example.com> SIP/2.0\r\n" + hVia + "\r\n" + hFrom + "\r\n" + hTo + "\r\n" + hCall +
		"\r\nCSeq: 1 INVITE\r\nSubject: not copied\r\nContent-Length: 0\r\n\r\n")
	v := CheckDatagram(data)
	res := Response(data, v, WireConfig{Server: "sipsvc", WarnAgent: "sipsvc"})
	m, err := sip.ParseMessage(res)
	if err != nil {
		t.Fatalf("response does not parse: %v\n%s", err, res)
	}
	r := m.(*sip.Response)
	if r.StatusCode != 400 || r.CallID().Value() != "c1" || r.CSeq().SeqNo != 1 || r.Via() == nil {
		t.Errorf("response %s", res)
	}
	if w := r.GetHeader("Warning"); w == nil || w.Value() != `399 sipsvc "Request-URI in angle brackets"` {
		t.Errorf("Warning %v", w)
	}
	if r.GetHeader("Subject") != nil {
		t.Errorf("copied a header it must not: %s", res)
	}
	if Response([]byte("INVITE <x> SIP/2.0\r\n"+hFrom+"\r\n\r\n"), v, WireConfig{}) != nil {
		t.Error("formed a response without Via, Call-ID and CSeq")
	}
	if res := Response([]byte("INVITE <x> SIP/2.0\r\n"+hVia+"\r\nSubject: x\r\nCall-ID: a\x01b\r\nCSeq: 1 INVITE\r\n\r\n"), v, WireConfig{}); res != nil {
		t.Errorf("copied a Call-ID with a control character: %q", res)
	}
}

// TestParserLenient checks that NewParser keeps a message with a malformed header and that
// Request then refuses it with 400 (RFC 4475 badaspec, quotbal, scalar02, ncl), and that
// whitespace around "=" and a missing From tag no longer break sipgo's transaction key.
func TestParserLenient(t *testing.T) {
	c := New(Config{Supported: []string{"100rel"}})
	tests := []struct {
		name     string
		data     []byte
		wantCode int
		wantText string
	}{
		{"badaspec_To", options("sip:a@example.com", "To: sip:user@example.com; foo=bar baz"), 400, ""},
		{"quotbal_From", request("OPTIONS sip:a@example.com SIP/2.0", hVia, `From: "Bob <sip:a@example.com>;tag=1`, hTo, hCall, "CSeq: 1 OPTIONS", hCL0), 400, "malformed From"},
		{"scalar02_CSeq", request("OPTIONS sip:a@example.com SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 36893488147419103232 OPTIONS", hCL0), 400, "malformed CSeq"},
		{"ncl_Content_Length", request("OPTIONS sip:a@example.com SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 1 OPTIONS", "Content-Length: -999"), 400, "malformed content-length"},
		{"multi01_two_To", options("sip:a@example.com", "To: <sip:c@example.com>"), 400, "more than one To"},
		{"mcl01_two_Content_Length", options("sip:a@example.com", "l: 0"), 400, "more than one Content-Length"},
		{"valid", options("sip:a@example.com"), 0, ""},
	}
	p := NewParser()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.ParseSIP(tc.data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			r := c.Request(m.(*sip.Request), "UDP")
			if r.Code != tc.wantCode || (tc.wantText != "" && r.Text != tc.wantText) {
				t.Fatalf("Request = %+v, want %d %q", r, tc.wantCode, tc.wantText)
			}
		})
	}
	t.Run("wsinv_params_trimmed", func(t *testing.T) {
		m, err := p.ParseSIP(request("OPTIONS sip:a@example.com SIP/2.0", hVia, "From: <sip:a@example.com>\r\n  ;\r\n  tag = 98asjd8", hTo, hCall, "CSeq: 1 OPTIONS", hCL0))
		if err != nil {
			t.Fatal(err)
		}
		if tag, _ := m.(*sip.Request).From().Params.Get("tag"); tag != "98asjd8" {
			t.Errorf("From tag %q, want 98asjd8", tag)
		}
	})
	t.Run("inv2543_stable_From_tag", func(t *testing.T) {
		msg := request("INVITE sip:a@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1", "From: <sip:a@example.com>", hTo, hCall, "CSeq: 1 INVITE", hCL0)
		m1, err1 := p.ParseSIP(msg)
		m2, err2 := p.ParseSIP(msg)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		t1, _ := m1.(*sip.Request).From().Params.Get("tag")
		t2, _ := m2.(*sip.Request).From().Params.Get("tag")
		if !strings.HasPrefix(t1, rfc2543TagPrefix) || t1 != t2 {
			t.Errorf("tags %q %q: want the same %s… tag for a retransmission", t1, t2, rfc2543TagPrefix)
		}
	})
}

// TestRequest pins each refusal of Request and the extra header it carries.
func TestRequest(t *testing.T) {
	c := New(Config{Supported: []string{"replaces", "100rel", "timer"}})
	invite := func(ruri string, extra ...string) []byte {
		return request(append([]string{"INVITE " + ruri + " SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 1 INVITE", hMF}, extra...)...)
	}
	tests := []struct {
		name      string
		data      []byte
		transport string
		code      int
		header    string
	}{
		{"badvers_505", []byte(strings.Replace(string(options("sip:a@example.com")), "SIP/2.0\r\n", "SIP/7.0\r\n", 1)), "UDP", 505, ""},
		{"R18_unkscm_416", options("nobodyknowsthisscheme:totallyopaquecontent"), "TCP", 416, ""},
		{"R4_P11_sips_over_UDP_480", options("sips:a@example.com"), "UDP", 480, ""},
		{"R4_sips_over_TCP_480", options("sips:a@example.com"), "TCP", 480, ""},
		{"sips_over_TLS_ok", options("sips:a@example.com"), "TLS", 0, ""},
		{"escruri_400", invite("sip:user@example.com?Route=%3Csip:example.com%3E", hCL0), "UDP", 400, ""},
		{"bext01_420", options("sip:a@example.com", "Require: nothingSupportsThis, nothingSupportsThisEither"), "UDP", 420, "Unsupported"},
		{"Require_supported_ok", options("sip:a@example.com", "Require: 100rel"), "UDP", 0, ""},
		{"sdp01_406", invite("sip:a@example.com", "Accept: text/nobodyKnowsThis", hCL0), "UDP", 406, "Accept"},
		{"Accept_wildcard_ok", invite("sip:a@example.com", "Accept: application/*", hCL0), "UDP", 0, ""},
		{"intmeth_case_of_CSeq", request("FOO sip:a@example.com SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 1 foo", hCL0), "UDP", 0, ""},
		{"mismatch01_400", request("OPTIONS sip:a@example.com SIP/2.0", hVia, hFrom, hTo, hCall, "CSeq: 1 INVITE", hCL0), "UDP", 400, ""},
	}
	p := NewParser()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.ParseSIP(tc.data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			r := c.Request(m.(*sip.Request), tc.transport)
			if r.Code != tc.code || r.Header != tc.header {
				t.Fatalf("Request = %+v, want %d with header %q", r, tc.code, tc.header)
			}
		})
	}
	t.Run("invut_415", func(t *testing.T) {
		data := append(invite("sip:a@example.com", "Content-Type: application/unknownformat", "Content-Length: 5"), "hello"...)
		m, err := p.ParseSIP(data)
		if err != nil {
			t.Fatal(err)
		}
		r := c.Request(m.(*sip.Request), "UDP")
		if r.Code != 415 || r.Header != "Accept" || r.Value != "application/sdp" {
			t.Fatalf("Request = %+v, want 415 with Accept: application/sdp", r)
		}
	})
}

// BenchmarkCheck measures the edge check of a typical INVITE: the datagram check before
// sipgo's parser and the parsed-request check after it.
func BenchmarkCheck(b *testing.B) {
	data := readFile(b, "invite.sip")
	m, err := NewParser().ParseSIP(data)
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	c := New(Config{Supported: []string{"replaces", "100rel", "timer"}})
	b.Run("CheckDatagram", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v := CheckDatagram(data); v.Code != 0 {
				b.Fatal(v)
			}
		}
	})
	b.Run("Request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := c.Request(req, "UDP"); r.Code != 0 {
				b.Fatal(r)
			}
		}
	})
}

// BenchmarkParse is the reference for BenchmarkCheck: sipgo's parse of the same INVITE with
// the parser of NewParser, which every message costs anyway.
func BenchmarkParse(b *testing.B) {
	data := readFile(b, "invite.sip")
	p := NewParser()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseSIP(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCommaErrType checks that NewParser recognises sipgo's "another value follows" signal,
// without which every comma-separated Via or Contact would count as malformed.
func TestCommaErrType(t *testing.T) {
	if commaErrType == nil {
		t.Fatal("sipgo's comma signal was not found")
	}
	m, err := NewParser().ParseSIP(options("sip:a@example.com", "Via: SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3", "Contact: <sip:a@b>, <sip:c@d>"))
	if err != nil {
		t.Fatal(err)
	}
	if r := Required(m.(*sip.Request)); r.Code != 0 {
		t.Fatalf("Required = %+v for comma-separated Via and Contact", r)
	}
}

// FuzzCheckDatagram checks that the datagram check never panics and that every response it
// forms is one the lenient parser reads back as a response with the refusal's status.
func FuzzCheckDatagram(f *testing.F) {
	f.Add(readFile(f, "invite.sip"))
	f.Add([]byte("INVITE <sip:a@example.com> SIP/2.0\r\n" + hVia + "\r\n" + hCall + "\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Add(options("soap.beep://192.0.2.103:3002"))
	f.Add([]byte("OPTIONS sip:a@example.com SIP/2.0\r\nl: 99\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v := CheckDatagram(data)
		if v.Code == 0 {
			return
		}
		res := Response(data, v, WireConfig{Server: "s", WarnAgent: "w"})
		if res == nil {
			return
		}
		m, err := NewParser().ParseSIP(res)
		if err != nil {
			return // a copied header line sipgo cannot parse even leniently (e.g. a bad Via)
		}
		if r, ok := m.(*sip.Response); !ok || r.StatusCode != v.Code {
			t.Fatalf("response %q is not a %d", res, v.Code)
		}
	})
}
