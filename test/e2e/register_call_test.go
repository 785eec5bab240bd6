package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
)

// TestT4_SipsRegistrationThenCallOverSameTLSFlow_R33 is docs/sips.md T4 end to end: a phone
// registers a sips contact (with transport=tls) over TLS from an ephemeral port; the binding
// is stored without the transport parameter; a call from a plain UDP caller then reaches
// the phone as sips over the very TLS connection it registered on (R8, R33, P7), not over a
// new connection to the contact's port.
func TestT4_SipsRegistrationThenCallOverSameTLSFlow_R33(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.addDN(dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*"})
	phone := newPhone(t, "7789", "TLS")
	phone.setAnswer(answerOK)

	contact := "sips:7789@" + phone.Addr + ";transport=tls"
	res := register(t, s, phone, "TLS", "sips", "7789", contact)
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER → %d %s", res.StatusCode, res.Reason)
	}
	bs, err := s.store.Bindings(context.Background(), "7789")
	if err != nil || len(bs) != 1 {
		t.Fatalf("bindings %v %v", bs, err)
	}
	b := bs[0]
	if !b.Secure || strings.Contains(strings.ToLower(b.Contact), "transport") || b.Transport != "TLS" {
		t.Fatalf("T4: binding %+v: want secure, TLS, no transport parameter", b)
	}

	caller := newPhone(t, "alice", "UDP")
	call := caller.invite(s, "7789", inviteOpts{})
	final := call.Wait(5 * time.Second)
	if final.StatusCode != 200 {
		t.Fatalf("call → %d", final.StatusCode)
	}
	call.Ack()
	inv := phone.WaitRequest(sip.INVITE, 1, 3*time.Second)
	if inv.Recipient.Scheme != "sips" || inv.Via().Transport != "TLS" || inv.Transport() != "TLS" {
		t.Errorf("R8: INVITE %s Via %s over %s", inv.Recipient.String(), inv.Via().Transport, inv.Transport())
	}
	if _, ok := inv.Recipient.UriParams.Get("transport"); ok {
		t.Errorf("R6/T4: INVITE R-URI carries a transport parameter: %s", inv.Recipient.String())
	}
	// Over the registered flow the INVITE comes from sipsvc's TLS listening address; a new
	// connection to the contact would come from an ephemeral port.
	if inv.Source() != s.sipTLS {
		t.Errorf("R33: INVITE arrived from %s, not over the registered connection to %s", inv.Source(), s.sipTLS)
	}
	if code := call.Bye(); code != 200 {
		t.Errorf("BYE → %d", code)
	}
}
