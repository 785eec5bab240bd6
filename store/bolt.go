package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sipsvc/sipsvc/dn"
)

// SchemaVersion is the schema version this package writes. OpenBolt refuses a database
// with a higher version.
const SchemaVersion = 1

// Bucket and key names of schema version 1:
//
//	meta/schema_version          decimal SchemaVersion
//	dns/<number>                 JSON dn.DN
//	bindings/<number>\x00<key>   JSON dn.Binding (key is dn.BindingKey of the contact)
//
// DN numbers cannot contain NUL (dn.ValidNumber), so the NUL separator keeps the bindings
// of one DN together and a prefix scan finds exactly them.
//
// A JSON field added with omitempty, whose zero value means what its absence meant before
// (dn.Binding.Path: no Path, no preloaded Route), keeps the schema version: records written
// without it decode unchanged, so no migration runs. A change that older records cannot
// satisfy that way raises SchemaVersion and migrates in initSchema.
var (
	bucketMeta     = []byte("meta")
	bucketDNs      = []byte("dns")
	bucketBindings = []byte("bindings")
	keySchema      = []byte("schema_version")
)

// BoltConfig configures OpenBolt.
type BoltConfig struct {
	// Path of the database file; its directory is created if missing.
	Path string
	// Now is the clock used to filter expired bindings; nil means time.Now.
	Now func() time.Time
	// NoSync skips fsync on commit. Only for benchmarks: writes are then not durable.
	NoSync bool
	// CommitInterval is the least time between the starts of two binding commits while
	// writes come concurrently: under load, the writes that arrive within it share one
	// commit and one fsync. A lone writer, or a write after a quiet spell, commits at once.
	// Zero means DefaultCommitInterval; negative means no wait.
	CommitInterval time.Duration
}

// DefaultCommitInterval is BoltConfig.CommitInterval's default, bbolt's own Batch delay.
// It adds at most 10 ms to a REGISTER under load and caps binding commits at 100 a second:
// at 5,000 REGISTER/s a commit carries about 50 writes, and the page writes and the two
// fdatasyncs of each commit are shared by all of them (docs/performance.md).
const DefaultCommitInterval = 10 * time.Millisecond

// Bolt is the embedded bbolt Store. Every write commits (and fsyncs) before it returns.
// Binding writes go through one writer goroutine that commits, in one transaction, every
// write that queued up while the previous commit was syncing (group commit): concurrent
// REGISTERs share an fsync, and the group grows with the load instead of with a timer.
//
// Its reads go to the database; sipsvc serves calls from a Cached wrapped around it.
type Bolt struct {
	db       *bolt.DB
	now      func() time.Time
	interval time.Duration // BoltConfig.CommitInterval, resolved

	// ops feeds the group-commit writer (writeLoop); quit stops it, loopDone says it stopped.
	ops       chan op
	quit      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens or creates the database at cfg.Path, creates the buckets and checks the
// schema version. It waits for the file lock until ctx is done (at most 5 s without a
// deadline), so a second process on the same file fails instead of hanging.
func OpenBolt(ctx context.Context, cfg BoltConfig) (*Bolt, error) {
	if cfg.Path == "" {
		return nil, errors.New("store: bolt path is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.CommitInterval == 0:
		cfg.CommitInterval = DefaultCommitInterval
	case cfg.CommitInterval < 0:
		cfg.CommitInterval = 0
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("store: open %s: %w", cfg.Path, context.DeadlineExceeded)
		}
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: timeout, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	s := &Bolt{db: db, now: cfg.Now, interval: cfg.CommitInterval, ops: make(chan op), quit: make(chan struct{}), loopDone: make(chan struct{})}
	go s.writeLoop()
	return s, nil
}

// maxGroup bounds the writes of one group commit.
const maxGroup = 1000

// op is one write waiting for the group-commit writer.
type op struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the writer never blocks on it
}

// writeLoop is the group-commit writer: it takes one write, gathers every write that
// arrives until CommitInterval has passed since the previous commit started, and commits
// them together. It waits only while writes come concurrently (the previous commit carried
// more than one): a lone writer, or the first write after a quiet spell, commits at once.
func (s *Bolt) writeLoop() {
	defer close(s.loopDone)
	var last time.Time // start of the previous commit
	prev := 0          // writes in the previous commit
	timer := time.NewTimer(0)
	<-timer.C
	for {
		var first op
		select {
		case first = <-s.ops:
		case <-s.quit:
			return
		}
		group := []op{first}
		if wait := s.interval - time.Since(last); prev > 1 && wait > 0 {
			timer.Reset(wait)
		gather:
			for len(group) < maxGroup {
				select {
				case o := <-s.ops:
					group = append(group, o)
				case <-timer.C:
					break gather
				}
			}
			timer.Stop() // Go 1.23+: no stale fire is received after Stop
		}
	drain:
		for len(group) < maxGroup {
			select {
			case o := <-s.ops:
				group = append(group, o)
			default:
				break drain
			}
		}
		last, prev = time.Now(), len(group)
		s.commitGroup(group)
	}
}

// commitGroup runs the writes in one transaction. A write that fails is answered with its
// error and the others are run again without it (writes are idempotent, and a rolled-back
// transaction left nothing behind), as bbolt's Batch does.
func (s *Bolt) commitGroup(group []op) {
	for len(group) > 0 {
		failed, ferr := -1, error(nil)
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, o := range group {
				if err := o.fn(tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, o := range group {
				o.done <- mapClosed(err)
			}
			return
		}
		group[failed].done <- ferr
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// initSchema creates the buckets of a new database or checks the version of an old one.
func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create meta bucket: %w", err)
	}
	if v := meta.Get(keySchema); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("schema version %q: %w", v, ErrSchemaVersion)
		}
		if n > SchemaVersion {
			return fmt.Errorf("database has schema version %d, this build understands up to %d (written by a newer sipsvc?): %w",
				n, SchemaVersion, ErrSchemaVersion)
		}
		// n <= SchemaVersion: migrations would go here; version 1 is the first.
	}
	for _, b := range [][]byte{bucketDNs, bucketBindings} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}

// Path returns the database file path.
func (s *Bolt) Path() string { return s.db.Path() }

func (s *Bolt) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapClosed(s.db.Update(fn))
}

// TrustedDNs returns the DNs with TrustedSources or TrustedCertSubjects, by number. It
// reads every DN: Cached, which sipsvc wraps around Bolt, keeps the list in memory instead.
func (s *Bolt) TrustedDNs(ctx context.Context) ([]dn.DN, error) {
	ds, err := s.ListDNs(ctx)
	if err != nil {
		return nil, err
	}
	out := ds[:0]
	for _, d := range ds {
		if trusts(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// batch queues a write for the group-commit writer and waits for its commit. Once queued,
// the write is not abandoned when ctx ends: its caller learns whether it was committed.
func (s *Bolt) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := op{fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-o.done
}

func (s *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return mapClosed(s.db.View(fn))
}

func mapClosed(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put(key, buf)
}

// decodeBinding decodes the binding stored under bolt key k, and takes its Key from k.
func decodeBinding(k, v []byte) (dn.Binding, error) {
	var b dn.Binding
	if err := json.Unmarshal(v, &b); err != nil {
		return b, fmt.Errorf("store: decode binding %q: %w", k, err)
	}
	if i := bytes.IndexByte(k, 0); i >= 0 {
		b.Key = string(k[i+1:])
	}
	return b, nil
}

func bindingPrefix(number string) []byte { return append([]byte(number), 0) }

func bindingKey(number, key string) []byte { return append(bindingPrefix(number), key...) }

// CreateDN adds a DN; dn.ErrExists if the number is taken.
func (s *Bolt) CreateDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDNs)
		if b.Get([]byte(d.Number)) != nil {
			return existsDN(d.Number)
		}
		return putJSON(b, []byte(d.Number), d)
	})
}

// UpdateDN replaces a DN; dn.ErrNotFound if it does not exist.
func (s *Bolt) UpdateDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDNs)
		if b.Get([]byte(d.Number)) == nil {
			return notFoundDN(d.Number)
		}
		return putJSON(b, []byte(d.Number), d)
	})
}

// PutDN creates or replaces a DN.
func (s *Bolt) PutDN(ctx context.Context, d dn.DN) error {
	if err := d.Validate(); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketDNs), []byte(d.Number), d)
	})
}

// DeleteDN removes a DN and its bindings; dn.ErrNotFound if it does not exist.
func (s *Bolt) DeleteDN(ctx context.Context, number string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDNs)
		if b.Get([]byte(number)) == nil {
			return notFoundDN(number)
		}
		if err := b.Delete([]byte(number)); err != nil {
			return err
		}
		return deletePrefix(tx.Bucket(bucketBindings), bindingPrefix(number))
	})
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns one DN; dn.ErrNotFound if it does not exist.
func (s *Bolt) Lookup(ctx context.Context, number string) (dn.DN, error) {
	var d dn.DN
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDNs).Get([]byte(number))
		if v == nil {
			return notFoundDN(number)
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("store: decode DN %q: %w", number, err)
		}
		return nil
	})
	return d, err
}

// ListDNs returns every DN sorted by number.
func (s *Bolt) ListDNs(ctx context.Context) ([]dn.DN, error) {
	var out []dn.DN
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDNs).ForEach(func(k, v []byte) error {
			var d dn.DN
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("store: decode DN %q: %w", k, err)
			}
			out = append(out, d)
			return nil
		})
	})
	// bbolt keys are byte-ordered, which is string order.
	return out, err
}

// PutBinding creates or replaces the binding with the same Number and Key; dn.ErrNotFound
// if the DN does not exist.
func (s *Bolt) PutBinding(ctx context.Context, b dn.Binding) error {
	// Validation and encoding run in the writer, in the transaction, not on the caller's
	// goroutine: a REGISTER's goroutine, which sipgo starts per request with a small stack,
	// then stops short of the contact parser and the JSON encoder, and does not have to grow
	// its stack (a copy of ~8 KB per REGISTER). An invalid binding fails alone (commitGroup).
	return s.batch(ctx, func(tx *bolt.Tx) error {
		b, err := validateBinding(b)
		if err != nil {
			return err
		}
		if tx.Bucket(bucketDNs).Get([]byte(b.Number)) == nil {
			return notFoundDN(b.Number)
		}
		buf, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("store: encode binding: %w", err)
		}
		return tx.Bucket(bucketBindings).Put(bindingKey(b.Number, b.Key), buf)
	})
}

// DeleteBinding removes one binding by its key; dn.ErrNotFound if absent.
func (s *Bolt) DeleteBinding(ctx context.Context, number, key string) error {
	k := bindingKey(number, key)
	return s.batch(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBindings)
		if b.Get(k) == nil {
			return notFoundBinding(number, key)
		}
		return b.Delete(k)
	})
}

// DeleteBindings removes every binding of a DN.
func (s *Bolt) DeleteBindings(ctx context.Context, number string) error {
	return s.batch(ctx, func(tx *bolt.Tx) error {
		return deletePrefix(tx.Bucket(bucketBindings), bindingPrefix(number))
	})
}

// Bindings returns the unexpired bindings of a DN, sorted by contact.
func (s *Bolt) Bindings(ctx context.Context, number string) ([]dn.Binding, error) {
	now := s.now()
	var out []dn.Binding
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := bindingPrefix(number)
		c := tx.Bucket(bucketBindings).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			b, err := decodeBinding(k, v)
			if err != nil {
				return err
			}
			if live(b, now) {
				out = append(out, b)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out, err
}

// AllBindings returns every unexpired binding, sorted by number then contact.
func (s *Bolt) AllBindings(ctx context.Context) ([]dn.Binding, error) {
	now := s.now()
	var out []dn.Binding
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBindings).ForEach(func(k, v []byte) error {
			b, err := decodeBinding(k, v)
			if err != nil {
				return err
			}
			if live(b, now) {
				out = append(out, b)
			}
			return nil
		})
	})
	sortBindings(out)
	return out, err
}

// PurgeExpiredBindings deletes bindings that expired at or before now and returns them.
func (s *Bolt) PurgeExpiredBindings(ctx context.Context, now time.Time) ([]dn.Binding, error) {
	var out []dn.Binding
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		bk := tx.Bucket(bucketBindings)
		var dead [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			b, err := decodeBinding(k, v)
			if err != nil {
				return err
			}
			if !live(b, now) {
				dead = append(dead, bytes.Clone(k))
				out = append(out, b)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortBindings(out)
	return out, nil
}

// Ping implements Store with an empty read transaction on the file.
func (s *Bolt) Ping(ctx context.Context) error {
	return s.view(ctx, func(*bolt.Tx) error { return nil })
}

// Close stops the writer, after the writes it has taken, and closes the database file.
func (s *Bolt) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.loopDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}
