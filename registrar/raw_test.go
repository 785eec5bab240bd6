package registrar_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/store"
)

// fakeTx is a sip.ServerTransaction that keeps the responses.
type fakeTx struct {
	mu   sync.Mutex
	res  []*sip.Response
	done chan struct{}
}

func newFakeTx() *fakeTx { return &fakeTx{done: make(chan struct{})} }

func (f *fakeTx) Respond(res *sip.Response) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = append(f.res, res)
	return nil
}
func (f *fakeTx) last() *sip.Response {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.res) == 0 {
		return nil
	}
	return f.res[len(f.res)-1]
}
func (f *fakeTx) Terminate()                         {}
func (f *fakeTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (f *fakeTx) Done() <-chan struct{}              { return f.done }
func (f *fakeTx) Err() error                         { return nil }
func (f *fakeTx) Acks() <-chan *sip.Request          { return nil }
func (f *fakeTx) OnCancel(sip.FnTxCancel) bool       { return false }

var _ sip.ServerTransaction = (*fakeTx)(nil)

func readRaw(t testing.TB, name string) *sip.Request {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n")
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	req := msg.(*sip.Request)
	req.SetTransport("UDP")
	req.SetSource("127.0.0.1:5060")
	return req
}

// TestServeRegister_Raw feeds raw REGISTERs (testdata/*.sip) straight to ServeRegister,
// including ones a sipgo client would never send (no To).
func TestServeRegister_Raw(t *testing.T) {
	tests := []struct {
		file string
		want int
	}{
		{"register-missing-to.sip", 400},
		{"register-to-no-user.sip", 400},
		{"register-tel-aor.sip", 416},
		{"register-contact-no-host.sip", 400},
		{"register-expires-overflow.sip", 400},
		{"register-ok.sip", 200},
	}
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := store.NewMemoryClock(func() time.Time { return now })
	if err := st.PutDN(ctx, dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "*"}); err != nil {
		t.Fatal(err)
	}
	// OpenRegistration: these are parsing checks; the DN has no password.
	reg, err := registrar.New(registrar.Config{Store: st, Now: func() time.Time { return now }, OpenRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tx := newFakeTx()
			reg.ServeRegister(ctx, readRaw(t, tc.file), tx)
			res := tx.last()
			if res == nil || res.StatusCode != tc.want {
				t.Fatalf("response %v, want %d", res, tc.want)
			}
			bs, _ := st.Bindings(ctx, "1001")
			if tc.want != 200 && len(bs) != 0 {
				t.Fatalf("bindings changed: %+v", bs)
			}
		})
	}
	bs, _ := st.Bindings(ctx, "1001")
	want := dn.Binding{Number: "1001", Contact: "sip:1001@127.0.0.1:5060", Key: "1001@127.0.0.1:5060", Transport: "UDP", Source: "127.0.0.1:5060",
		InstanceID: "<urn:uuid:00000000-0000-0000-0000-000000000001>", CallID: "ok@test", CSeq: 1, UserAgent: "raw-test",
		Expires: now.Add(600 * time.Second), Updated: now}
	if len(bs) != 1 || !reflect.DeepEqual(bs[0], want) {
		t.Fatalf("binding\n got %+v\nwant %+v", bs, want)
	}
}

func TestNew_Validates(t *testing.T) {
	st := store.NewMemory()
	for _, cfg := range []registrar.Config{
		{},
		{Store: st, MinExpires: time.Hour, MaxExpires: time.Minute},
		{Store: st, DefaultExpires: time.Second},
		{Store: st, Realm: `bad"realm`},
	} {
		if _, err := registrar.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// refusingStore refuses every binding as invalid, as the store does a contact whose stored
// form does not parse.
type refusingStore struct{ store.Store }

func (refusingStore) PutBinding(context.Context, dn.Binding) error {
	return &dn.FieldError{Field: "contact", Msg: "refused by the test store"}
}

// TestServeRegister_StoreRefusesBinding: a binding the store finds invalid is the request's
// fault, answered 400, not a server error.
func TestServeRegister_StoreRefusesBinding(t *testing.T) {
	ctx := context.Background()
	mem := store.NewMemory()
	if err := mem.PutDN(ctx, dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "*"}); err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(registrar.Config{Store: refusingStore{mem}, OpenRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	tx := newFakeTx()
	reg.ServeRegister(ctx, readRaw(t, "register-ok.sip"), tx)
	if res := tx.last(); res == nil || res.StatusCode != 400 {
		t.Fatalf("response %v, want 400", res)
	}
	if bs, _ := mem.Bindings(ctx, "1001"); len(bs) != 0 {
		t.Fatalf("bindings stored: %+v", bs)
	}
}
