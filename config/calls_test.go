package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCallsConfig: the calls section's defaults are signaling's, and a bad value stops
// start-up with an error naming the field.
func TestCallsConfig(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if a := c.Calls.Admission(); a.Anonymous != "per-dn" || a.MaxCalls <= 0 || a.MaxCallDuration <= 0 {
		t.Errorf("default admission %+v", a)
	}
	// The example lab DNs of the README walkthrough admit anonymous callers explicitly.
	for _, d := range c.DNs {
		want := d.Number == "5000" || d.Number == "6000"
		if d.AllowAnonymous != want {
			t.Errorf("DN %s allow_anonymous = %v, want %v", d.Number, d.AllowAnonymous, want)
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*CallsConfig)
	}{
		{"calls.anonymous", func(k *CallsConfig) { k.Anonymous = "everyone" }},
		{"calls.max_calls", func(k *CallsConfig) { k.MaxCalls = 0 }},
		{"calls.max_calls_per_source", func(k *CallsConfig) { k.MaxCallsPerSource = -1 }},
		{"calls.max_calls_per_dn", func(k *CallsConfig) { k.MaxCallsPerDN = 0 }},
		{"calls.max_session_expires", func(k *CallsConfig) { k.MaxSessionExpires = time.Second }},
		{"calls.max_call_duration", func(k *CallsConfig) { k.MaxCallDuration = time.Second }},
	} {
		c := Default()
		tc.edit(&c.Calls)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want an error naming the field", tc.field, err)
		}
	}
}

// TestLoadRefusesUnsafeAndAnonymousFiles: files that would write CR/LF onto the wire, or
// open a trunk to anonymous callers, stop start-up with an error naming the field.
func TestLoadRefusesUnsafeAndAnonymousFiles(t *testing.T) {
	for file, field := range map[string]string{
		"bad_dn_display_name_crlf.yaml":     "dns[0].display_name",
		"bad_dn_contact_crlf.yaml":          "dns[0].contact",
		"bad_calls_anonymous.yaml":          "calls.anonymous",
		"bad_dn_allow_anonymous_trunk.yaml": "dns[0].allow_anonymous",
	} {
		_, err := Load(filepath.Join("testdata", file), func(string) string { return "" })
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: Load() = %v, want an error naming %s", file, err, field)
		}
	}
}
