package config

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sipsvc/sipsvc/connlimit"
)

// ConnectionsConfig caps and times out the inbound TCP and TLS connections (sip.connections).
// A peer can make sipsvc hold only so many connections, each only so long without a message.
type ConnectionsConfig struct {
	// MaxConns caps the inbound TCP and TLS connections held at once, all listeners
	// together. Default 10000.
	MaxConns int `yaml:"max_conns"`
	// MaxPerSource caps the connections held at once from one source IP address. Default
	// 100. A connection over a cap is closed at once.
	MaxPerSource int `yaml:"max_conns_per_source"`
	// HandshakeTimeout bounds the TLS handshake of an inbound connection. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes a connection with no traffic between messages for this long.
	// RFC 5626 keep-alives (CRLF) count as traffic. Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MessageTimeout bounds the time from the first byte of a SIP message to its last.
	// Default 30s.
	MessageTimeout time.Duration `yaml:"message_timeout"`
}

// DefaultConnections returns the defaults of sip.connections (those of package connlimit).
func DefaultConnections() ConnectionsConfig {
	return ConnectionsConfig{
		MaxConns:         connlimit.DefaultMaxConns,
		MaxPerSource:     connlimit.DefaultMaxPerSource,
		HandshakeTimeout: connlimit.DefaultHandshakeTimeout,
		IdleTimeout:      connlimit.DefaultIdleTimeout,
		MessageTimeout:   connlimit.DefaultMessageTimeout,
	}
}

// Limits returns the connlimit configuration of c.
func (c ConnectionsConfig) Limits() connlimit.Config {
	return connlimit.Config{
		MaxConns: c.MaxConns, MaxPerSource: c.MaxPerSource, HandshakeTimeout: c.HandshakeTimeout,
		IdleTimeout: c.IdleTimeout, MessageTimeout: c.MessageTimeout,
	}
}

// hostnameRE is a DNS name: labels of letters, digits and hyphens.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// checkAdvertise accepts an IP address or DNS name, optionally with a port; nothing else is
// written into Via and Contact.
func checkAdvertise(v string) error {
	if strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != "" || v == "" {
		return fmt.Errorf("%q is not an IP address or DNS name (with an optional :port)", v)
	}
	host := v
	if h, p, err := net.SplitHostPort(v); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not a number in 1-65535", v, p)
		}
		host = h
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("%q is a wildcard address: peers cannot reach it", v)
		}
		return nil
	}
	if len(host) > 253 || !hostnameRE.MatchString(host) {
		return fmt.Errorf("%q is not an IP address or DNS name (with an optional :port)", v)
	}
	return nil
}

// validateTransport checks sip.advertise and sip.connections.
func (c *Config) validateTransport() error {
	keys := make([]string, 0, len(c.SIP.Advertise))
	for k := range c.SIP.Advertise {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "udp", "tcp", "tls":
		default:
			return &FieldError{"sip.advertise", fmt.Sprintf("%q is not udp, tcp or tls", k)}
		}
		if err := checkAdvertise(c.SIP.Advertise[k]); err != nil {
			return &FieldError{"sip.advertise." + k, err.Error()}
		}
	}
	if h := c.SIP.Hostname; h != "" {
		if err := checkAdvertise(h); err != nil {
			return &FieldError{"sip.hostname", err.Error()}
		}
	}
	cc := c.SIP.Connections
	for _, f := range []struct {
		name string
		v    int
	}{{"max_conns", cc.MaxConns}, {"max_conns_per_source", cc.MaxPerSource}} {
		if f.v <= 0 {
			return &FieldError{"sip.connections." + f.name, "must be positive"}
		}
	}
	if cc.MaxPerSource > cc.MaxConns {
		return &FieldError{"sip.connections.max_conns_per_source", "must not exceed sip.connections.max_conns"}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"handshake_timeout", cc.HandshakeTimeout}, {"idle_timeout", cc.IdleTimeout}, {"message_timeout", cc.MessageTimeout}} {
		if f.v < 100*time.Millisecond {
			return &FieldError{"sip.connections." + f.name, "must be at least 100ms"}
		}
	}
	return nil
}
