package store

import (
	"context"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// Store is the source of truth for DNs and bindings. Every write is durable before it returns.
type Store interface {
	// CreateDN adds a DN; dn.ErrExists if the number is taken.
	CreateDN(ctx context.Context, d dn.DN) error
	// UpdateDN replaces a DN; dn.ErrNotFound if it does not exist.
	UpdateDN(ctx context.Context, d dn.DN) error
	// PutDN creates or replaces a DN (used to seed from the config file).
	PutDN(ctx context.Context, d dn.DN) error
	// DeleteDN removes a DN and its bindings; dn.ErrNotFound if it does not exist.
	DeleteDN(ctx context.Context, number string) error
	// Lookup returns one DN; dn.ErrNotFound if it does not exist.
	Lookup(ctx context.Context, number string) (dn.DN, error)
	// ListDNs returns every DN sorted by number.
	ListDNs(ctx context.Context) ([]dn.DN, error)
	// TrustedDNs returns the DNs with TrustedSources or TrustedCertSubjects, sorted by
	// number. The registrar asks on every out-of-dialog INVITE: Cached keeps the list up to
	// date on DN writes, so its answer costs a copy of the list; Bolt reads every DN.
	TrustedDNs(ctx context.Context) ([]dn.DN, error)

	// PutBinding creates or replaces the binding with the same Number and Key. It sets an
	// empty Key, and refuses one that is not the contact's.
	PutBinding(ctx context.Context, b dn.Binding) error
	// DeleteBinding removes one binding by its key (dn.BindingKey); dn.ErrNotFound if absent.
	DeleteBinding(ctx context.Context, number, key string) error
	// DeleteBindings removes every binding of a DN.
	DeleteBindings(ctx context.Context, number string) error
	// Bindings returns the unexpired bindings of a DN, sorted by contact, with Key set.
	Bindings(ctx context.Context, number string) ([]dn.Binding, error)
	// AllBindings returns every unexpired binding.
	AllBindings(ctx context.Context) ([]dn.Binding, error)
	// PurgeExpiredBindings deletes the bindings that expired at or before now and returns
	// them, sorted by number then contact, so the registrar can report each removal.
	PurgeExpiredBindings(ctx context.Context, now time.Time) ([]dn.Binding, error)

	// Ping reports whether the store answers (readiness); ErrClosed once it is closed.
	Ping(ctx context.Context) error

	// Close releases the store.
	Close() error
}
