package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/internal/syncbuf"
)

// syncBuffer is a log sink safe for concurrent writes and reads.
type syncBuffer = syncbuf.Buffer

// testSettings is config.Default on loopback port 0 with its data in a temporary directory.
func testSettings(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = []string{"127.0.0.1:0"}, []string{"127.0.0.1:0"}, []string{"127.0.0.1:0"}
	cfg.API.GRPCAddr, cfg.API.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func noEnv(string) string { return "" }

// start starts an instance and closes it when the test ends.
func start(t *testing.T, c Config) *Instance {
	t.Helper()
	in, err := Start(context.Background(), c)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = in.Close() })
	return in
}

// TestStartServesAndClosesCleanly starts the whole stack on the bbolt store and the dev
// certificate, checks that the API answers and the example DNs are in the directory, then
// stops it: Close returns nil, logs "stopped", and TestMain checks that no goroutine is left.
func TestStartServesAndClosesCleanly(t *testing.T) {
	var log syncBuffer
	in := start(t, Config{Settings: testSettings(t), Getenv: noEnv, LogOutput: &log})
	if len(in.SIP.UDP) != 1 || len(in.SIP.TCP) != 1 || len(in.SIP.TLS) != 1 {
		t.Fatalf("SIP listeners %+v, want one of each", in.SIP)
	}
	if strings.HasSuffix(in.HTTPAddr, ":0") || strings.HasSuffix(in.GRPCAddr, ":0") || in.HTTPAddr == "" {
		t.Fatalf("API addresses not resolved: grpc %q http %q", in.GRPCAddr, in.HTTPAddr)
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + in.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %d %s", res.StatusCode, body)
	}
	d, err := in.Store.Lookup(context.Background(), "1000")
	if err != nil || d.DisplayName == "" {
		t.Fatalf("example DN 1000: %+v, %v", d, err)
	}
	if err := in.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !strings.Contains(log.String(), "msg=stopped") {
		t.Errorf("no stopped line in the log:\n%s", log.String())
	}
	select {
	case <-in.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

// TestStartFailsOnBusyAddress: a listen address in use fails Start with the field's name,
// and the listeners already open are released (TestMain checks for leftover goroutines).
func TestStartFailsOnBusyAddress(t *testing.T) {
	first := start(t, Config{Settings: testSettings(t), Getenv: noEnv, LogOutput: io.Discard})
	cfg := testSettings(t)
	cfg.API.HTTPAddr = first.HTTPAddr
	_, err := Start(context.Background(), Config{Settings: cfg, Getenv: noEnv, LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "api.http_addr") {
		t.Fatalf("Start on a busy api.http_addr: %v, want an error naming api.http_addr", err)
	}
}

// TestCancelStartContextStops: cancelling the ctx given to Start stops the instance.
func TestCancelStartContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	in, err := Start(ctx, Config{Settings: testSettings(t), Getenv: noEnv, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-in.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the Start ctx was cancelled")
	}
	if err := in.Close(); err != nil {
		t.Fatalf("Close after cancel: %v", err)
	}
}

// TestExampleDNsSeededOnce: the config's DNs seed a new directory only; what the API changed
// survives a restart — an edited display name, a password, a deleted example DN (issue 12).
func TestExampleDNsSeededOnce(t *testing.T) {
	cfg := testSettings(t)
	in, err := Start(context.Background(), Config{Settings: cfg, Getenv: noEnv, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	send := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+in.HTTPAddr+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s → %d %s", method, path, res.StatusCode, b)
		}
	}
	send("PATCH", "/v1/dns/1000?update_mask=display_name,password", `{"display_name":"Alice (edited)","password":"n3w-secret"}`)
	send("DELETE", "/v1/dns/1001", "")
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	in = start(t, Config{Settings: cfg, Getenv: noEnv, LogOutput: &log})
	ctx := context.Background()
	d, err := in.Store.Lookup(ctx, "1000")
	if err != nil || d.DisplayName != "Alice (edited)" || d.HA1SHA256 == "" {
		t.Errorf("after restart DN 1000 = %+v, %v; want the API's display name and password", d, err)
	}
	if _, err := in.Store.Lookup(ctx, "1001"); err == nil {
		t.Error("deleted example DN 1001 came back after a restart")
	}
	if !strings.Contains(log.String(), "seeded_dns=0") || !strings.Contains(log.String(), "config DNs not applied") {
		t.Errorf("restart log does not say the config DNs were not applied:\n%s", log.String())
	}
}

// TestUDPResponseSizeLimitRaised: the process lets sipgo send UDP messages up to the largest
// IPv4 UDP payload, so that a large response (RFC 4475 longreq) goes back to its sender
// (RFC 3261 §18.2.2); signaling keeps the §18.1.1 limit for our own requests.
func TestUDPResponseSizeLimitRaised(t *testing.T) {
	if got, want := sip.UDPMTUSize-200, 65507; got != want {
		t.Fatalf("sipgo sends UDP messages up to %d bytes, want %d", got, want)
	}
}
