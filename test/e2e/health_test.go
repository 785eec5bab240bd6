package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// TestHealth_FollowsSignalingReadiness runs the real B2BUA and the real API as cmd/sipsvc
// wires them (Calls is the signaling server) and checks, with a gRPC health client and
// /readyz, that both follow the B2BUA: NOT_SERVING before it serves, SERVING once it does,
// NOT_SERVING while it drains (SIGTERM). A Watch stream opened first sees both changes.
func TestHealth_FollowsSignalingReadiness(t *testing.T) {
	st := store.NewMemory()
	sig, err := signaling.New(signaling.Config{Hostname: "127.0.0.1", Directory: st, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	api, err := service.NewAPI(service.APIConfig{
		Calls: sig, Store: st, Realm: testRealm, Logger: testLogger(),
		ReadyInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	gl := listenTCP(t)
	hl := listenTCP(t)
	apiErr := make(chan error, 2)
	go func() { apiErr <- api.ServeGRPC(gl) }()
	go func() { apiErr <- api.ServeREST(hl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := api.Shutdown(ctx); err != nil {
			t.Errorf("API shutdown: %v", err)
		}
		for range 2 {
			if err := <-apiErr; err != nil {
				t.Errorf("API serve: %v", err)
			}
		}
	})
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() (int, string) {
		t.Helper()
		res, err := http.Get("http://" + hl.Addr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body["error"]
	}
	// expect reads the Watch stream up to want, then checks Check on every service and /readyz.
	expect := func(step string, want healthpb.HealthCheckResponse_ServingStatus, readyzErr string) {
		t.Helper()
		for {
			r, err := watch.Recv()
			if err != nil {
				t.Fatalf("%s: Watch ended before %s: %v", step, want, err)
			}
			if r.GetStatus() == want {
				break
			}
		}
		for _, svc := range []string{"", "sipsvc.v1.CallService", "sipsvc.v1.DirectoryService", "sipsvc.v1.EventService"} {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.GetStatus() != want {
				t.Errorf("%s: health %q = %v, %v; want %s", step, svc, r, err, want)
			}
		}
		switch code, msg := readyz(); {
		case readyzErr == "" && code != 200:
			t.Errorf("%s: /readyz = %d %q; want 200", step, code, msg)
		case readyzErr != "" && (code != 503 || !strings.Contains(msg, readyzErr)):
			t.Errorf("%s: /readyz = %d %q; want 503 mentioning %q", step, code, msg, readyzErr)
		}
	}

	expect("before Serve", healthpb.HealthCheckResponse_NOT_SERVING, "not serving")

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sigCtx, sigCancel := context.WithCancel(context.Background())
	sigDone := make(chan error, 1)
	go func() { sigDone <- sig.Serve(sigCtx, signaling.Listeners{UDP: []net.PacketConn{udp}}) }()
	defer func() {
		sigCancel()
		if err := <-sigDone; err != nil {
			t.Errorf("signaling serve: %v", err)
		}
	}()
	expect("serving", healthpb.HealthCheckResponse_SERVING, "")

	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	defer dcancel()
	if left := sig.Drain(dctx); left != 0 {
		t.Fatalf("Drain left %d calls", left)
	}
	expect("draining", healthpb.HealthCheckResponse_NOT_SERVING, "draining")
}
