package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// TestRFC5626_OutboundRegistrationThenCall_R33 (issue 11): a device registers over TLS
// asking for SIP Outbound (Supported: outbound, +sip.instance, reg-id): the 200 OK says
// "Require: outbound" and the binding keeps the instance, reg-id and flow. A call reaches it
// over that very TLS connection. Once the device's connection is gone, a call does not go to
// the registered Contact (where the phone still listens) but ends 480 (RFC 5626 §5.3).
func TestRFC5626_OutboundRegistrationThenCall_R33(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.addDN(dn.DN{Number: "7795", Type: dn.TypeExtension, Contact: "*"})
	phone := newPhone(t, "7795", "TLS")
	phone.setAnswer(answerOK)

	const inst = "<urn:uuid:00000000-0000-1000-8000-000a95a0e131>"
	contact := `<sip:7795@` + phone.Addr + `;transport=tls>;+sip.instance="` + inst + `";reg-id=1`
	res := register(t, s, phone, "TLS", "sip", "7795", contact, sip.NewHeader("Supported", "outbound, path"))
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER → %d %s", res.StatusCode, res.Reason)
	}
	if h := res.GetHeader("Require"); h == nil || !strings.Contains(h.Value(), "outbound") {
		t.Errorf("RFC 5626 §5.2: 200 OK without Require: outbound\n%s", res)
	}
	bs, err := s.store.Bindings(context.Background(), "7795")
	if err != nil || len(bs) != 1 || !bs[0].Outbound() || bs[0].RegID != 1 || bs[0].InstanceID != inst || bs[0].Transport != "TLS" {
		t.Fatalf("outbound binding: %+v %v", bs, err)
	}

	call := newPhone(t, "alice", "UDP").invite(s, "7795", inviteOpts{})
	if final := call.Wait(5 * time.Second); final.StatusCode != 200 {
		t.Fatalf("call → %d", final.StatusCode)
	}
	call.Ack()
	inv := phone.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if inv.Source() != s.sipTLS {
		t.Errorf("R33: INVITE arrived from %s, not over the registered connection to %s", inv.Source(), s.sipTLS)
	}
	if code := call.Bye(); code != 200 {
		t.Errorf("BYE → %d", code)
	}

	// The device's connection goes away (e.g. sipsvc restarted, or a NAT dropped it).
	c, err := phone.UA.TransportLayer().GetConnection("tls", s.sipTLS)
	if err != nil || c == nil {
		t.Fatalf("the phone's connection to sipsvc: %v", err)
	}
	c.Ref(-1)
	must(t, c.Close())
	time.Sleep(500 * time.Millisecond) // sipsvc reads the close

	final := newPhone(t, "carol", "UDP").invite(s, "7795", inviteOpts{}).Wait(10 * time.Second)
	if final.StatusCode != 480 {
		t.Fatalf("call to a gone outbound flow → %d %s, want 480", final.StatusCode, final.Reason)
	}
	time.Sleep(200 * time.Millisecond)
	if n := phone.Count(sip.INVITE); n != 1 {
		t.Errorf("RFC 5626 §5.3: the phone got %d INVITEs, want 1 (none at its Contact)", n)
	}
}
