package registrar_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
)

// ExampleNew wires a registrar to a store and a sipgo server. In sipsvc the B2BUA's
// signaling.Server takes it as Config.Registrar and Config.Authenticator, and the store as
// Config.Directory.
func ExampleNew() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	st := store.NewMemory() // sipsvc uses store.OpenBolt in the data directory
	d := dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "*"}
	d.HA1MD5, d.HA1SHA256 = dn.HashPassword(d.Number, "example.net", "secret")
	if err := st.PutDN(ctx, d); err != nil {
		fmt.Println(err)
		return
	}
	reg, err := registrar.New(registrar.Config{
		Store: st, Realm: "example.net",
		DefaultExpires: time.Hour, MinExpires: time.Minute, MaxExpires: 2 * time.Hour,
		Logger: slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = reg.Run(ctx) }() // purges expired bindings

	ua, _ := sipgo.NewUA()
	defer ua.Close()
	srv, _ := sipgo.NewServer(ua)
	srv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) { reg.ServeRegister(ctx, req, tx) })
	// srv.ListenAndServe(ctx, "udp", "0.0.0.0:5060") …
	fmt.Println("ready")
	// Output: ready
}
