package signaling

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
	"github.com/sipsvc/sipsvc/test/otlp"
)

// TestTraceTree_SipsToSip: a sips caller over TLS reaches a plain UDP DN and hangs up. The
// exact tree of docs/observability.md: call, leg A (SERVER), route, leg B1 (CLIENT) with the
// R14 downgrade rewrites, the R22 Contact rewrite on leg A, and the relayed BYE as a SERVER
// span on A linked from a CLIENT span on B1.
func TestTraceTree_SipsToSip_R22_R14(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip")})
	alice := newPhone(t, "alice", "TLS")
	call := alice.invite(b, "6000", inviteOpts{
		ruri: fmt.Sprintf("sips:6000@%s", b.tlsA), from: "sips:alice@127.0.0.1",
		contact: fmt.Sprintf("sips:alice@%s", alice.Addr),
	})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	// sipgo hands each message to its own goroutine, so an ACK and a BYE sent back to back
	// can be processed in either order; give the ACK its turn, as a phone would.
	time.Sleep(50 * time.Millisecond)
	binv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	spans := sink.wait(t, 1)

	names := map[string]string{b.tlsA: "{sipsvc-tls}", b.udp: "{sipsvc-udp}", alice.Addr: "{alice}", bob.Addr: "{bob}"}
	want := `sipsvc.call INTERNAL sipsvc.call.origin=sip sip.caller=alice sip.dialed=6000 sipsvc.call.outcome=answered
  sip.leg.inbound SERVER sip.leg=A sip.method=INVITE sip.scheme=sips sip.transport=TLS sip.secure=true sip.scheme.reason=request-uri sips sip.scheme.rule=R22 sip.status_code=200
    * sip.scheme.decided network.transport=tcp sip.leg=A sip.scheme=sips sip.scheme.reason=request-uri sips sip.scheme.rule=R22 sip.secure=true sip.transport=TLS
    * sip.leg.ringing sip.status_code=180
    * sip.header.rewrite sip.header=Contact sip.header.after=sips:6000@{sipsvc-tls} sip.header.before=sip:bob@{bob} sip.leg=A sip.rule=R22
    * sip.leg.answered sip.status_code=200
    sip.transaction BYE SERVER sip.leg=A sip.method=BYE sip.transport=TLS sip.status_code=200
  sipsvc.route INTERNAL sipsvc.routing.source=builtin sipsvc.routing.outcome=builtin sipsvc.routing.targets=1
  sip.leg.outbound CLIENT sip.leg=B1 sip.method=INVITE sip.scheme=sip sip.transport=UDP sip.secure=false sip.scheme.reason=dn contact sip sip.scheme.rule=R40 sip.dn=6000 sip.status_code=200
    * sip.scheme.decided network.transport=udp sip.leg=B1 sip.scheme=sip sip.scheme.reason=dn contact sip sip.scheme.rule=R40 sip.secure=false sip.transport=UDP
    * sip.header.rewrite sip.header=From sip.header.after=sip:alice@127.0.0.1 sip.header.before=sips:alice@127.0.0.1 sip.leg=B1 sip.rule=R14
    * sip.header.rewrite sip.header=To sip.header.after=sip:6000@{bob} sip.header.before=sips:6000@{sipsvc-tls} sip.leg=B1 sip.rule=R14
    * sip.header.rewrite sip.header=Contact sip.header.after=sip:alice@{sipsvc-udp} sip.header.before=sips:alice@{alice} sip.leg=B1 sip.rule=R14
    * sip.header.rewrite sip.header=Via sip.header.after=SIP/2.0/UDP sip.header.before=SIP/2.0/TLS sip.leg=B1 sip.rule=R14
    * sip.leg.ringing sip.status_code=180
    * sip.leg.answered sip.status_code=200
    sip.transaction BYE CLIENT sip.leg=B1 sip.method=BYE sip.transport=UDP sip.status_code=200
`
	compareSpanTree(t, spanTree(spans, names), want)

	callSpan := commonChecks(t, spans, sink)
	checkSpanAttrs(t, "call", callSpan, map[string]any{"sipsvc.call.origin": "sip", "sip.caller": "alice", "sip.dialed": "6000", "sipsvc.call.outcome": "answered", "sip.cause": attrPresent})
	aCallID := call.Invite.CallID().Value()
	a := legAttrs("A", aCallID, "sips:6000@"+b.tlsA, "TLS", "127.0.0.1:1", b.tlsA, b.tlsA, t)
	a["network.peer.port"] = attrPresent
	a["client.address"], a["client.port"] = "127.0.0.1", attrPresent
	a["tls.protocol.name"], a["tls.protocol.version"], a["tls.cipher"], a["tls.established"] = "tls", attrPresent, attrPresent, true
	checkSpanAttrs(t, "leg A", spanOne(t, spans, sc.SpanLegInbound, "A"), a)
	b1 := legAttrs("B1", binv.CallID().Value(), "sip:6000@"+bob.Addr, "UDP", bob.Addr, b.udp, bob.Addr, t)
	b1["sip.dn"] = "6000"
	checkSpanAttrs(t, "leg B1", spanOne(t, spans, sc.SpanLegOutbound, "B1"), b1)
	checkSpanAttrs(t, "route", spanOne(t, spans, sc.SpanRoute, ""), map[string]any{"sipsvc.routing.source": "builtin", "sipsvc.routing.outcome": "builtin", "sipsvc.routing.targets": 1})
	for _, s := range spansFind(spans, sc.TransactionSpanName("BYE"), "SERVER", "A") {
		tx := txAttrs("A", "BYE", aCallID, "TLS", "127.0.0.1:1", t)
		checkSpanAttrs(t, "BYE received on A", s, tx)
	}
	for _, s := range spansFind(spans, sc.TransactionSpanName("BYE"), "CLIENT", "B1") {
		checkSpanAttrs(t, "BYE sent on B1", s, txAttrs("B1", "BYE", binv.CallID().Value(), "UDP", bob.Addr, t))
	}
	byeLink(t, spans, "A", "B1")
	ackEvents(t, spans, "A", "B1")
	if h := binv.GetHeader("traceparent"); h != nil {
		t.Errorf("DN without the traceparent option got %q", h.Value())
	}
}

// TestTraceTree_SipToSips: a plain caller over UDP reaches a sips-only DN over TLS (R8
// upgrade on B1, R10 Contact on A); the callee hangs up, so the BYE is a SERVER span on B1
// and a CLIENT span on A.
func TestTraceTree_SipToSips_R8_R10(t *testing.T) {
	bob := newPhone(t, "bob", "TLS")
	b, sink := tracedB2BUA(t, nil, dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: fmt.Sprintf("sips:5000@%s", bob.Addr)})
	alice := newPhone(t, "alice", "UDP")
	call := alice.invite(b, "5000", inviteOpts{})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	// sipgo hands each message to its own goroutine, so an ACK and a BYE sent back to back
	// can be processed in either order; give the ACK its turn, as a phone would.
	time.Sleep(50 * time.Millisecond)
	binv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	bob.WaitRequest(sip.ACK, 1, 2*time.Second)
	if code := byeFromPhone(t, bob, binv); code != 200 {
		t.Fatalf("BYE from B → %d", code)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	spans := sink.wait(t, 1)

	names := map[string]string{b.tlsA: "{sipsvc-tls}", b.udp: "{sipsvc-udp}", alice.Addr: "{alice}", bob.Addr: "{bob}"}
	want := `sipsvc.call INTERNAL sipsvc.call.origin=sip sip.caller=alice sip.dialed=5000 sipsvc.call.outcome=answered
  sip.leg.inbound SERVER sip.leg=A sip.method=INVITE sip.scheme=sip sip.transport=UDP sip.secure=false sip.scheme.reason=request-uri sip sip.scheme.rule=R7 sip.status_code=200
    * sip.scheme.decided network.transport=udp sip.leg=A sip.scheme=sip sip.scheme.reason=request-uri sip sip.scheme.rule=R7 sip.secure=false sip.transport=UDP
    * sip.leg.ringing sip.status_code=180
    * sip.header.rewrite sip.header=Contact sip.header.after=sip:5000@{sipsvc-udp} sip.header.before=sips:bob@{bob} sip.leg=A sip.rule=R10
    * sip.leg.answered sip.status_code=200
    sip.transaction BYE CLIENT sip.leg=A sip.method=BYE sip.transport=UDP sip.status_code=200
  sipsvc.route INTERNAL sipsvc.routing.source=builtin sipsvc.routing.outcome=builtin sipsvc.routing.targets=1
  sip.leg.outbound CLIENT sip.leg=B1 sip.method=INVITE sip.scheme=sips sip.transport=TLS sip.secure=true sip.scheme.reason=dn contact sips sip.scheme.rule=R3 sip.dn=5000 sip.status_code=200
    * sip.scheme.decided network.transport=tcp sip.leg=B1 sip.scheme=sips sip.scheme.reason=dn contact sips sip.scheme.rule=R3 sip.secure=true sip.transport=TLS
    * sip.header.rewrite sip.header=From sip.header.after=sips:alice@127.0.0.1 sip.header.before=sip:alice@127.0.0.1 sip.leg=B1 sip.rule=R8
    * sip.header.rewrite sip.header=To sip.header.after=sips:5000@{bob} sip.header.before=sip:5000@{sipsvc-udp} sip.leg=B1 sip.rule=R8
    * sip.header.rewrite sip.header=Contact sip.header.after=sips:alice@{sipsvc-tls} sip.header.before=sip:alice@{alice} sip.leg=B1 sip.rule=R8
    * sip.header.rewrite sip.header=Via sip.header.after=SIP/2.0/TLS sip.header.before=SIP/2.0/UDP sip.leg=B1 sip.rule=R8
    * sip.leg.ringing sip.status_code=180
    * sip.leg.answered sip.status_code=200
    sip.transaction BYE SERVER sip.leg=B1 sip.method=BYE sip.transport=TLS sip.status_code=200
`
	compareSpanTree(t, spanTree(spans, names), want)

	callSpan := commonChecks(t, spans, sink)
	checkSpanAttrs(t, "call", callSpan, map[string]any{"sipsvc.call.origin": "sip", "sip.caller": "alice", "sip.dialed": "5000", "sipsvc.call.outcome": "answered", "sip.cause": attrPresent})
	aCallID := call.Invite.CallID().Value()
	a := legAttrs("A", aCallID, "sip:5000@"+b.udp, "UDP", alice.Addr, b.udp, b.udp, t)
	a["client.address"], a["client.port"] = "127.0.0.1", attrPresent
	a["network.peer.port"] = attrPresent // the phone sends from another port than it listens on
	checkSpanAttrs(t, "leg A", spanOne(t, spans, sc.SpanLegInbound, "A"), a)
	b1 := legAttrs("B1", binv.CallID().Value(), "sips:5000@"+bob.Addr, "TLS", bob.Addr, "127.0.0.1:1", bob.Addr, t)
	b1["network.local.port"] = attrPresent // the TLS connection's ephemeral port
	b1["sip.dn"] = "5000"
	b1["tls.protocol.name"], b1["tls.protocol.version"], b1["tls.cipher"], b1["tls.established"] = "tls", attrPresent, attrPresent, true
	b1["tls.server.subject"] = "CN=sipsvc test,O=sipsvc"
	checkSpanAttrs(t, "leg B1", spanOne(t, spans, sc.SpanLegOutbound, "B1"), b1)
	for _, s := range spansFind(spans, sc.TransactionSpanName("BYE"), "SERVER", "B1") {
		tx := txAttrs("B1", "BYE", binv.CallID().Value(), "TLS", "127.0.0.1:1", t)
		checkSpanAttrs(t, "BYE received on B1", s, tx)
	}
	for _, s := range spansFind(spans, sc.TransactionSpanName("BYE"), "CLIENT", "A") {
		checkSpanAttrs(t, "BYE sent on A", s, txAttrs("A", "BYE", aCallID, "UDP", alice.Addr, t))
	}
	byeLink(t, spans, "B1", "A")
	ackEvents(t, spans, "A", "B1")
}

// traceparent header value of the W3C example: sampled.
const (
	inTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	inSpanID  = "00f067aa0ba902b7"
)

// tpCall places one call from alice (UDP) carrying traceparent flags to DN 6000 (bob, UDP,
// with the per-DN traceparent option) and hangs up; it returns bob's INVITE.
func tpCall(t *testing.T, b *b2bua, alice, bob *phone, flags string) *sip.Request {
	t.Helper()
	call := alice.invite(b, "6000", inviteOpts{headers: []sip.Header{
		sip.NewHeader("traceparent", "00-"+inTraceID+"-"+inSpanID+"-"+flags),
		sip.NewHeader("tracestate", "congo=t61rcWkgMzE"),
	}})
	if res := call.Wait(5 * time.Second); res.StatusCode != 200 {
		t.Fatalf("final %d", res.StatusCode)
	}
	call.Ack()
	// sipgo hands each message to its own goroutine, so an ACK and a BYE sent back to back
	// can be processed in either order; give the ACK its turn, as a phone would.
	time.Sleep(50 * time.Millisecond)
	binv := bob.WaitRequest(sip.INVITE, 1, time.Second)
	if res := call.Request(sip.BYE, nil); res.StatusCode != 200 {
		t.Fatalf("BYE → %d", res.StatusCode)
	}
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	return binv
}

// parseTraceparent splits a traceparent header: version, trace id, parent id, flags.
func parseTraceparent(t *testing.T, req *sip.Request) (traceID, parentID, flags string) {
	t.Helper()
	h := req.GetHeader("traceparent")
	if h == nil {
		t.Fatalf("INVITE to the DN with traceparent: true has no traceparent header:\n%s", req.String())
	}
	p := strings.Split(strings.TrimSpace(h.Value()), "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 || len(p[3]) != 2 {
		t.Fatalf("traceparent %q is not W3C version 00", h.Value())
	}
	return p[1], p[2], p[3]
}

// TestTrace_Traceparent: an inbound INVITE's traceparent is continued (same trace, the call
// span's parent is the remote span, sip.traceparent.received), and the INVITE to a DN with
// the traceparent option carries the outbound leg span's context (and the tracestate).
func TestTrace_Traceparent_InboundContinuedAndSentToDN(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	d := dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip"), Traceparent: true}
	b, sink := tracedB2BUA(t, nil, d)
	alice := newPhone(t, "alice", "UDP")
	binv := tpCall(t, b, alice, bob, "01")
	spans := sink.wait(t, 1)

	callSpan := spanOne(t, spans, sc.SpanCall, "")
	if callSpan.TraceID != inTraceID || callSpan.ParentSpanID != inSpanID {
		t.Errorf("call span trace %s parent %s, want the inbound traceparent's %s / %s", callSpan.TraceID, callSpan.ParentSpanID, inTraceID, inSpanID)
	}
	for _, s := range sink.rec.Ended() {
		if s.Name() == sc.SpanCall && !s.Parent().IsRemote() {
			t.Errorf("call span's parent is not the remote span context of the inbound traceparent")
		}
	}
	checkSpanAttrs(t, "call", callSpan, map[string]any{"sip.traceparent.received": true})
	commonChecks(t, spans, sink)
	b1 := spanOne(t, spans, sc.SpanLegOutbound, "B1")
	checkSpanAttrs(t, "leg B1", b1, map[string]any{"sip.traceparent.sent": true})
	tid, pid, flags := parseTraceparent(t, binv)
	if tid != inTraceID || pid != b1.SpanID || flags != "01" {
		t.Errorf("traceparent sent to the DN: trace %s parent %s flags %s, want %s / the B1 leg span %s / 01", tid, pid, flags, inTraceID, b1.SpanID)
	}
	if got := hdr(binv, "tracestate"); got != "congo=t61rcWkgMzE" {
		t.Errorf("tracestate sent to the DN %q, want the inbound one", got)
	}
	if _, ok := spanOne(t, spans, sc.SpanLegInbound, "A").Attributes["sip.traceparent.sent"]; ok {
		t.Errorf("leg A has sip.traceparent.sent")
	}
}

// TestTrace_Traceparent_NotSampled: "not sampled" in the inbound traceparent means the call
// is not traced (parent-based sampler), yet the DN still joins the caller's trace.
func TestTrace_Traceparent_NotSampled(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	d := dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip"), Traceparent: true}
	b, sink := tracedB2BUA(t, nil, d)
	alice := newPhone(t, "alice", "UDP")
	binv := tpCall(t, b, alice, bob, "00")
	b.rec.waitKind(t, EventCallEnded)
	time.Sleep(100 * time.Millisecond)
	if got := sink.rec.Started(); len(got) != 0 {
		t.Errorf("%d spans recorded for a call whose traceparent says not sampled (first %s)", len(got), got[0].Name())
	}
	tid, _, flags := parseTraceparent(t, binv)
	if tid != inTraceID || flags != "00" {
		t.Errorf("traceparent to the DN: trace %s flags %s, want %s flags 00", tid, flags, inTraceID)
	}
}

// TestTrace_Traceparent_TracingOff: with no tracer provider (tracing off) the inbound trace
// context still passes through to a DN with the traceparent option.
func TestTrace_Traceparent_TracingOff(t *testing.T) {
	bob := newPhone(t, "bob", "UDP")
	d := dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: bob.ContactURI("6000", "sip"), Traceparent: true}
	b := startB2BUA(t, nil, d)
	alice := newPhone(t, "alice", "UDP")
	binv := tpCall(t, b, alice, bob, "01")
	if tid, _, _ := parseTraceparent(t, binv); tid != inTraceID {
		t.Errorf("traceparent to the DN has trace %s, want the caller's %s", tid, inTraceID)
	}
}

// TestTrace_MakeCall_ParentIsRequestSpan: the span in MakeCall's ctx (the API request span)
// is the parent of sipsvc.call; the call outlives the request; both legs are outbound.
func TestTrace_MakeCall_ParentIsRequestSpan(t *testing.T) {
	alice, bob := newPhone(t, "alice", "UDP"), newPhone(t, "bob", "UDP")
	b, sink := tracedB2BUA(t, nil, ext("1000", alice), ext("2000", bob))
	ctx, cancel := context.WithCancel(context.Background())
	ctx, req := sink.tp.Tracer("test").Start(ctx, "sipsvc.v1.CallService/MakeCall", trace.WithSpanKind(trace.SpanKindServer))
	ci, err := b.s.MakeCall(ctx, MakeCallRequest{From: "1000", To: "2000"})
	req.End()
	cancel() // the request is over; the call goes on
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, b, ci.ID, StateTalking)
	if err := b.s.ReleaseCall(context.Background(), ci.ID); err != nil {
		t.Fatal(err)
	}
	alice.WaitRequest(sip.BYE, 1, 2*time.Second)
	bob.WaitRequest(sip.BYE, 1, 2*time.Second)
	spans := sink.wait(t, 1)

	callSpan := spanOne(t, spans, sc.SpanCall, "")
	if callSpan.TraceID != req.SpanContext().TraceID().String() || callSpan.ParentSpanID != req.SpanContext().SpanID().String() {
		t.Errorf("call span trace %s parent %s, want the request span %s", callSpan.TraceID, callSpan.ParentSpanID, req.SpanContext().SpanID())
	}
	checkSpanAttrs(t, "call", callSpan, map[string]any{"sipsvc.call.id": ci.ID, "sipsvc.call.origin": "api", "sip.caller": "1000", "sip.dialed": "2000", "sipsvc.call.outcome": "answered"})
	var own []otlp.Span
	for _, s := range spans {
		if s.Scope == "github.com/sipsvc/sipsvc/signaling" {
			own = append(own, s)
		}
	}
	commonChecks(t, own, sink)
	if n := len(otlp.Named(spans, sc.SpanLegInbound)); n != 0 {
		t.Errorf("MakeCall call has %d sip.leg.inbound spans: both legs are sip.leg.outbound", n)
	}
	legs := spansFind(spans, sc.SpanLegOutbound, "CLIENT", "")
	if len(legs) != 2 {
		t.Fatalf("%d sip.leg.outbound CLIENT spans, want 2:\n%s", len(legs), otlp.Tree(spans, treeAttrs...))
	}
	dns := map[string]bool{}
	for _, l := range legs {
		dns[l.Str("sip.dn")] = true
		if l.ParentSpanID != callSpan.SpanID {
			t.Errorf("leg %s parent %s, want the call span", l.Str("sip.leg"), l.ParentSpanID)
		}
		// sipsvc's own BYE on each leg: a CLIENT transaction span without a link.
		byes := spansFind(spans, sc.TransactionSpanName("BYE"), "CLIENT", l.Str("sip.leg"))
		if len(byes) != 1 {
			t.Errorf("leg %s: %d sip.transaction BYE CLIENT spans for the BYE of ReleaseCall, want 1", l.Str("sip.leg"), len(byes))
		}
		for _, by := range byes {
			if by.ParentSpanID != l.SpanID || len(by.Links) != 0 {
				t.Errorf("leg %s BYE span parent %s links %v, want the leg span and no link", l.Str("sip.leg"), by.ParentSpanID, by.Links)
			}
		}
	}
	if !dns["1000"] || !dns["2000"] {
		t.Errorf("leg spans sip.dn %v, want 1000 and 2000", dns)
	}
}
