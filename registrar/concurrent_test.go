package registrar_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// TestServeRegister_Concurrent registers many devices of one DN at once, each with its own
// Call-ID, nonce and rising nc: every REGISTER succeeds and every device ends up bound
// (run with -race).
func TestServeRegister_Concurrent(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	d := dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "*"}
	d.HA1MD5, d.HA1SHA256 = dn.HashPassword("1000", realm, "pw")
	if err := st.PutDN(ctx, d); err != nil {
		t.Fatal(err)
	}
	ev := &recorder{}
	reg, err := registrar.New(registrar.Config{Store: st, Realm: realm, Observer: ev, MaxBindingsPerDN: 16})
	if err != nil {
		t.Fatal(err)
	}
	const devices, rounds = 16, 8
	raw := func(dev, cseq int, auth string) *sip.Request {
		port := strconv.Itoa(6000 + dev)
		s := "REGISTER sip:127.0.0.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + port + ";branch=z9hG4bK-c" + port + "-" + strconv.Itoa(cseq) + "\r\n" +
			"To: <sip:1000@127.0.0.1>\r\nFrom: <sip:1000@127.0.0.1>;tag=" + port + "\r\n" +
			"Call-ID: dev-" + port + "\r\nCSeq: " + strconv.Itoa(cseq) + " REGISTER\r\n" +
			"Contact: <sip:1000@127.0.0.1:" + port + ">\r\n"
		if auth != "" {
			s += "Authorization: " + auth + "\r\n"
		}
		msg, err := sip.ParseMessage([]byte(s + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			panic(err)
		}
		req := msg.(*sip.Request)
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:" + port)
		return req
	}
	var wg sync.WaitGroup
	for dev := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := newFakeTx()
			reg.ServeRegister(ctx, raw(dev, 1, ""), tx)
			chal, err := digest.ParseChallenge(tx.last().GetHeader("WWW-Authenticate").Value())
			if err != nil {
				t.Error(err)
				return
			}
			for i := 1; i <= rounds; i++ {
				cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:127.0.0.1",
					Username: "1000", Password: "pw", Count: i})
				tx := newFakeTx()
				reg.ServeRegister(ctx, raw(dev, 1+i, cred.String()), tx)
				if code := tx.last().StatusCode; code != 200 {
					t.Errorf("device %d round %d: %d", dev, i, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	bs, _ := st.Bindings(ctx, "1000")
	if len(bs) != devices {
		t.Fatalf("%d bindings, want %d", len(bs), devices)
	}
	if a, r := ev.count(signaling.EventRegistrationAdded), ev.count(signaling.EventRegistrationRefresh); a != devices || r != devices*(rounds-1) {
		t.Fatalf("events: %d added, %d refreshed", a, r)
	}
}
