package registrar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
)

// FuzzServeRegister feeds any REGISTER sipgo can parse to the registrar: it must answer
// exactly once with a final status, never panic, and write only on 200. Seeds are
// testdata/*.sip.
func FuzzServeRegister(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.sip"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n"))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER {
			return
		}
		req.SetTransport("UDP")
		req.SetSource("127.0.0.1:5060")
		st := store.NewMemory()
		for _, n := range []string{"1000", "1001"} {
			d := dn.DN{Number: n, Type: dn.TypeExtension, Contact: "*"}
			if n == "1000" {
				d.HA1MD5, d.HA1SHA256 = dn.HashPassword(n, "sipsvc", "pw")
			}
			_ = st.PutDN(ctx, d)
		}
		reg, err := registrar.New(registrar.Config{Store: st, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		tx := newFakeTx()
		reg.ServeRegister(ctx, req, tx)
		if len(tx.res) != 1 || tx.res[0].StatusCode < 200 {
			t.Fatalf("want one final response, got %d", len(tx.res))
		}
		all, _ := st.AllBindings(ctx)
		if tx.res[0].StatusCode != 200 && len(all) != 0 {
			t.Fatalf("status %d but bindings changed", tx.res[0].StatusCode)
		}
	})
}
