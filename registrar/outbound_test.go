package registrar_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/registrar"
)

// TestRegister_RFC5626_OutboundBinding (R33; RFC 5626 §5.2): a REGISTER over TLS or TCP
// with "Supported: outbound" and a Contact with +sip.instance and reg-id makes an outbound
// binding: instance, reg-id and flow stored, 200 with "Require: outbound" and the reg-id
// echoed. Without "Supported: outbound", without an instance, over UDP or behind a Path the
// reg-id is ignored (a normal binding, no Require). More than one Contact with reg-id, or a
// reg-id that is not 1..2^31-1, is a 400.
func TestRegister_RFC5626_OutboundBinding(t *testing.T) {
	const inst = `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"`
	tests := []struct {
		name      string
		transport string
		contacts  []string
		supported string
		path      string
		code      int
		outbound  bool // Require: outbound and RegID stored
	}{
		{"TLS outbound", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=1"}, "outbound, path", "", 200, true},
		{"TCP outbound", "TCP", []string{"<sip:7790@127.0.0.1:5070;transport=tcp>;" + inst + ";reg-id=2"}, "outbound", "", 200, true},
		{"no Supported outbound: reg-id ignored", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=1"}, "path", "", 200, false},
		{"no instance: reg-id ignored", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;reg-id=1"}, "outbound", "", 200, false},
		{"UDP: no flow sipsvc can keep", "UDP", []string{"<sip:7790@127.0.0.1:5070>;" + inst + ";reg-id=1"}, "outbound", "", 200, false},
		{"behind a Path: the edge holds the flow", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=1"}, "outbound", "<sip:edge.example.net;lr>", 200, false},
		{"two Contacts with reg-id", "TLS", []string{
			"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=1",
			"<sip:7790@127.0.0.1:5071;transport=tls>;" + inst + ";reg-id=2"}, "outbound", "", 400, false},
		{"reg-id 0", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=0"}, "outbound", "", 400, false},
		{"reg-id not a number", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=x"}, "outbound", "", 400, false},
		{"reg-id over 2^31-1", "TLS", []string{"<sip:7790@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=2147483648"}, "outbound", "", 400, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.addDN("7790", "*", "")
			p := h.phone(tc.transport, false)
			hdrs := []sip.Header{sip.NewHeader("Supported", tc.supported)}
			if tc.path != "" {
				hdrs = append(hdrs, sip.NewHeader("Path", tc.path))
			}
			res := p.register(reg{number: "7790", contacts: tc.contacts, headers: hdrs}, "")
			wantStatus(t, res, tc.code)
			bs := h.bindings("7790")
			if tc.code != 200 {
				if len(bs) != 0 {
					t.Fatalf("refused REGISTER stored %+v", bs)
				}
				return
			}
			if len(bs) != 1 {
				t.Fatalf("bindings = %+v", bs)
			}
			b := bs[0]
			require := headerValues(res, "Require")
			if got := slices.Contains(require, "outbound"); got != tc.outbound {
				t.Errorf("Require %q, want outbound %v", require, tc.outbound)
			}
			if b.Outbound() != tc.outbound {
				t.Errorf("binding outbound = %v (reg-id %d, instance %q), want %v", b.Outbound(), b.RegID, b.InstanceID, tc.outbound)
			}
			if !tc.outbound {
				if b.RegID != 0 {
					t.Errorf("reg-id %d stored for a normal binding", b.RegID)
				}
				return
			}
			if b.InstanceID != "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>" {
				t.Errorf("instance %q", b.InstanceID)
			}
			if b.Transport != tc.transport || !strings.HasPrefix(b.Source, "127.0.0.1:") {
				t.Errorf("flow %s %q, want %s from the phone", b.Transport, b.Source, tc.transport)
			}
			if c := contactsOf(res); len(c) != 1 || !strings.HasSuffix(tc.contacts[0], ";reg-id="+strconv.Itoa(b.RegID)) || !strings.Contains(c[0], ";reg-id="+strconv.Itoa(b.RegID)) {
				t.Errorf("200 Contact %q lacks the reg-id", c)
			}
		})
	}
}

// TestRegister_RFC5626_FlowsOfOneInstance (RFC 5626 §5.2, §4.2): a REGISTER with the same
// instance and reg-id replaces that flow's binding even with another Contact; another
// reg-id of the same instance is another flow, kept beside the first.
func TestRegister_RFC5626_FlowsOfOneInstance(t *testing.T) {
	const inst = `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e129>"`
	h := newHarness(t, nil)
	h.addDN("7791", "*", "")
	sup := []sip.Header{sip.NewHeader("Supported", "outbound")}
	p1 := h.phone("TLS", false)
	wantStatus(t, p1.register(reg{number: "7791", headers: sup,
		contacts: []string{"<sip:7791@127.0.0.1:5070;transport=tls>;" + inst + ";reg-id=1"}}, ""), 200)
	// The device lost its connection and registers flow 1 again with a new Contact port.
	p1b := h.phone("TLS", false)
	wantStatus(t, p1b.register(reg{number: "7791", headers: sup,
		contacts: []string{"<sip:7791@127.0.0.1:5072;transport=tls>;" + inst + ";reg-id=1"}}, ""), 200)
	bs := h.bindings("7791")
	if len(bs) != 1 || bs[0].Contact != "sip:7791@127.0.0.1:5072;transport=tls" || bs[0].RegID != 1 {
		t.Fatalf("after re-registering flow 1: %+v, want only the new Contact", bs)
	}
	// Flow 2 over another connection: a second binding of the same instance.
	p2 := h.phone("TLS", false)
	res := p2.register(reg{number: "7791", headers: sup,
		contacts: []string{"<sip:7791@127.0.0.1:5071;transport=tls>;" + inst + ";reg-id=2"}}, "")
	wantStatus(t, res, 200)
	bs = h.bindings("7791")
	if len(bs) != 2 || bs[0].Source == bs[1].Source {
		t.Fatalf("two flows: %+v", bs)
	}
	ids := []int{bs[0].RegID, bs[1].RegID}
	slices.Sort(ids)
	if !slices.Equal(ids, []int{1, 2}) {
		t.Errorf("reg-ids %v, want [1 2]", ids)
	}
	if len(contactsOf(res)) != 2 {
		t.Errorf("200 lists %q, want both flows", contactsOf(res))
	}
}

// TestRegister_RFC5626_ReplacedFlowWithinCap: re-registering a flow with a new Contact
// replaces its binding, so it passes a cap the DN is at; a new flow over the cap is refused
// and leaves the bindings as they were.
func TestRegister_RFC5626_ReplacedFlowWithinCap(t *testing.T) {
	const inst = `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e132>"`
	h := newHarness(t, nil, func(c *registrar.Config) { c.MaxBindingsPerDN = 1 })
	h.addDN("7792", "*", "")
	sup := []sip.Header{sip.NewHeader("Supported", "outbound")}
	for i, port := range []string{"5070", "5072"} {
		res := h.phone("TLS", false).register(reg{number: "7792", headers: sup,
			contacts: []string{"<sip:7792@127.0.0.1:" + port + ";transport=tls>;" + inst + ";reg-id=1"}}, "")
		wantStatus(t, res, 200)
		if bs := h.bindings("7792"); len(bs) != 1 || !strings.Contains(bs[0].Contact, port) {
			t.Fatalf("REGISTER %d: bindings %+v", i, bs)
		}
	}
	res := h.phone("TLS", false).register(reg{number: "7792", headers: sup,
		contacts: []string{"<sip:7792@127.0.0.1:5071;transport=tls>;" + inst + ";reg-id=2"}}, "")
	wantStatus(t, res, 403)
	if bs := h.bindings("7792"); len(bs) != 1 || !strings.Contains(bs[0].Contact, "5072") {
		t.Fatalf("after the refused flow: %+v", bs)
	}
}
