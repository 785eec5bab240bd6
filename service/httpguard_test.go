package service

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsBehindTokenOffLoopback: when the REST address is off loopback, /metrics takes
// the API tokens like /v1/ (issue 10); on loopback it stays open for local scrapers.
func TestMetricsBehindTokenOffLoopback(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up 1\n") })
	tests := []struct {
		name     string
		httpAddr string
		token    string
		want     int
	}{
		{"off loopback, no token", "0.0.0.0:8080", "", http.StatusUnauthorized},
		{"off loopback, token", "0.0.0.0:8080", "s3cret", http.StatusOK},
		{"loopback, no token", "127.0.0.1:8080", "", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := startAPI(t, nil, func(c *APIConfig) {
				c.HTTPAddr, c.Tokens, c.Metrics = tc.httpAddr, []string{"s3cret"}, metrics
			})
			req, _ := http.NewRequest("GET", env.baseURL+"/metrics", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			res, err := env.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("GET /metrics → %d %s, want %d", res.StatusCode, b, tc.want)
			}
			if tc.want == http.StatusOK && !strings.Contains(string(b), "up 1") {
				t.Errorf("body %q", b)
			}
		})
	}
}

// TestAPIConfigClientCAWithoutCert: a client CA without a server certificate is refused
// (gRPC would otherwise serve plaintext with no client check), issue 10.
func TestAPIConfigClientCAWithoutCert(t *testing.T) {
	cfg := APIConfig{Store: nil, Realm: testRealm, ClientCAFile: "/etc/clients.pem"}
	cfg.Store = startAPI(t, nil, nil).store
	_, err := NewAPI(cfg)
	if err == nil || !strings.Contains(err.Error(), "ClientCAFile needs CertFile") {
		t.Fatalf("NewAPI with a client CA and no certificate: %v", err)
	}
}

// TestRouteTable: Allow is computed from the OpenAPI paths, templates and verbs included.
func TestRouteTable(t *testing.T) {
	rt, err := newRouteTable([]byte(`{"paths":{"/v1/dns":{"get":{},"post":{}},"/v1/dns/{number}":{"get":{},"delete":{}},"/v1/dns/{dn.number}":{"put":{},"patch":{}},"/v1/calls/{call_id}:release":{"post":{}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"/v1/dns", "GET POST"},
		{"/v1/dns/1000", "DELETE GET PATCH PUT"},
		{"/v1/calls/abc:release", "POST"},
		{"/v1/calls/:release", ""},
		{"/v1/nope", ""},
		{"/v1/dns/1000/x", ""},
	}
	for _, tc := range tests {
		if got := strings.Join(rt.allowed(tc.path), " "); got != tc.want {
			t.Errorf("allowed(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
