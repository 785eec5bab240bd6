package store

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sipsvc/sipsvc/dn"
)

// ErrClosed is returned by every method of a closed store.
var ErrClosed = errors.New("store: closed")

// trusts reports whether the DN carries trust configuration.
func trusts(d dn.DN) bool { return len(d.TrustedSources) > 0 || len(d.TrustedCertSubjects) > 0 }

// ErrSchemaVersion is returned by OpenBolt when the database was written by a newer,
// unknown schema version.
var ErrSchemaVersion = errors.New("store: unsupported schema version")

// validateBinding checks the fields a binding needs to be usable, and returns it with its
// Key set (from the contact it parsed; a Key the caller set must match it).
func validateBinding(b dn.Binding) (dn.Binding, error) {
	if !dn.ValidNumber(b.Number) {
		return b, &dn.FieldError{Field: "number", Msg: fmt.Sprintf("%q is not a valid DN number", b.Number)}
	}
	if b.Contact == "" {
		return b, &dn.FieldError{Field: "contact", Msg: "is required"}
	}
	u, err := dn.ParseContact(b.Contact)
	if err != nil {
		return b, &dn.FieldError{Field: "contact", Msg: err.Error()}
	}
	if k := dn.KeyOf(u); b.Key == "" {
		b.Key = k
	} else if b.Key != k {
		return b, &dn.FieldError{Field: "key", Msg: fmt.Sprintf("%q is not the key of contact %q (%q)", b.Key, b.Contact, k)}
	}
	if b.Expires.IsZero() {
		return b, &dn.FieldError{Field: "expires", Msg: "is required"}
	}
	if b.RegID != 0 {
		// RFC 5626 §4.2: reg-id is 1 to 2^31-1, and only means something with an instance.
		if b.RegID < 0 || b.RegID > dn.MaxRegID {
			return b, &dn.FieldError{Field: "reg_id", Msg: fmt.Sprintf("%d is not in 1..%d", b.RegID, dn.MaxRegID)}
		}
		if b.InstanceID == "" {
			return b, &dn.FieldError{Field: "reg_id", Msg: "needs instance_id"}
		}
		if b.Source == "" || b.Transport == "" {
			return b, &dn.FieldError{Field: "reg_id", Msg: "an outbound binding needs its flow (transport and source)"}
		}
	}
	for i, p := range b.Path {
		// RFC 3327 §5.4: calls to the binding are sent to these URIs.
		if _, err := dn.ParseContact(p); err != nil {
			return b, &dn.FieldError{Field: fmt.Sprintf("path[%d]", i), Msg: err.Error()}
		}
	}
	return b, nil
}

// live reports whether the binding has not expired at now.
func live(b dn.Binding, now time.Time) bool { return b.Expires.After(now) }

// sortBindings orders bindings by contact, then by number (for AllBindings).
func sortBindings(bs []dn.Binding) {
	sort.Slice(bs, func(i, j int) bool {
		if bs[i].Number != bs[j].Number {
			return bs[i].Number < bs[j].Number
		}
		return bs[i].Contact < bs[j].Contact
	})
}

// cloneBinding copies the Path of a binding so callers cannot alias stored state.
func cloneBinding(b dn.Binding) dn.Binding {
	if b.Path != nil {
		b.Path = append([]string(nil), b.Path...)
	}
	return b
}

// cloneDN copies the slices of a DN so callers cannot alias stored state.
func cloneDN(d dn.DN) dn.DN {
	if d.TrustedSources != nil {
		d.TrustedSources = append([]string(nil), d.TrustedSources...)
	}
	if d.TrustedCertSubjects != nil {
		d.TrustedCertSubjects = append([]string(nil), d.TrustedCertSubjects...)
	}
	return d
}

func notFoundDN(number string) error {
	return fmt.Errorf("DN %q: %w", number, dn.ErrNotFound)
}

func notFoundBinding(number, key string) error {
	return fmt.Errorf("binding %q of DN %q: %w", key, number, dn.ErrNotFound)
}

// existsDN names the field, as the control plane shows the message, and matches dn.ErrExists.
func existsDN(number string) error {
	return fmt.Errorf("number: DN %q %w", number, dn.ErrExists)
}
