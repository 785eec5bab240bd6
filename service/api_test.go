package service

import (
	"encoding/json"
	"errors"
	"github.com/sipsvc/sipsvc/store"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"gopkg.in/yaml.v3"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

func TestAuth(t *testing.T) {
	env := startAPI(t, nil, func(c *APIConfig) { c.Tokens = []string{"t0ken", "other"} })
	ctx := ctxT(t)
	dir := sipsvcv1.NewDirectoryServiceClient(env.conn)

	for _, tc := range []struct {
		name  string
		md    []string
		code  codes.Code
		httpC int
		token string
	}{
		{"no token", nil, codes.Unauthenticated, 401, ""},
		{"wrong token", []string{"authorization", "Bearer nope"}, codes.Unauthenticated, 401, "nope"},
		{"good token", []string{"authorization", "Bearer t0ken"}, codes.OK, 200, "t0ken"},
		{"second token", []string{"authorization", "bearer other"}, codes.OK, 200, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx := ctx
			if tc.md != nil {
				cctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			}
			_, err := dir.ListDNs(cctx, &sipsvcv1.ListDNsRequest{})
			if tc.code == codes.OK {
				if err != nil {
					t.Fatalf("ListDNs: %v", err)
				}
			} else {
				wantCode(t, err, tc.code, "token")
			}
			// Streams are checked too.
			st, err := sipsvcv1.NewEventServiceClient(env.conn).WatchEvents(cctx, &sipsvcv1.WatchEventsRequest{})
			if err == nil {
				_, err = st.Header()
				if tc.code != codes.OK {
					_, err = st.Recv()
				}
			}
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, "token")
			} else if err != nil {
				t.Errorf("WatchEvents: %v", err)
			}

			code, body := env.do(t, "GET", "/v1/dns", nil, tc.token)
			if code != tc.httpC {
				t.Errorf("REST = %d %v; want %d", code, body, tc.httpC)
			}
			if code == 401 && body["code"] != float64(codes.Unauthenticated) {
				t.Errorf("401 body %v", body)
			}
		})
	}
	// Health, /healthz, /readyz and /openapi.json need no token.
	if _, err := healthpb.NewHealthClient(env.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without token: %v", err)
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if code, _ := env.do(t, "GET", p, nil, ""); code != 200 {
			t.Errorf("GET %s without token = %d", p, code)
		}
	}
}

func TestNewAPIRefusesOpenREST(t *testing.T) {
	for _, cfg := range []APIConfig{
		{Store: store.NewMemory(), Realm: "r", HTTPAddr: "0.0.0.0:8080"},
		{Store: store.NewMemory(), Realm: "r", GRPCAddr: "10.1.2.3:9090"},
		{Store: store.NewMemory(), Realm: "r", HTTPAddr: "[::]:8080", ClientCAFile: "ca.pem"},
		{Realm: "r"},
		{Store: store.NewMemory()},
	} {
		if _, err := NewAPI(cfg); err == nil {
			t.Errorf("NewAPI(%+v) succeeded", cfg)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var ready atomic.Bool
	env := startAPI(t, nil, func(c *APIConfig) {
		c.Ready = func() error {
			if !ready.Load() {
				return errors.New("store not open")
			}
			return nil
		}
		c.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "# metrics\n") })
		c.ReadyInterval = 10 * time.Millisecond
	})
	ctx := ctxT(t)

	if code, body := env.do(t, "GET", "/healthz", nil, ""); code != 200 || body["status"] != "ok" {
		t.Errorf("/healthz = %d %v", code, body)
	}
	code, body := env.do(t, "GET", "/readyz", nil, "")
	if code != 503 || !strings.Contains(body["error"].(string), "store not open") {
		t.Errorf("/readyz not ready = %d %v", code, body)
	}
	ready.Store(true)
	if code, body := env.do(t, "GET", "/readyz", nil, ""); code != 200 {
		t.Errorf("/readyz ready = %d %v", code, body)
	}
	resp, err := env.http.Get(env.baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "# metrics\n" {
		t.Errorf("/metrics = %d %q", resp.StatusCode, b)
	}

	hc := healthpb.NewHealthClient(env.conn)
	for _, svc := range []string{"", "sipsvc.v1.DirectoryService", "sipsvc.v1.EventService"} {
		waitHealth(t, hc, svc, healthpb.HealthCheckResponse_SERVING)
	}

	// Reflection lets grpcurl list the services.
	rc, err := reflectionpb.NewServerReflectionClient(env.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	lr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.CloseSend()
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"sipsvc.v1.DirectoryService", "sipsvc.v1.EventService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v; missing %s", names, want)
		}
	}
}

// TestOpenAPI checks that /openapi.json parses and lists every REST rule of
// proto/sipsvc/v1/sipsvc_http.yaml, with its method.
func TestOpenAPI(t *testing.T) {
	env := startAPI(t, nil, nil)
	resp, err := env.http.Get(env.baseURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var doc struct {
		Swagger string                               `json:"swagger"`
		Info    struct{ Title string }               `json:"info"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if doc.Swagger != "2.0" || doc.Info.Title != "sipsvc API" {
		t.Errorf("swagger %q title %q", doc.Swagger, doc.Info.Title)
	}

	raw, err := os.ReadFile("../proto/sipsvc/v1/sipsvc_http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type rule = map[string]any
	var cfg struct {
		HTTP struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	n := 0
	check := func(sel string, r rule) {
		for _, m := range []string{"get", "post", "put", "patch", "delete"} {
			p, ok := r[m].(string)
			if !ok {
				continue
			}
			n++
			if _, ok := doc.Paths[p][m]; !ok {
				t.Errorf("%s: %s %s missing from /openapi.json", sel, strings.ToUpper(m), p)
			}
		}
	}
	var sels []string
	for _, r := range cfg.HTTP.Rules {
		sel, _ := r["selector"].(string)
		sels = append(sels, sel)
		check(sel, r)
		bs, _ := r["additional_bindings"].([]any)
		for _, b := range bs {
			check(sel, b.(rule))
		}
	}
	if n < 17 {
		t.Errorf("only %d REST bindings found in sipsvc_http.yaml", n)
	}
	// Every CallService and DirectoryService RPC has a REST binding.
	for _, sd := range []grpc.ServiceDesc{sipsvcv1.CallService_ServiceDesc, sipsvcv1.DirectoryService_ServiceDesc} {
		for _, m := range sd.Methods {
			if !slices.Contains(sels, sd.ServiceName+"."+m.MethodName) {
				t.Errorf("%s.%s has no REST rule", sd.ServiceName, m.MethodName)
			}
		}
	}
}
