package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/registrar"
	"github.com/sipsvc/sipsvc/sips"
)

// Config is the whole configuration. Every field has a default (see Default).
type Config struct {
	// DataDir holds the embedded store and the generated dev TLS pair.
	DataDir   string          `yaml:"data_dir"`
	SIP       SIPConfig       `yaml:"sip"`
	TLS       TLSConfig       `yaml:"tls"`
	API       APIConfig       `yaml:"api"`
	Routing   RoutingConfig   `yaml:"routing"`
	Registrar RegistrarConfig `yaml:"registrar"`
	Calls     CallsConfig     `yaml:"calls"`
	Log       LogConfig       `yaml:"log"`
	Telemetry TelemetryConfig `yaml:"telemetry"`
	// DNs seed the directory store at start-up.
	DNs []DNConfig `yaml:"dns"`
}

// SIPConfig configures the SIP listeners and call behaviour.
type SIPConfig struct {
	// Hostname is the host written in Via, Contact and From of originated legs. Empty means
	// the address of the first listener or, for a wildcard listener, the address of the
	// interface that reaches each peer.
	Hostname string `yaml:"hostname"`
	// Advertise sets, per transport (udp, tcp, tls), the host or host:port written in Via
	// and Contact instead of the listener's (a public address in front of a NAT, a DNS
	// name); it wins over Hostname. Default none.
	Advertise map[string]string `yaml:"advertise"`
	// Connections caps and times out inbound TCP and TLS connections (config/transport.go).
	Connections ConnectionsConfig `yaml:"connections"`
	// UDP, TCP and TLS list listen addresses (host:port, IPv4 or IPv6).
	UDP []string `yaml:"udp"`
	TCP []string `yaml:"tcp"`
	TLS []string `yaml:"tls"`
	// Policy is the global sips policy: per-leg (default) or strict.
	Policy dn.Policy `yaml:"policy"`
	// RingTimeout bounds how long an originated leg may ring.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// SessionExpires and MinSE are the RFC 4028 session timer values offered and accepted.
	SessionExpires time.Duration `yaml:"session_expires"`
	MinSE          time.Duration `yaml:"min_se"`
	// UserAgent is the User-Agent/Server header value.
	UserAgent string `yaml:"user_agent"`
	// TransactionWait is how long a completed transaction stays in memory over UDP to absorb
	// retransmissions: RFC 3261 Timer J (non-INVITE server) and RFC 6026 Timers L and M
	// (INVITE server and client after a 2xx). The RFCs say 64*T1 = 32s, the default. A shorter
	// wait trades that margin for memory: at 1,500 calls/s every call's transactions stay
	// 32s, over a gigabyte of heap (docs/performance.md). Kamailio's tm module keeps completed
	// transactions for its wt_timer, 5s by default. Between 1s and 32s.
	TransactionWait time.Duration `yaml:"transaction_wait"`
}

// TLSConfig configures TLS for SIP.
type TLSConfig struct {
	// CertFile and KeyFile are the server pair; empty means a dev pair generated in DataDir.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientAuth is none, request or require.
	ClientAuth string `yaml:"client_auth"`
	// ClientCAFile verifies client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// CAFile verifies servers we connect to; empty means the system pool (plus the dev CA).
	CAFile string `yaml:"ca_file"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
}

// APIConfig configures the gRPC and REST control plane.
type APIConfig struct {
	GRPCAddr string `yaml:"grpc_addr"`
	HTTPAddr string `yaml:"http_addr"`
	// Tokens are accepted bearer tokens; required when an API address is off loopback.
	Tokens []string `yaml:"tokens"`
	// CertFile/KeyFile enable TLS on gRPC; ClientCAFile enables client-certificate auth.
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowedHosts are the host names (not IP addresses, which are always accepted) that REST
	// requests may name in their Host header, besides localhost: a name not listed is refused,
	// which defeats DNS rebinding (see validateAPI).
	AllowedHosts []string `yaml:"allowed_hosts"`
	// PprofAddr, when set, serves the Go runtime profiles (SIPSVC_PPROF_ADDR); it must be on
	// loopback unless PprofAllowRemote is set.
	PprofAddr        string `yaml:"pprof_addr"`
	PprofAllowRemote bool   `yaml:"pprof_allow_remote"`
}

// RoutingConfig configures the external routing service.
type RoutingConfig struct {
	// Address of the routing service (host:port); empty means the built-in router.
	Address string        `yaml:"address"`
	Timeout time.Duration `yaml:"timeout"`
	TLS     bool          `yaml:"tls"`
	CAFile  string        `yaml:"ca_file"`
	// FallbackDNs are tried, in order, when the routing service fails.
	FallbackDNs []string `yaml:"fallback_dns"`
}

// RegistrarConfig configures the registrar and digest authentication.
type RegistrarConfig struct {
	Realm          string        `yaml:"realm"`
	DefaultExpires time.Duration `yaml:"default_expires"`
	MinExpires     time.Duration `yaml:"min_expires"`
	MaxExpires     time.Duration `yaml:"max_expires"`
	NonceTTL       time.Duration `yaml:"nonce_ttl"`
	// AuthFailLimit wrong digest answers (to nonces sipsvc issued) for one user from one
	// source IP start a backoff of LockoutBackoff, doubled by each further failure, at most
	// Lockout; meanwhile that user from that source gets 503 with Retry-After.
	AuthFailLimit int           `yaml:"auth_fail_limit"`
	Lockout       time.Duration `yaml:"lockout"`
	// LockoutBackoff is the first backoff. Default 1s.
	LockoutBackoff time.Duration `yaml:"lockout_backoff"`
	// MaxContactsPerRegister and MaxBindingsPerDN cap what one REGISTER may carry and what
	// one DN may hold; over a cap the REGISTER gets 403. Default 10 each.
	MaxContactsPerRegister int `yaml:"max_contacts_per_register"`
	MaxBindingsPerDN       int `yaml:"max_bindings_per_dn"`
	// DigestAlgorithms are offered in this order, one challenge each. Default [MD5], which
	// every common client answers (baresip refuses a challenge set with any non-MD5 entry);
	// [SHA-256] requires SHA-256. A DN may set its own (dns[].digest_algorithms).
	// Environment: SIPSVC_REGISTRAR_DIGEST_ALGORITHMS (comma-separated).
	DigestAlgorithms []string `yaml:"digest_algorithms"`
	// OpenRegistration lets self-registered DNs without a password register with no
	// challenge, so anyone who reaches the SIP port can take their calls. Labs only; by
	// default such a DN is refused at start-up and refused by the registrar.
	OpenRegistration bool `yaml:"open_registration"`
	// ServiceRoute, when set, is returned as Service-Route in the 200 OK to every successful
	// REGISTER (RFC 3608), in order, e.g. ["sip:edge.example.net;lr"]: as sips URIs when the
	// REGISTER's Contacts are all sips, else as sip URIs (R34). Each is a sip: or sips: URI
	// with a host and no transport=udp. Default none (no Service-Route header).
	ServiceRoute []string `yaml:"service_route"`
}

// LogConfig configures log/slog.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// TelemetryConfig configures OpenTelemetry. The standard OTEL_* environment variables win.
type TelemetryConfig struct {
	// OTLPEndpoint enables trace export (e.g. localhost:4317); empty means tracing off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPProtocol is grpc or http/protobuf.
	OTLPProtocol string `yaml:"otlp_protocol"`
	ServiceName  string `yaml:"service_name"`
	// SampleRatio in [0,1]; 1 samples every call.
	SampleRatio float64 `yaml:"sample_ratio"`
	Insecure    bool    `yaml:"insecure"`
}

// DNConfig is one DN in the config file.
type DNConfig struct {
	dn.DN `yaml:",inline"`
	// Password is hashed into HA1 at load time and never kept.
	Password string `yaml:"password"`
	// GeneratePassword has sipsvc make a random password for the DN on first start and keep
	// it in data_dir/credentials.txt (mode 0600), where the operator reads it
	// (GeneratePasswords). Not with Password.
	GeneratePassword bool `yaml:"generate_password"`
}

// Default returns the embedded default configuration: SIP on UDP/TCP 5060 and TLS 5061 on
// all addresses, API on loopback, built-in router, and a few example DNs.
func Default() Config {
	return Config{
		DataDir: "./data",
		SIP: SIPConfig{
			UDP:            []string{"0.0.0.0:5060"},
			TCP:            []string{"0.0.0.0:5060"},
			TLS:            []string{"0.0.0.0:5061"},
			Policy:         dn.PolicyPerLeg,
			RingTimeout:    60 * time.Second,
			SessionExpires: 1800 * time.Second,
			// RFC 3261 §17.2.2 (Timer J) and RFC 6026 §8 (Timers L, M): 64*T1.
			TransactionWait: 32 * time.Second,
			MinSE:           90 * time.Second,
			UserAgent:       "sipsvc",
			Connections:     DefaultConnections(),
		},
		TLS:     TLSConfig{ClientAuth: "none", MinVersion: "1.2"},
		API:     APIConfig{GRPCAddr: "127.0.0.1:9090", HTTPAddr: "127.0.0.1:8080"},
		Routing: RoutingConfig{Timeout: time.Second},
		Registrar: RegistrarConfig{ // the registrar package's own defaults
			Realm:                  registrar.DefaultRealm,
			DefaultExpires:         registrar.DefaultExpires,
			MinExpires:             registrar.DefaultMinExpires,
			MaxExpires:             registrar.DefaultMaxExpires,
			NonceTTL:               registrar.DefaultNonceTTL,
			AuthFailLimit:          registrar.DefaultAuthFailLimit,
			Lockout:                registrar.DefaultLockout,
			LockoutBackoff:         registrar.DefaultLockoutBackoff,
			MaxContactsPerRegister: registrar.DefaultMaxContactsPerRegister,
			MaxBindingsPerDN:       registrar.DefaultMaxBindingsPerDN,
			DigestAlgorithms:       registrar.DefaultAlgorithms(),
		},
		Calls:     defaultCalls(),
		Log:       LogConfig{Level: "info", Format: "text"},
		Telemetry: TelemetryConfig{OTLPProtocol: "grpc", ServiceName: "sipsvc", SampleRatio: 1},
		DNs: []DNConfig{
			// Self-registered: their passwords are generated on first start (GeneratePasswords).
			{DN: dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "*", DisplayName: "Alice (self-registered)"}, GeneratePassword: true},
			{DN: dn.DN{Number: "1001", Type: dn.TypeExtension, Contact: "*", DisplayName: "Bob (self-registered)"}, GeneratePassword: true},
			{DN: dn.DN{Number: "5000", Type: dn.TypeExtension, Contact: "sips:5000@127.0.0.1:5071", DisplayName: "sips phone", InsecureSkipVerify: true, AllowAnonymous: true}},
			{DN: dn.DN{Number: "6000", Type: dn.TypeExtension, Contact: "sip:6000@127.0.0.1:5070", DisplayName: "plain sip phone", AllowAnonymous: true}},
		},
	}
}

// Load reads the YAML file at path (empty: defaults only), applies environment overrides
// from getenv (nil: os.Getenv) and validates the result.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		// A config file replaces the example DNs (its own dns list, possibly empty).
		c.DNs = nil
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, nameFields(b, err))
		}
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	applyEnv(&c, getenv)
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func applyEnv(c *Config, getenv func(string) string) {
	str := func(key string, dst *string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	list := func(key string, dst *[]string) {
		if v, ok := lookup(getenv, key); ok {
			*dst = splitList(v)
		}
	}
	str("SIPSVC_DATA_DIR", &c.DataDir)
	str("SIPSVC_SIP_HOSTNAME", &c.SIP.Hostname)
	list("SIPSVC_SIP_UDP", &c.SIP.UDP)
	list("SIPSVC_SIP_TCP", &c.SIP.TCP)
	list("SIPSVC_SIP_TLS", &c.SIP.TLS)
	if v := getenv("SIPSVC_SIP_POLICY"); v != "" {
		c.SIP.Policy = dn.Policy(v)
	}
	str("SIPSVC_TLS_CERT_FILE", &c.TLS.CertFile)
	str("SIPSVC_TLS_KEY_FILE", &c.TLS.KeyFile)
	str("SIPSVC_GRPC_ADDR", &c.API.GRPCAddr)
	str("SIPSVC_HTTP_ADDR", &c.API.HTTPAddr)
	list("SIPSVC_API_TOKENS", &c.API.Tokens)
	str("SIPSVC_PPROF_ADDR", &c.API.PprofAddr)
	str("SIPSVC_ROUTING_ADDRESS", &c.Routing.Address)
	list("SIPSVC_REGISTRAR_DIGEST_ALGORITHMS", &c.Registrar.DigestAlgorithms)
	str("SIPSVC_LOG_LEVEL", &c.Log.Level)
	str("SIPSVC_LOG_FORMAT", &c.Log.Format)
}

// lookup treats "-" as an explicit empty list (to turn a listener off from the environment).
func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	if v == "" {
		return "", false
	}
	if v == "-" {
		return "", true
	}
	return v, true
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// FieldError names the configuration field that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Msg }

// Validate checks every field without doing I/O.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &FieldError{"data_dir", "must not be empty"}
	}
	for _, l := range []struct {
		name  string
		addrs []string
	}{{"sip.udp", c.SIP.UDP}, {"sip.tcp", c.SIP.TCP}, {"sip.tls", c.SIP.TLS}} {
		for i, a := range l.addrs {
			if err := checkHostPort(a); err != nil {
				return &FieldError{fmt.Sprintf("%s[%d]", l.name, i), err.Error()}
			}
		}
	}
	if len(c.SIP.UDP)+len(c.SIP.TCP)+len(c.SIP.TLS) == 0 {
		return &FieldError{"sip", "no listener: set at least one of sip.udp, sip.tcp, sip.tls"}
	}
	switch c.SIP.Policy {
	case dn.PolicyPerLeg, dn.PolicyStrict:
	default:
		return &FieldError{"sip.policy", fmt.Sprintf("%q is not per-leg or strict", c.SIP.Policy)}
	}
	if c.SIP.RingTimeout <= 0 {
		return &FieldError{"sip.ring_timeout", "must be positive"}
	}
	if c.SIP.TransactionWait < time.Second || c.SIP.TransactionWait > 32*time.Second {
		return &FieldError{"sip.transaction_wait", "must be between 1s and 32s (64*T1, RFC 3261 Timer J)"}
	}
	if c.SIP.MinSE < 90*time.Second {
		return &FieldError{"sip.min_se", "must be at least 90s (RFC 4028)"}
	}
	if c.SIP.SessionExpires < c.SIP.MinSE {
		return &FieldError{"sip.session_expires", "must not be below sip.min_se"}
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return &FieldError{"tls.cert_file", "tls.cert_file and tls.key_file go together"}
	}
	switch c.TLS.ClientAuth {
	case "none", "request", "require":
	default:
		return &FieldError{"tls.client_auth", fmt.Sprintf("%q is not none, request or require", c.TLS.ClientAuth)}
	}
	if c.TLS.ClientAuth == "require" && c.TLS.ClientCAFile == "" {
		return &FieldError{"tls.client_ca_file", "is required when tls.client_auth is require"}
	}
	switch c.TLS.MinVersion {
	case "1.2", "1.3":
	default:
		return &FieldError{"tls.min_version", fmt.Sprintf("%q is not 1.2 or 1.3", c.TLS.MinVersion)}
	}
	for _, a := range []struct{ name, v string }{{"api.grpc_addr", c.API.GRPCAddr}, {"api.http_addr", c.API.HTTPAddr}} {
		if a.v == "" {
			continue
		}
		if err := checkHostPort(a.v); err != nil {
			return &FieldError{a.name, err.Error()}
		}
		// Client certificates protect gRPC only; REST off loopback needs tokens (service.APIConfig).
		if !IsLoopback(a.v) && len(c.API.Tokens) == 0 && (a.name == "api.http_addr" || c.API.ClientCAFile == "") {
			return &FieldError{"api.tokens", fmt.Sprintf("%s %s is off loopback: set api.tokens (or SIPSVC_API_TOKENS)", a.name, a.v)}
		}
	}
	if (c.API.CertFile == "") != (c.API.KeyFile == "") {
		return &FieldError{"api.cert_file", "api.cert_file and api.key_file go together"}
	}
	if err := c.validateAPI(); err != nil {
		return err
	}
	if c.Routing.Address != "" {
		if err := checkHostPort(c.Routing.Address); err != nil {
			return &FieldError{"routing.address", err.Error()}
		}
	}
	if c.Routing.Timeout <= 0 {
		return &FieldError{"routing.timeout", "must be positive"}
	}
	for i, n := range c.Routing.FallbackDNs {
		if !dn.ValidNumber(n) {
			return &FieldError{fmt.Sprintf("routing.fallback_dns[%d]", i), fmt.Sprintf("%q is not a DN number", n)}
		}
	}
	r := c.Registrar
	if r.Realm == "" {
		return &FieldError{"registrar.realm", "must not be empty"}
	}
	if r.MinExpires <= 0 || r.MaxExpires < r.MinExpires {
		return &FieldError{"registrar.max_expires", "need 0 < min_expires <= max_expires"}
	}
	if r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires {
		return &FieldError{"registrar.default_expires", "must lie between min_expires and max_expires"}
	}
	if r.NonceTTL <= 0 {
		return &FieldError{"registrar.nonce_ttl", "must be positive"}
	}
	if r.AuthFailLimit <= 0 {
		return &FieldError{"registrar.auth_fail_limit", "must be positive"}
	}
	if r.Lockout <= 0 {
		return &FieldError{"registrar.lockout", "must be positive"}
	}
	if r.LockoutBackoff <= 0 || r.LockoutBackoff > r.Lockout {
		return &FieldError{"registrar.lockout_backoff", "must be positive and at most registrar.lockout"}
	}
	if r.MaxContactsPerRegister <= 0 {
		return &FieldError{"registrar.max_contacts_per_register", "must be positive"}
	}
	if r.MaxBindingsPerDN <= 0 {
		return &FieldError{"registrar.max_bindings_per_dn", "must be positive"}
	}
	if len(r.DigestAlgorithms) == 0 {
		return &FieldError{"registrar.digest_algorithms", "must list at least one of SHA-256, MD5"}
	}
	for i, a := range r.DigestAlgorithms {
		if a != "SHA-256" && a != "MD5" {
			return &FieldError{fmt.Sprintf("registrar.digest_algorithms[%d]", i), fmt.Sprintf("%q is not SHA-256 or MD5", a)}
		}
		if slices.Contains(r.DigestAlgorithms[:i], a) {
			return &FieldError{fmt.Sprintf("registrar.digest_algorithms[%d]", i), fmt.Sprintf("%q is listed twice", a)}
		}
	}
	for i, v := range r.ServiceRoute {
		if _, err := sips.ParseServiceRoute(v); err != nil {
			return &FieldError{fmt.Sprintf("registrar.service_route[%d]", i), err.Error()}
		}
	}
	if err := c.validateCalls(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &FieldError{"log.level", fmt.Sprintf("%q is not debug, info, warn or error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return &FieldError{"log.format", fmt.Sprintf("%q is not json or text", c.Log.Format)}
	}
	switch c.Telemetry.OTLPProtocol {
	case "grpc", "http/protobuf":
	default:
		return &FieldError{"telemetry.otlp_protocol", fmt.Sprintf("%q is not grpc or http/protobuf", c.Telemetry.OTLPProtocol)}
	}
	if c.Telemetry.SampleRatio < 0 || c.Telemetry.SampleRatio > 1 {
		return &FieldError{"telemetry.sample_ratio", "must lie in [0,1]"}
	}
	seen := map[string]bool{}
	for i, d := range c.DNs {
		if err := d.DN.Validate(); err != nil {
			var fe *dn.FieldError
			if errors.As(err, &fe) {
				return &FieldError{fmt.Sprintf("dns[%d].%s", i, fe.Field), fe.Msg}
			}
			return &FieldError{fmt.Sprintf("dns[%d]", i), err.Error()}
		}
		if seen[d.Number] {
			return &FieldError{fmt.Sprintf("dns[%d].number", i), fmt.Sprintf("%q is declared twice", d.Number)}
		}
		if d.GeneratePassword && d.Password != "" {
			return &FieldError{fmt.Sprintf("dns[%d].generate_password", i), "set password or generate_password, not both"}
		}
		// Deny by default (issue 10): a self-registered DN must have a credential that only
		// the operator knows, unless registrar.open_registration says otherwise.
		if d.SelfRegistered() && d.Password == "" && !d.GeneratePassword && !r.OpenRegistration {
			return &FieldError{fmt.Sprintf("dns[%d].password", i), fmt.Sprintf(
				"DN %q is self-registered (contact \"*\") and has no password: anyone could register it; set password, or generate_password: true (or registrar.open_registration: true, labs only)", d.Number)}
		}
		seen[d.Number] = true
	}
	return nil
}

func checkHostPort(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", a, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", a)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0-65535", a, port)
	}
	return nil
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// nameFields rewrites YAML type errors ("line 7: cannot unmarshal …") so that each names the
// field at that line ("sip.ring_timeout (line 7): cannot unmarshal …").
func nameFields(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err
	}
	paths := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				paths[k.Line] = p
				if v.Line != k.Line || v.Kind != yaml.ScalarNode {
					walk(v, p)
				} else {
					paths[v.Line] = p
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := paths[c.Line]; !ok || c.Kind == yaml.ScalarNode {
					paths[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.Atoi(sm[1])
			if p, ok := paths[n]; ok {
				m = p + " (line " + sm[1] + "): " + strings.TrimPrefix(m, sm[0])
			}
		}
		msgs = append(msgs, m)
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// IsLoopback reports whether a listen address binds only to loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SeedDNs returns the configured DNs with passwords turned into digest HA1 hashes for the
// registrar realm; the clear passwords are dropped.
func (c *Config) SeedDNs() []dn.DN {
	out := make([]dn.DN, 0, len(c.DNs))
	for _, d := range c.DNs {
		x := d.DN
		if d.Password != "" {
			x.HA1MD5, x.HA1SHA256 = dn.HashPassword(x.Number, c.Registrar.Realm, d.Password)
		}
		out = append(out, x)
	}
	return out
}
