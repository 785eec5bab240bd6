package signaling

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/sips"
)

// Benchmarks of the per-message hot path of a new call, stage by stage, then end to end.
//
//	go test -run xxx -bench . -benchmem ./signaling/
//
// The micro benchmarks use a Server built with New but not serving: its advertised addresses
// are set directly, as Serve would set them.

// readRaw reads a raw SIP message from testdata.
func readRaw(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// parseRequest parses raw as a request and sets the transport it arrived on.
func parseRequest(b *testing.B, raw []byte, transport string) *sip.Request {
	b.Helper()
	m, err := sip.NewParser().ParseSIP(raw)
	if err != nil {
		b.Fatal(err)
	}
	req, ok := m.(*sip.Request)
	if !ok {
		b.Fatalf("%T is not a request", m)
	}
	req.SetTransport(transport)
	return req
}

// benchServer is a Server that advertises 127.0.0.1:5060 (UDP, TCP) and :5061 (TLS).
func benchServer(b *testing.B) *Server {
	b.Helper()
	s, err := New(Config{Directory: newMemDir(), Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.ua.Close() })
	lo := net.IPv4(127, 0, 0, 1)
	s.addListen("UDP", &net.UDPAddr{IP: lo, Port: 5060})
	s.addListen("TCP", &net.TCPAddr{IP: lo, Port: 5060})
	s.addListen("TLS", &net.TCPAddr{IP: lo, Port: 5061})
	return s
}

// buildBLeg builds the INVITE of leg B from leg A's INVITE the way originate does: the
// Request-URI from sips.TargetURI, our Via for the leg's transport, Max-Forwards decremented,
// From/To/Contact in the leg's scheme, a new Call-ID, session timer headers, A's SDP.
// It stops short of the transaction layer (no network).
func buildBLeg(s *Server, a *sip.Request, target sip.Uri, d sips.Decision, style dn.Style) *sip.Request {
	ruri := sips.TargetURI(target, d, style)
	la := s.local(d.Transport)
	caller := a.From().Address.User
	inv := sip.NewRequest(sip.INVITE, ruri)
	inv.AppendHeader(s.via(d.Transport))
	mf := sip.MaxForwardsHeader(70)
	if amf := a.MaxForwards(); amf != nil {
		mf = sip.MaxForwardsHeader(amf.Val() - 1)
	}
	inv.AppendHeader(&mf)
	from := &sip.FromHeader{DisplayName: a.From().DisplayName, Address: sip.Uri{Scheme: d.Scheme, User: caller, Host: la.host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	inv.AppendHeader(from)
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: d.Scheme, User: ruri.User, Host: ruri.Host, Port: ruri.Port}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(20) + "@" + la.host)
	inv.AppendHeader(&cid)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	inv.AppendHeader(&sip.ContactHeader{Address: s.contactFor(caller, d, style)})
	inv.AppendHeader(sip.NewHeader("Allow", allowed))
	inv.AppendHeader(sip.NewHeader("Supported", "replaces, 100rel, timer"))
	inv.AppendHeader(sip.NewHeader("Allow-Events", "talk, hold"))
	inv.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(s.cfg.SessionExpires/time.Second))))
	inv.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(s.cfg.MinSE/time.Second))))
	inv.AppendHeader(sip.NewHeader("User-Agent", s.cfg.UserAgent))
	inv.AppendHeader(sip.NewHeader("Content-Type", contentType(a)))
	inv.SetBody(a.Body())
	s.prepare(inv, d.Transport, hostPort(ruri, d.Transport))
	return inv
}

// BenchmarkParseInvite parses an INVITE with SDP as the transport layer does.
func BenchmarkParseInvite(b *testing.B) {
	for _, name := range []string{"seed_invite.sip", "sip_record_route_sips.sip", "rfc4475_esc01.sip"} {
		b.Run(name, func(b *testing.B) {
			raw := readRaw(b, name)
			p := sip.NewParser()
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseSIP(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidateRequest is the header check guard runs on every request.
func BenchmarkValidateRequest(b *testing.B) {
	req := parseRequest(b, readRaw(b, "seed_invite.sip"), "TLS")
	b.ReportAllocs()
	for b.Loop() {
		if err := validateRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideInbound is leg A's decision: inboundOf plus sips.DecideInbound.
func BenchmarkDecideInbound(b *testing.B) {
	cases := []struct{ name, file, transport string }{
		{"R22_seed_sips_TLS", "seed_invite.sip", "TLS"},
		{"R22_record_route_sips", "sip_record_route_sips.sip", "TLS"},
		{"R4_sips_over_UDP_refused", "sips_over_udp.sip", "UDP"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			req := parseRequest(b, readRaw(b, tc.file), tc.transport)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = sips.DecideInbound(inboundOf(req))
			}
		})
	}
}

// BenchmarkDecideOutbound is leg B's decision for the usual kinds of target.
func BenchmarkDecideOutbound(b *testing.B) {
	cases := []struct {
		name, contact string
		out           sips.Outbound
	}{
		{"R5_sips_dn_transport_tcp", "sips:5000@10.0.0.5:5061;transport=TCP", sips.Outbound{}},
		{"R40_sip_dn_udp", "sip:6000@10.0.0.6:5060", sips.Outbound{}},
		{"T4_registered_sips", "sips:7789@172.21.83.24:5061", sips.Outbound{Registered: true, RegisteredSecure: true, RegisteredTransport: "TLS"}},
		{"P4_style_sip_transport_tls", "sips:5000@10.0.0.5:5061", sips.Outbound{Style: dn.StyleSIPTransportTLS}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			u, err := dn.ParseContact(tc.contact)
			if err != nil {
				b.Fatal(err)
			}
			out := tc.out
			out.Target = u
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sips.DecideOutbound(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuildBLeg builds leg B's INVITE from the seed INVITE (sips A-leg).
func BenchmarkBuildBLeg(b *testing.B) {
	cases := []struct{ name, contact string }{
		{"T1_sips_to_sips", "sips:5000@10.0.0.5:5061;transport=tls"},
		{"T2_sips_to_sip_udp", "sip:6000@10.0.0.6:5060"},
	}
	s := benchServer(b)
	a := parseRequest(b, readRaw(b, "seed_invite.sip"), "TLS")
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			u, err := dn.ParseContact(tc.contact)
			if err != nil {
				b.Fatal(err)
			}
			d, err := sips.DecideOutbound(sips.Outbound{Target: u})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = buildBLeg(s, a, u, d, "")
			}
		})
	}
}

// BenchmarkSerialize writes leg B's INVITE: String() allocates the result, StringWrite into a
// reused buffer is what a transport with a buffer pool pays.
func BenchmarkSerialize(b *testing.B) {
	s := benchServer(b)
	a := parseRequest(b, readRaw(b, "seed_invite.sip"), "TLS")
	u, _ := dn.ParseContact("sips:5000@10.0.0.5:5061")
	d, _ := sips.DecideOutbound(sips.Outbound{Target: u})
	inv := buildBLeg(s, a, u, d, "")
	b.Run("String", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = inv.String()
		}
	})
	b.Run("StringWrite_buffer", func(b *testing.B) {
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			inv.StringWrite(&buf)
		}
		b.SetBytes(int64(buf.Len()))
	})
}

// BenchmarkHotPath chains the stages for one INVITE: parse, validate, decide leg A, decide
// leg B, build leg B, serialize.
func BenchmarkHotPath(b *testing.B) {
	s := benchServer(b)
	raw := readRaw(b, "seed_invite.sip")
	p := sip.NewParser()
	u, _ := dn.ParseContact("sips:5000@10.0.0.5:5061;transport=tls")
	var buf bytes.Buffer
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := p.ParseSIP(raw)
		if err != nil {
			b.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetTransport("TLS")
		if err := validateRequest(req); err != nil {
			b.Fatal(err)
		}
		a, err := sips.DecideInbound(inboundOf(req))
		if err != nil {
			b.Fatal(err)
		}
		d, err := sips.DecideOutbound(sips.Outbound{Target: u})
		if err != nil {
			b.Fatal(err)
		}
		if r := sips.CheckPolicy(dn.PolicyPerLeg, a, d); r != nil {
			b.Fatal(r)
		}
		inv := buildBLeg(s, req, u, d, "")
		buf.Reset()
		inv.StringWrite(&buf)
	}
}

// waitCount waits until p has received n requests of method.
func waitCount(b *testing.B, p *phone, method sip.RequestMethod, n int, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for p.Count(method) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d %s, want %d", p.Name, p.Count(method), method, n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkCallUDP runs b.N complete calls, one after another, through a real Server on
// loopback UDP: INVITE (with SDP) → 180/200 from B → 200 to A → ACK → BYE from A → BYE to B.
// ns/op is the latency of one call; allocs/op counts the two phones (sipgo UAs) as well.
func BenchmarkCallUDP(b *testing.B) {
	bob := newPhone(b, "bob", "UDP")
	bob.SetAnswer(func(req *sip.Request, tx sip.ServerTransaction) {
		bob.Ring(req, tx)
		bob.OK(req, tx, []byte(testSDP))
	})

	srv := startB2BUA(b, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(b, "alice", "UDP")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		benchCall(b, alice, bob, srv, n)
	}
	if got := bob.Count(sip.INVITE); got != n {
		b.Errorf("B got %d INVITEs for %d calls", got, n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.s.ListCalls(nil, CallFilter{})) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if left := len(srv.s.ListCalls(nil, CallFilter{})); left != 0 {
		b.Errorf("%d calls left after %d calls", left, n)
	}
}
