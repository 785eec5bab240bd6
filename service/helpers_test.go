package service

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/sipsvc/sipsvc/store"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const testRealm = "sipsvc-test"

// testEnv is an API serving gRPC and REST on 127.0.0.1:0.
type testEnv struct {
	api     *API
	conn    *grpc.ClientConn
	baseURL string
	store   *store.Memory
	hub     *Hub
	http    *http.Client
}

// startAPI starts an API with a memStore, a Hub and the given call control (may be nil);
// mutate adjusts the config first. Everything stops at test cleanup.
func startAPI(t *testing.T, calls CallControl, mutate func(*APIConfig)) *testEnv {
	t.Helper()
	env := &testEnv{store: store.NewMemory(), hub: NewHub(16, nil), http: &http.Client{Timeout: 10 * time.Second}}
	cfg := APIConfig{Store: env.store, Hub: env.hub, Realm: testRealm}
	if calls != nil {
		cfg.Calls = calls
	}
	if mutate != nil {
		mutate(&cfg)
	}
	api, err := NewAPI(cfg)
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	env.api = api
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- api.ServeGRPC(gl) }()
	go func() { errc <- api.ServeREST(hl) }()
	env.baseURL = "http://" + hl.Addr().String()
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	env.conn = conn
	t.Cleanup(func() {
		_ = conn.Close()
		env.http.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := api.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return env
}

// do sends a REST request with an optional JSON body and bearer token and returns the
// status and the decoded JSON body (nil when empty).
func (e *testEnv) do(t *testing.T, method, path string, body any, token string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.baseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return resp.StatusCode, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: status %d, body not JSON: %v\n%s", method, path, resp.StatusCode, err, raw)
	}
	return resp.StatusCode, m
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
