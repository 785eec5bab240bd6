package config

import (
	"fmt"
	"time"

	"github.com/sipsvc/sipsvc/signaling"
)

// CallsConfig is who may place a call and how many calls peers may make sipsvc hold
// (the "calls" section). See docs/security.md.
type CallsConfig struct {
	// Anonymous says which DNs a caller that is neither authenticated nor trusted may
	// reach: "per-dn" (only DNs with allow_anonymous, the default) or "extensions" (every
	// extension and ACD position). Anonymous callers never reach trunks or URI targets.
	Anonymous string `yaml:"anonymous"`
	// MaxCalls caps concurrent calls.
	MaxCalls int `yaml:"max_calls"`
	// MaxCallsPerSource caps concurrent inbound calls from one source IP.
	MaxCallsPerSource int `yaml:"max_calls_per_source"`
	// MaxCallsPerDN caps concurrent inbound calls from or to one number.
	MaxCallsPerDN int `yaml:"max_calls_per_dn"`
	// MaxSessionExpires is the largest Session-Expires a caller may ask for.
	MaxSessionExpires time.Duration `yaml:"max_session_expires"`
	// MaxCallDuration ends a call this long after it began.
	MaxCallDuration time.Duration `yaml:"max_call_duration"`
}

// defaultCalls are the signaling package's defaults.
func defaultCalls() CallsConfig {
	return CallsConfig{
		Anonymous:         string(signaling.AnonymousPerDN),
		MaxCalls:          signaling.DefaultMaxCalls,
		MaxCallsPerSource: signaling.DefaultMaxCallsPerSource,
		MaxCallsPerDN:     signaling.DefaultMaxCallsPerDN,
		MaxSessionExpires: signaling.DefaultMaxSessionExpires,
		MaxCallDuration:   signaling.DefaultMaxCallDuration,
	}
}

// Admission is the section as signaling's Admission.
func (c CallsConfig) Admission() signaling.Admission {
	return signaling.Admission{
		Anonymous: signaling.AnonymousPolicy(c.Anonymous), MaxCalls: c.MaxCalls,
		MaxCallsPerSource: c.MaxCallsPerSource, MaxCallsPerDN: c.MaxCallsPerDN,
		MaxSessionExpires: c.MaxSessionExpires, MaxCallDuration: c.MaxCallDuration,
	}
}

func (c *Config) validateCalls() error {
	k := c.Calls
	switch signaling.AnonymousPolicy(k.Anonymous) {
	case signaling.AnonymousPerDN, signaling.AnonymousExtensions:
	default:
		return &FieldError{"calls.anonymous", fmt.Sprintf("%q is not per-dn or extensions", k.Anonymous)}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"calls.max_calls", k.MaxCalls}, {"calls.max_calls_per_source", k.MaxCallsPerSource}, {"calls.max_calls_per_dn", k.MaxCallsPerDN}} {
		if f.v <= 0 {
			return &FieldError{f.name, "must be positive"}
		}
	}
	if k.MaxSessionExpires < c.SIP.MinSE {
		return &FieldError{"calls.max_session_expires", "must not be below sip.min_se"}
	}
	if k.MaxCallDuration < time.Minute {
		return &FieldError{"calls.max_call_duration", "must be at least 1m"}
	}
	return nil
}
