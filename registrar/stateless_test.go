package registrar_test

import (
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRegister_ChallengeIsStateless sends one unauthenticated REGISTER twice over UDP with the
// same branch, as a UAC retransmits it when the 401 is lost. A stateful server transaction
// would answer the copy with the very same 401; the stateless challenge (RFC 3261 §8.2.7)
// answers each copy afresh, with a new nonce, and the service keeps no transaction for it.
func TestRegister_ChallengeIsStateless(t *testing.T) {
	h := newHarness(t, nil)
	h.addDN("1000", "*", "secret")
	p := h.phone("UDP", false)
	req := p.request(sip.REGISTER, reg{number: "1000", contacts: []string{"<sip:1000@127.0.0.1:5999>"}})
	conn, err := net.Dial("udp", h.addr["UDP"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: local.IP.String(), Port: local.Port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	req.PrependHeader(via)
	raw := []byte(req.String())

	nonces := make([]string, 0, 2)
	for i := range 2 {
		if i > 0 {
			// A UAC retransmits after T1 (500 ms). The server ends the transaction just after
			// sending the 401, so a copy sent the instant the 401 arrives could still meet it.
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := conn.Write(raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 8192)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("copy %d: no answer: %v", i+1, err)
		}
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		res, ok := msg.(*sip.Response)
		if !ok || res.StatusCode != 401 {
			t.Fatalf("copy %d: want 401, got %s", i+1, msg.String())
		}
		nonces = append(nonces, challenge(t, res, "SHA-256").Nonce)
	}
	if nonces[0] == nonces[1] {
		t.Fatalf("both copies got nonce %q: the challenge was retransmitted by a kept transaction", nonces[0])
	}
}
