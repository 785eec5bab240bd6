package service

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sipsvc/sipsvc/signaling"
)

// waitHealth polls grpc.health.v1 Check for svc until it answers want (5 s at most).
func waitHealth(t *testing.T, hc healthpb.HealthClient, svc string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err == nil && r.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %q = %v, %v; want %s", svc, r, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nextWatch reads a Watch stream until it delivers want (5 s at most).
func nextWatch(t *testing.T, st healthpb.Health_WatchClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	got := make(chan healthpb.HealthCheckResponse_ServingStatus, 1)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			if r.GetStatus() == want {
				got <- r.GetStatus()
				return
			}
		}
	}()
	select {
	case <-got:
	case err := <-errc:
		t.Fatalf("Watch ended before %s: %v", want, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("Watch did not see %s", want)
	}
}

// TestGRPCHealthFollowsReadiness: the grpc.health.v1 status of "" and of every service is
// NOT_SERVING before the API is ready, SERVING once it is, NOT_SERVING again while the
// B2BUA drains or the store fails; /readyz agrees at every step, and a Watch stream sees
// each transition.
func TestGRPCHealthFollowsReadiness(t *testing.T) {
	var sigErr, storeErr atomic.Pointer[error]
	set := func(p *atomic.Pointer[error], err error) { p.Store(&err) }
	set(&sigErr, signaling.ErrNotServing)
	set(&storeErr, nil)
	calls := &fakeCalls{ReadyFunc: func() error { return *sigErr.Load() }}
	env := startAPI(t, calls, func(c *APIConfig) {
		c.Ready = func() error { return *storeErr.Load() }
		c.ReadyInterval = 10 * time.Millisecond
	})
	hc := healthpb.NewHealthClient(env.conn)
	watch, err := hc.Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nextWatch(t, watch, healthpb.HealthCheckResponse_NOT_SERVING)
	watched := healthpb.HealthCheckResponse_NOT_SERVING

	services := []string{"", "sipsvc.v1.CallService", "sipsvc.v1.DirectoryService", "sipsvc.v1.EventService"}
	steps := []struct {
		name      string
		sig       error
		store     error
		want      healthpb.HealthCheckResponse_ServingStatus
		readyzErr string // substring of /readyz's error; "" means 200
	}{
		{"before_ready_signaling_not_serving", signaling.ErrNotServing, nil, healthpb.HealthCheckResponse_NOT_SERVING, "not serving"},
		{"ready", nil, nil, healthpb.HealthCheckResponse_SERVING, ""},
		{"draining", signaling.ErrDraining, nil, healthpb.HealthCheckResponse_NOT_SERVING, "draining"},
		{"store_down", nil, errors.New("store: closed"), healthpb.HealthCheckResponse_NOT_SERVING, "store"},
		{"ready_again", nil, nil, healthpb.HealthCheckResponse_SERVING, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			set(&sigErr, st.sig)
			set(&storeErr, st.store)
			if st.want != watched {
				nextWatch(t, watch, st.want)
				watched = st.want
			}
			for _, svc := range services {
				waitHealth(t, hc, svc, st.want)
			}
			code, body := env.do(t, "GET", "/readyz", nil, "")
			switch {
			case st.readyzErr == "" && code != 200:
				t.Errorf("/readyz = %d %v, want 200", code, body)
			case st.readyzErr != "" && (code != 503 || !strings.Contains(body["error"].(string), st.readyzErr)):
				t.Errorf("/readyz = %d %v, want 503 mentioning %q", code, body, st.readyzErr)
			}
		})
	}
}
