package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// TestAuth: with tokens configured, gRPC (unary and streaming) and REST are refused without
// a token or with a wrong one (UNAUTHENTICATED / 401) and accepted with the right one; a
// refused MakeCall rings nobody. Health checks, /healthz and /openapi.json need no token.
func TestAuth(t *testing.T) {
	t.Parallel()
	const good = "s3cret-token"
	s := startStack(t, stackOptions{tokens: []string{good, "second-token"}})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")

	withToken := func(tok string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		return ctx
	}
	for _, tc := range []struct {
		name, token string
	}{{"no token", ""}, {"wrong token", "not-the-token"}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := withToken(tc.token)
			_, err := s.calls.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "1000", To: "2000"})
			wantCode(t, err, codes.Unauthenticated, "token")
			_, err = s.calls.ListCalls(ctx, &sipsvcv1.ListCallsRequest{})
			wantCode(t, err, codes.Unauthenticated)
			st, err := s.events.WatchEvents(ctx, &sipsvcv1.WatchEventsRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			wantCode(t, err, codes.Unauthenticated)

			code, body := s.restToken("POST", "/v1/calls", map[string]any{"from": "1000", "to": "2000"}, tc.token)
			if code != http.StatusUnauthorized || body["code"] != float64(codes.Unauthenticated) {
				t.Errorf("POST /v1/calls → %d %v, want 401", code, body)
			}
			if code, _ := s.restToken("GET", "/v1/calls", nil, tc.token); code != http.StatusUnauthorized {
				t.Errorf("GET /v1/calls → %d, want 401", code)
			}
			if code, _ := s.restToken("GET", "/v1/events", nil, tc.token); code != http.StatusUnauthorized {
				t.Errorf("GET /v1/events → %d, want 401", code)
			}
		})
	}
	// Bearer with no token at all, and a different scheme, are refused too.
	for _, h := range []string{"Bearer", "Basic " + good, good} {
		req, _ := http.NewRequestWithContext(s.base, "GET", s.baseURL+"/v1/calls", nil)
		req.Header.Set("Authorization", h)
		res, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		discard(res.Body)
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q → %d (WWW-Authenticate %q), want 401 with a challenge", h, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := alice.Count(sip.INVITE); n != 0 {
		t.Fatalf("refused MakeCall rang the origin %d times", n)
	}

	// The right token: gRPC MakeCall, then REST GetCall and ReleaseCall.
	res, err := s.calls.MakeCall(withToken(good), &sipsvcv1.MakeCallRequest{From: "1000", To: "2000"})
	if err != nil {
		t.Fatalf("MakeCall with the token: %v", err)
	}
	id := res.GetCall().GetCallId()
	s.waitState(id, sipsvcv1.CallState_CALL_STATE_TALKING)
	if code, body := s.restToken("GET", "/v1/calls/"+id, nil, good); code != 200 || str(body, "call", "call_id") != id {
		t.Errorf("GET /v1/calls/%s with the token → %d %v", id, code, body)
	}
	if code, body := s.restToken("GET", "/v1/calls", nil, "second-token"); code != 200 {
		t.Errorf("GET /v1/calls with the second token → %d %v", code, body)
	}
	if _, err := s.calls.ListCalls(withToken("second-token"), &sipsvcv1.ListCallsRequest{}); err != nil {
		t.Errorf("ListCalls with the second token: %v", err)
	}
	w := s.watch(&sipsvcv1.WatchEventsRequest{CallId: id}) // s.token is good
	if code, body := s.restToken("POST", "/v1/calls/"+id+":release", map[string]any{}, good); code != 200 {
		t.Fatalf("release with the token → %d %v", code, body)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)
	w.wait(3*time.Second, "call_ended", kind(sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED, id))

	// No token needed for health and the API document.
	if _, err := healthpb.NewHealthClient(s.conn).Check(withToken(""), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check without a token: %v", err)
	}
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if code, _ := s.restToken("GET", p, nil, ""); code != 200 {
			t.Errorf("GET %s without a token → %d", p, code)
		}
	}
}
