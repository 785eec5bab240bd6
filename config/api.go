package config

import (
	"fmt"
	"net"
	"strings"
)

// validateAPI checks the API fields that Validate does not check inline.
func (c *Config) validateAPI() error {
	if c.API.ClientCAFile != "" && c.API.CertFile == "" {
		// Without TLS there is no client certificate to check: gRPC would serve plaintext
		// with no client check at all.
		return &FieldError{"api.client_ca_file", "needs api.cert_file and api.key_file: client certificates are only checked over TLS"}
	}
	for i, h := range c.API.AllowedHosts {
		if h == "" || strings.ContainsAny(h, ":/ ") || net.ParseIP(h) != nil {
			return &FieldError{fmt.Sprintf("api.allowed_hosts[%d]", i), fmt.Sprintf("%q is not a host name (no port, scheme or IP address)", h)}
		}
	}
	if a := c.API.PprofAddr; a != "" {
		if err := checkHostPort(a); err != nil {
			return &FieldError{"api.pprof_addr", err.Error()}
		}
		if !IsLoopback(a) && !c.API.PprofAllowRemote {
			return &FieldError{"api.pprof_addr", fmt.Sprintf("%s is off loopback: profiles expose memory contents; set api.pprof_allow_remote: true to mean it", a)}
		}
	}
	return nil
}
