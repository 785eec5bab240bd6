package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/store"
)

// ExampleOpenBolt opens the embedded store in a data directory, seeds a DN and stores a
// binding with its absolute expiry.
func ExampleOpenBolt() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "sipsvc-example")
	defer os.RemoveAll(dir)

	s, err := store.OpenBolt(ctx, store.BoltConfig{Path: filepath.Join(dir, "sipsvc.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	if err := s.PutDN(ctx, dn.DN{Number: "7789", Type: dn.TypeExtension, Contact: "*"}); err != nil {
		fmt.Println(err)
		return
	}
	err = s.PutBinding(ctx, dn.Binding{Number: "7789", Contact: "sips:7789@172.21.83.24:5061", Secure: true,
		Transport: "TLS", Source: "172.21.83.24:40001", Expires: time.Now().Add(time.Hour), Updated: time.Now()})
	if err != nil {
		fmt.Println(err)
		return
	}
	bs, _ := s.Bindings(ctx, "7789")
	fmt.Println(len(bs), bs[0].Contact, bs[0].Secure)
	// Output: 1 sips:7789@172.21.83.24:5061 true
}
