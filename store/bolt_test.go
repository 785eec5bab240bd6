package store_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/store"
)

func openBolt(t *testing.T, path string, now func() time.Time) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(context.Background(), store.BoltConfig{Path: path, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBolt_RestartKeepsData writes DNs and bindings, closes the store and reopens it.
func TestBolt_RestartKeepsData(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	path := filepath.Join(t.TempDir(), "data", "sipsvc.db")
	s := openBolt(t, path, c.Now)
	must(t, s.CreateDN(ctx, ext("1000")))
	must(t, s.PutBinding(ctx, binding(c, "1000", "sips:1000@10.0.0.1:5061", time.Hour)))
	must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.2:5060", time.Second)))
	must(t, s.Close())

	c.Add(time.Minute) // the short binding expired while we were down
	s = openBolt(t, path, c.Now)
	defer s.Close()
	if _, err := s.Lookup(ctx, "1000"); err != nil {
		t.Fatalf("DN lost on restart: %v", err)
	}
	bs, err := s.Bindings(ctx, "1000")
	must(t, err)
	if len(bs) != 1 || bs[0].Contact != "sips:1000@10.0.0.1:5061" {
		t.Fatalf("bindings after restart = %+v", bs)
	}
}

// TestBolt_SchemaVersion refuses a database written by a future schema.
func TestBolt_SchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sipsvc.db")
	s := openBolt(t, path, nil)
	must(t, s.Close())

	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte(strconv.Itoa(store.SchemaVersion+1)))
	}))
	must(t, db.Close())

	_, err = store.OpenBolt(context.Background(), store.BoltConfig{Path: path})
	if !errors.Is(err, store.ErrSchemaVersion) || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("OpenBolt(future schema) = %v, want ErrSchemaVersion naming the version", err)
	}
}

// TestBolt_BindingWithoutPathDecodes: a binding written before dn.Binding.Path existed (no
// "path" key) still decodes, with no Path, under the same schema version: no migration.
func TestBolt_BindingWithoutPathDecodes(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	path := filepath.Join(t.TempDir(), "sipsvc.db")
	s := openBolt(t, path, c.Now)
	must(t, s.CreateDN(ctx, ext("1000")))
	must(t, s.Close())

	old := `{"number":"1000","contact":"sip:1000@10.0.0.1:5060","secure":false,"transport":"UDP",` +
		`"source":"10.0.0.1:5060","call_id":"cid","cseq":3,"expires":"` + c.Now().Add(time.Hour).Format(time.RFC3339Nano) +
		`","updated":"` + c.Now().Format(time.RFC3339Nano) + `"}`
	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("bindings")).Put([]byte("1000\x00"+dn.BindingKey("sip:1000@10.0.0.1:5060")), []byte(old))
	}))
	must(t, db.Close())

	s = openBolt(t, path, c.Now)
	defer s.Close()
	bs, err := s.Bindings(ctx, "1000")
	must(t, err)
	if len(bs) != 1 || bs[0].Contact != "sip:1000@10.0.0.1:5060" || bs[0].CSeq != 3 || bs[0].Path != nil {
		t.Fatalf("old binding decoded as %+v", bs)
	}
	b := bs[0]
	b.Path = []string{"sip:edge.example.net;lr"}
	must(t, s.PutBinding(ctx, b))
	if bs, _ := s.Bindings(ctx, "1000"); len(bs) != 1 || len(bs[0].Path) != 1 {
		t.Fatalf("rewritten binding %+v", bs)
	}
}

// TestBolt_LockedFile fails fast when another handle holds the database.
func TestBolt_LockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sipsvc.db")
	s := openBolt(t, path, nil)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := store.OpenBolt(ctx, store.BoltConfig{Path: path}); err == nil {
		t.Fatal("second OpenBolt on a locked file succeeded")
	}
}

const killHelperEnv = "SIPSVC_STORE_KILL_HELPER"

// TestBolt_KillHelper is not a test: run by TestBolt_SurvivesKill9 in a child process, it
// writes, reports "written" on stdout and waits to be killed.
func TestBolt_KillHelper(t *testing.T) {
	path := os.Getenv(killHelperEnv)
	if path == "" {
		t.Skip("helper process for TestBolt_SurvivesKill9")
	}
	ctx := context.Background()
	s, err := store.OpenBolt(ctx, store.BoltConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		n := strconv.Itoa(1000 + i)
		must(t, s.PutDN(ctx, ext(n)))
		must(t, s.PutBinding(ctx, dn.Binding{Number: n, Contact: "sip:" + n + "@10.0.0.1:5060",
			Expires: time.Now().Add(time.Hour), Updated: time.Now()}))
	}
	os.Stdout.WriteString("written\n")
	time.Sleep(time.Minute) // killed long before this
}

// TestBolt_SurvivesKill9 SIGKILLs a process right after its writes returned and checks
// that every write is there: a write is durable before it returns.
func TestBolt_SurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	exe, err := os.Executable()
	must(t, err)
	path := filepath.Join(t.TempDir(), "sipsvc.db")
	cmd := exec.Command(exe, "-test.run=^TestBolt_KillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	done := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "written" {
				done <- true
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal("helper exited without writing")
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("helper timed out")
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	s := openBolt(t, path, nil)
	defer s.Close()
	ds, err := s.ListDNs(context.Background())
	must(t, err)
	if len(ds) != 20 {
		t.Fatalf("after kill -9: %d DNs, want 20", len(ds))
	}
	all, err := s.AllBindings(context.Background())
	must(t, err)
	if len(all) != 20 {
		t.Fatalf("after kill -9: %d bindings, want 20", len(all))
	}
}

// TestBolt_GroupCommitIsolatesFailures: writes committed together do not share a failure:
// a write for a missing DN fails alone, the others in its group commit.
func TestBolt_GroupCommitIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sipsvc.db"), c.Now)
	defer s.Close()
	must(t, s.CreateDN(ctx, ext("1000")))
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			number := "1000"
			if i%3 == 0 {
				number = "4040" // no such DN
			}
			errs[i] = s.PutBinding(ctx, binding(c, number, "sip:"+number+"@10.0.0.1:"+strconv.Itoa(10000+i), time.Hour))
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case i%3 == 0 && !errors.Is(err, dn.ErrNotFound):
			t.Fatalf("write %d for a missing DN: %v", i, err)
		case i%3 != 0 && err != nil:
			t.Fatalf("write %d: %v", i, err)
		case err == nil:
			ok++
		}
	}
	bs, err := s.Bindings(ctx, "1000")
	must(t, err)
	if len(bs) != ok {
		t.Fatalf("%d bindings stored, %d writes succeeded", len(bs), ok)
	}
	// After Close, writes fail with ErrClosed instead of hanging.
	must(t, s.Close())
	if err := s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0.9", time.Hour)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("PutBinding after Close = %v", err)
	}
}

// TestBolt_CommitInterval: a lone writer commits at once, write after write; writes that
// come concurrently wait until CommitInterval has passed since the previous commit
// started, and commit together.
func TestBolt_CommitInterval(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	const interval = time.Second
	s, err := store.OpenBolt(ctx, store.BoltConfig{Path: filepath.Join(t.TempDir(), "sipsvc.db"), Now: c.Now, CommitInterval: interval})
	must(t, err)
	defer s.Close()
	must(t, s.CreateDN(ctx, ext("1000")))

	start := time.Now()
	for i := range 3 {
		must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10.0.0."+strconv.Itoa(i), time.Hour)))
	}
	if d := time.Since(start); d >= interval*8/10 {
		t.Fatalf("three writes, one after the other, took %v: a lone writer must not wait", d)
	}
	// concurrent writes n at a time; returns how long each took
	burst := func(round, n int) []time.Duration {
		took := make([]time.Duration, n)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				must(t, s.PutBinding(ctx, binding(c, "1000", "sip:1000@10."+strconv.Itoa(round)+".1."+strconv.Itoa(i), time.Hour)))
				took[i] = time.Since(start)
			}()
		}
		wg.Wait()
		return took
	}
	// The first burst follows lone commits: its writes queue behind one commit and the
	// rest go together. The second burst follows a commit of several writes: it waits.
	burst(1, 20)
	for i, d := range burst(2, 20) {
		if d < interval/2 {
			t.Fatalf("write %d of a concurrent burst committed after %v, want it to wait for the commit interval (%v)", i, d, interval)
		}
	}
	bs, err := s.Bindings(ctx, "1000")
	must(t, err)
	if len(bs) != 43 {
		t.Fatalf("%d bindings stored, want 43", len(bs))
	}
}
