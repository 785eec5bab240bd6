package dn

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ErrNotFound is returned when a DN or binding does not exist.
var ErrNotFound = errors.New("dn: not found")

// ErrExists is returned when a DN with the same number already exists.
var ErrExists = errors.New("dn: already exists")

// Type is the kind of a DN.
type Type string

// DN types.
const (
	TypeExtension   Type = "extension"
	TypeACDPosition Type = "acd_position"
	TypeTrunk       Type = "trunk"
	TypeVoIPService Type = "voip_service"
)

// Policy says how a SIPS leg may be bridged to a non-SIPS leg (docs/sips.md, "the two policies").
type Policy string

// Policies. PolicyDefault means "use the global default".
const (
	PolicyDefault Policy = ""
	// PolicyPerLeg is the modelled product's behaviour: each leg gets the scheme its peer needs.
	PolicyPerLeg Policy = "per-leg"
	// PolicyStrict is RFC 5630 end to end: a SIPS leg is never bridged to a SIP leg (R14, R19, R20).
	PolicyStrict Policy = "strict"
)

// Style is how a secure leg toward a DN is written on the wire (docs/sips.md, pitfall P4).
type Style string

// Styles. StyleDefault is StyleSIPS.
const (
	StyleDefault Style = ""
	// StyleSIPS writes sips: URIs with no transport parameter (R6, R8).
	StyleSIPS Style = "sips"
	// StyleSIPTransportTLS writes sip:…;transport=tls over TLS (Teams, old SBCs: P4).
	StyleSIPTransportTLS Style = "sip-transport-tls"
	// StyleSIP writes plain sip: URIs over TLS: best-effort TLS (R7).
	StyleSIP Style = "sip"
)

// DN is one directory number.
type DN struct {
	// Number is the unique dialable number, e.g. "5000".
	Number string `json:"number" yaml:"number"`
	// Type is the kind of DN.
	Type Type `json:"type" yaml:"type"`
	// Contact is a fixed sip:/sips: URI, or "*" for a self-registered device.
	Contact string `json:"contact" yaml:"contact"`
	// DisplayName is used in From when this DN calls.
	DisplayName string `json:"display_name,omitempty" yaml:"display_name,omitempty"`
	// Policy overrides the global sips policy for calls toward this DN.
	Policy Policy `json:"policy,omitempty" yaml:"policy,omitempty"`
	// Style overrides how a secure leg toward this DN is written.
	Style Style `json:"style,omitempty" yaml:"style,omitempty"`
	// InsecureSkipVerify disables TLS server verification toward this DN (labs only).
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty" yaml:"insecure_skip_verify,omitempty"`
	// Disabled DNs are neither routed to nor allowed to register.
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
	// HA1MD5 and HA1SHA256 are digest hashes of username:realm:password (RFC 2617, RFC 8760).
	// Empty means the DN has no password. The clear password is never stored.
	HA1MD5    string `json:"ha1_md5,omitempty" yaml:"-"`
	HA1SHA256 string `json:"ha1_sha256,omitempty" yaml:"-"`
	// TrustedSources lists IPs or CIDRs trusted without digest (trunks).
	TrustedSources []string `json:"trusted_sources,omitempty" yaml:"trusted_sources,omitempty"`
	// TrustedCertSubjects lists TLS client certificate subjects (CN or SAN) trusted without digest.
	TrustedCertSubjects []string `json:"trusted_cert_subjects,omitempty" yaml:"trusted_cert_subjects,omitempty"`
	// Traceparent adds a W3C traceparent header to INVITEs sent to this DN.
	Traceparent bool `json:"traceparent,omitempty" yaml:"traceparent,omitempty"`
	// DigestAlgorithms, when set, replaces the registrar's digest algorithms for this DN:
	// offered in this order, only these accepted (SHA-256, MD5), e.g. [SHA-256] to require it.
	DigestAlgorithms []string `json:"digest_algorithms,omitempty" yaml:"digest_algorithms,omitempty"`
	// AllowAnonymous lets callers that are neither authenticated nor trusted reach this DN
	// (an extension or ACD position; never a trunk or a VoIP service). Off by default.
	AllowAnonymous bool `json:"allow_anonymous,omitempty" yaml:"allow_anonymous,omitempty"`

	// sources is TrustedSources parsed by WithSourcesParsed, or nil. Being unexported, it
	// is not encoded: the stored JSON and the YAML configuration are unchanged.
	sources *sourceSet
}

// SelfRegistered reports whether the DN's contact is "*".
func (d DN) SelfRegistered() bool { return d.Contact == "*" }

// HasPassword reports whether the DN requires digest authentication.
func (d DN) HasPassword() bool { return d.HA1MD5 != "" || d.HA1SHA256 != "" }

// FieldError is a validation error that names the offending field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ErrInvalid is matched by every FieldError with errors.Is.
var ErrInvalid = errors.New("dn: invalid")

// Is lets errors.Is(err, ErrInvalid) match a FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ValidNumber reports whether s can be a DN number: 1 to 64 of A-Z a-z 0-9 + * # . _ -.
// It runs on every binding write, so it is a loop over the bytes: the regular expression
// it replaces cost 10% of the CPU at 5,000 REGISTER/s, mostly growing the stack of the
// goroutine sipgo starts per request.
func ValidNumber(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '+' || c == '*' || c == '#' || c == '.' || c == '_' || c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks a DN and returns a *FieldError naming the first bad field.
func (d DN) Validate() error {
	if !ValidNumber(d.Number) {
		return &FieldError{"number", fmt.Sprintf("%q is not a valid DN number (1-64 of A-Z a-z 0-9 + * # . _ -)", d.Number)}
	}
	switch d.Type {
	case TypeExtension, TypeACDPosition, TypeTrunk, TypeVoIPService:
	default:
		return &FieldError{"type", fmt.Sprintf("%q is not one of extension, acd_position, trunk, voip_service", d.Type)}
	}
	if d.Contact == "" {
		return &FieldError{"contact", "is required: a sip:/sips: URI or \"*\""}
	}
	if d.Contact != "*" {
		if _, err := ParseContact(d.Contact); err != nil {
			return &FieldError{"contact", err.Error()}
		}
	}
	if err := CheckDisplayName(d.DisplayName); err != nil {
		return &FieldError{"display_name", fmt.Sprintf("%q %v", d.DisplayName, err)}
	}
	if d.AllowAnonymous && (d.Type == TypeTrunk || d.Type == TypeVoIPService) {
		return &FieldError{"allow_anonymous", fmt.Sprintf("cannot be set on a %s: anonymous callers never reach trunks or VoIP services", d.Type)}
	}
	for i, s := range d.TrustedCertSubjects {
		if err := CheckDisplayName(s); err != nil || s == "" {
			return &FieldError{fmt.Sprintf("trusted_cert_subjects[%d]", i), fmt.Sprintf("%q is empty or %v", s, err)}
		}
	}
	switch d.Policy {
	case PolicyDefault, PolicyPerLeg, PolicyStrict:
	default:
		return &FieldError{"policy", fmt.Sprintf("%q is not per-leg or strict", d.Policy)}
	}
	switch d.Style {
	case StyleDefault, StyleSIPS, StyleSIPTransportTLS, StyleSIP:
	default:
		return &FieldError{"style", fmt.Sprintf("%q is not sips, sip-transport-tls or sip", d.Style)}
	}
	for i, s := range d.TrustedSources {
		if !validSource(s) {
			return &FieldError{fmt.Sprintf("trusted_sources[%d]", i), fmt.Sprintf("%q is not an IP address or CIDR", s)}
		}
	}
	for i, a := range d.DigestAlgorithms {
		if !strings.EqualFold(a, "SHA-256") && !strings.EqualFold(a, "MD5") {
			return &FieldError{fmt.Sprintf("digest_algorithms[%d]", i), fmt.Sprintf("%q is not SHA-256 or MD5", a)}
		}
		for _, b := range d.DigestAlgorithms[:i] {
			if strings.EqualFold(a, b) {
				return &FieldError{fmt.Sprintf("digest_algorithms[%d]", i), fmt.Sprintf("%q is listed twice", a)}
			}
		}
	}
	return nil
}

// ParseContact parses a fixed DN contact URI and applies the rules that make it unusable:
// only sip: and sips: schemes, a host, and no sips: with transport=udp (R4, T5).
func ParseContact(s string) (sip.Uri, error) {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("%q is not a valid URI: %w", s, err)
	}
	if err := CheckContact(&u); err != nil {
		return u, fmt.Errorf("%q: %w", s, err)
	}
	if _, err := CheckWireURI(s); err != nil {
		return u, fmt.Errorf("%q %w", s, err)
	}
	return u, nil
}

// CheckContact applies ParseContact's rules to a URI parsed already, e.g. by the SIP
// parser, and lower-cases its scheme.
func CheckContact(u *sip.Uri) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return errors.New("scheme must be sip or sips")
	}
	u.Scheme = scheme
	if u.Host == "" {
		return errors.New("has no host")
	}
	if t, ok := TransportParam(*u); ok {
		switch strings.ToLower(t) {
		case "udp":
			if scheme == "sips" {
				return errors.New("sips with transport=udp cannot work, UDP is not a valid transport for SIPS (R4)")
			}
		case "tcp", "tls":
		default:
			return fmt.Errorf("transport %q is not udp, tcp or tls", t)
		}
	}
	return nil
}

// Binding is one registered contact of a self-registered DN.
type Binding struct {
	// Number is the DN the binding belongs to.
	Number string `json:"number"`
	// Contact is the registered contact URI. For a sips binding it has no transport parameter.
	Contact string `json:"contact"`
	// Key identifies the binding within its DN: BindingKey(Contact), which is derived data
	// and not stored. A writer that has parsed the contact sets it with KeyOf, sparing the
	// store a parse; the store fills it when empty, checks it on write and sets it on every
	// binding it returns.
	Key string `json:"-"`
	// Secure is true when the device registered with sips: it is then always reached with sips (R8, T4).
	Secure bool `json:"secure"`
	// Transport is the transport the REGISTER arrived on: UDP, TCP or TLS.
	Transport string `json:"transport"`
	// Source is the host:port the REGISTER came from; over TCP/TLS calls reuse that flow (R33, P7).
	Source string `json:"source"`
	// InstanceID is the +sip.instance of the contact, if any (RFC 5626).
	InstanceID string `json:"instance_id,omitempty"`
	// RegID is the reg-id of an outbound binding (RFC 5626 §5.2): set only when the device
	// asked for outbound (Supported: outbound, +sip.instance and reg-id on its Contact) over a
	// TCP/TLS connection to sipsvc. Such a binding is reached only over its flow (Transport,
	// Source), never at its Contact (§5.3). Zero for every other binding. Added with
	// omitempty: older records decode as non-outbound bindings, no migration.
	RegID int `json:"reg_id,omitempty"`
	// Path is the URI of each Path header field value of the REGISTER that made or last
	// refreshed the binding, in the order received (RFC 3327 §5.3), e.g.
	// "sips:edge.example.net;lr". A call to the binding carries them as its preloaded Route
	// set and goes to the first one (RFC 3327 §5.4). Empty when the REGISTER had no Path.
	// The field came after store schema version 1 with omitempty: records written before it
	// decode with no Path, so it needs no migration.
	Path []string `json:"path,omitempty"`
	// CallID and CSeq of the last REGISTER that refreshed the binding.
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// UserAgent is the User-Agent header of the last REGISTER.
	UserAgent string `json:"user_agent,omitempty"`
	// Expires is the absolute expiry.
	Expires time.Time `json:"expires"`
	// Updated is when the binding was last written.
	Updated time.Time `json:"updated"`
}

// MaxRegID is the largest reg-id RFC 5626 §4.2 allows (2^31-1).
const MaxRegID = 1<<31 - 1

// Outbound reports whether b is an RFC 5626 outbound binding: a flow of the device
// InstanceID, numbered RegID, reached only over that flow.
func (b Binding) Outbound() bool { return b.RegID > 0 && b.InstanceID != "" }

// BindingKey returns the key that identifies a contact within its DN: the contact compared
// without scheme, so that re-registering the same device with the other scheme replaces
// it (R29). A contact that does not parse is its own key, lower-cased.
func BindingKey(contact string) string {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return strings.ToLower(contact)
	}
	return KeyOf(u)
}

// KeyOf is BindingKey for a parsed contact URI.
func KeyOf(u sip.Uri) string {
	k := strings.ToLower(u.User) + "@" + strings.ToLower(u.Host)
	if u.Port > 0 {
		k += ":" + strconv.Itoa(u.Port)
	}
	return k
}

// WithKey returns b with Key set to BindingKey(b.Contact) when it is empty.
func (b Binding) WithKey() Binding {
	if b.Key == "" {
		b.Key = BindingKey(b.Contact)
	}
	return b
}

// HashPassword returns the MD5 and SHA-256 digest HA1 values, H(username:realm:password),
// for a DN whose digest username is its number (RFC 2617, RFC 8760).
func HashPassword(number, realm, password string) (md5hex, sha256hex string) {
	s := number + ":" + realm + ":" + password
	m := md5.Sum([]byte(s))
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

// RemoveTransportParam removes every transport parameter of u, whatever the case of its
// name (RFC 3261 §19.1.4), e.g. before storing a sips binding (R26) or writing a sips URI (R6).
func RemoveTransportParam(u *sip.Uri) {
	kept := u.UriParams[:0]
	for _, kv := range u.UriParams {
		if !strings.EqualFold(kv.K, "transport") {
			kept = append(kept, kv)
		}
	}
	u.UriParams = kept
}

// TransportParam returns a URI's transport parameter. Its name is matched case-insensitively
// (RFC 3261 §19.1.4, §25.1); sipgo keeps parameter names as written and its Get is
// case-sensitive, so "sips:x@h;Transport=udp" would otherwise escape R4.
func TransportParam(u sip.Uri) (string, bool) {
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "transport") {
			return kv.V, true
		}
	}
	return "", false
}
