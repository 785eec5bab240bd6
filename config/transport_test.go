package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/connlimit"
)

// TestTransportDefaults: sip.connections defaults to connlimit's documented values and no
// advertise override.
func TestTransportDefaults(t *testing.T) {
	c := Default()
	want := connlimit.Config{
		MaxConns: 10000, MaxPerSource: 100, HandshakeTimeout: 10 * time.Second,
		IdleTimeout: 5 * time.Minute, MessageTimeout: 30 * time.Second,
	}
	if got := c.SIP.Connections.Limits(); !reflect.DeepEqual(got, want) {
		t.Errorf("default limits %+v, want %+v", got, want)
	}
	if len(c.SIP.Advertise) != 0 {
		t.Errorf("default advertise %v, want none", c.SIP.Advertise)
	}
}

// TestTransportLoad reads sip.advertise and sip.connections.
func TestTransportLoad(t *testing.T) {
	c, err := Load(testdata("transport.yaml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"udp": "203.0.113.5", "tls": "sip.example.com:443"}; !reflect.DeepEqual(c.SIP.Advertise, want) {
		t.Errorf("advertise %v, want %v", c.SIP.Advertise, want)
	}
	want := ConnectionsConfig{MaxConns: 2000, MaxPerSource: 20, HandshakeTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MessageTimeout: 10 * time.Second}
	if c.SIP.Connections != want {
		t.Errorf("connections %+v, want %+v", c.SIP.Connections, want)
	}
}

// TestTransportInvalid: each bad value stops start-up with an error naming its field.
func TestTransportInvalid(t *testing.T) {
	for _, tc := range []struct {
		file, field, text string
	}{
		{"bad_sip_advertise_transport.yaml", "sip.advertise", `"sctp" is not udp, tcp or tls`},
		{"bad_sip_advertise_value.yaml", "sip.advertise.udp", "is not an IP address or DNS name"},
		{"bad_sip_advertise_wildcard.yaml", "sip.advertise.tls", "is a wildcard address"},
		{"bad_sip_advertise_port.yaml", "sip.advertise.tcp", "is not a number in 1-65535"},
		{"bad_sip_hostname.yaml", "sip.hostname", "is not an IP address or DNS name"},
		{"bad_sip_connections_per_source.yaml", "sip.connections.max_conns_per_source", "must be positive"},
		{"bad_sip_connections_per_source_above_total.yaml", "sip.connections.max_conns_per_source", "must not exceed"},
		{"bad_sip_connections_handshake_timeout.yaml", "sip.connections.handshake_timeout", "at least 100ms"},
		{"bad_sip_connections_idle_timeout.yaml", "sip.connections.idle_timeout", "at least 100ms"},
		{"bad_sip_connections_message_timeout.yaml", "sip.connections.message_timeout", "at least 100ms"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(testdata(tc.file), noEnv)
			if ok, msg := checkFieldError(err, tc.field, tc.text); !ok {
				t.Error(msg)
			}
		})
	}
}
