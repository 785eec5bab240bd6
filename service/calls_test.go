package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/signaling"
)

// TestGRPCErrorTable checks every row of the error table, wrapped, plus the special cases.
func TestGRPCErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     codes.Code
		httpCode int
	}{
		{signaling.ErrCallNotFound, codes.NotFound, 404},
		{signaling.ErrLegNotFound, codes.NotFound, 404},
		{signaling.ErrWrongState, codes.FailedPrecondition, 412},
		{signaling.ErrNotSupported, codes.FailedPrecondition, 412},
		{signaling.ErrUnknownDN, codes.NotFound, 404},
		{signaling.ErrBadTarget, codes.InvalidArgument, 400},
		{signaling.ErrOverCap, codes.ResourceExhausted, 429},
		{signaling.ErrNotServing, codes.Unavailable, 503},
		{&dn.FieldError{Field: "contact", Msg: "bad"}, codes.InvalidArgument, 400},
		{dn.ErrNotFound, codes.NotFound, 404},
		{dn.ErrExists, codes.AlreadyExists, 409},
		{context.DeadlineExceeded, codes.DeadlineExceeded, 504},
		{context.Canceled, codes.Canceled, 499},
		{errors.New("disk on fire"), codes.Internal, 500},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			err := grpcError(fmt.Errorf("doing something with 42: %w", tc.err), "dn.")
			wantCode(t, err, tc.code, "")
			if got := httpStatusFromCode(tc.code); got != tc.httpCode {
				t.Errorf("HTTP status = %d; want %d", got, tc.httpCode)
			}
		})
	}
	wantCode(t, grpcError(&dn.FieldError{Field: "contact", Msg: "bad"}, "dn."), codes.InvalidArgument, "dn.contact: bad")
	if len(errorCodes) != 11 {
		t.Errorf("errorCodes has %d rows; update this test", len(errorCodes))
	}
}

// TestCallErrorsOverGRPCAndREST runs each domain error through a real server on both
// transports: the code, the HTTP status and a message naming the call and leg.
func TestCallErrorsOverGRPCAndREST(t *testing.T) {
	errs := map[string]error{
		"nocall":   signaling.ErrCallNotFound,
		"noleg":    signaling.ErrLegNotFound,
		"ringing":  signaling.ErrWrongState,
		"notalk":   signaling.ErrNotSupported,
		"slow":     context.DeadlineExceeded,
		"disaster": errors.New("boom"),
	}
	op := func(_ context.Context, callID, legID string) error {
		if err, ok := errs[callID]; ok {
			return fmt.Errorf("leg %s: %w", legID, err)
		}
		return nil
	}
	fake := &fakeCalls{AnswerCallFunc: op, HoldCallFunc: op, RetrieveCallFunc: op}
	env := startAPI(t, fake, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewCallServiceClient(env.conn)
	for _, tc := range []struct {
		callID   string
		code     codes.Code
		httpCode int
	}{
		{"ok", codes.OK, 200},
		{"nocall", codes.NotFound, 404},
		{"noleg", codes.NotFound, 404},
		{"ringing", codes.FailedPrecondition, 412},
		{"notalk", codes.FailedPrecondition, 412},
		{"slow", codes.DeadlineExceeded, 504},
		{"disaster", codes.Internal, 500},
	} {
		t.Run(tc.callID, func(t *testing.T) {
			calls := map[string]func() error{
				"answer": func() error {
					_, err := c.AnswerCall(ctx, &sipsvcv1.AnswerCallRequest{CallId: tc.callID, LegId: "B1"})
					return err
				},
				"hold": func() error {
					_, err := c.HoldCall(ctx, &sipsvcv1.HoldCallRequest{CallId: tc.callID, LegId: "B1"})
					return err
				},
				"retrieve": func() error {
					_, err := c.RetrieveCall(ctx, &sipsvcv1.RetrieveCallRequest{CallId: tc.callID, LegId: "B1"})
					return err
				},
			}
			for verb, call := range calls {
				err := call()
				if tc.code == codes.OK {
					if err != nil {
						t.Errorf("%s: %v", verb, err)
					}
				} else {
					wantCode(t, err, tc.code, fmt.Sprintf("call %q leg %q", tc.callID, "B1"))
				}
				code, body := env.do(t, "POST", "/v1/calls/"+tc.callID+"/legs/B1:"+verb, map[string]any{}, "")
				if tc.code == codes.OK {
					if code != 200 {
						t.Errorf("REST %s = %d %v", verb, code, body)
					}
					continue
				}
				wantHTTP(t, code, body, tc.httpCode, tc.callID)
			}
		})
	}
}

func TestMakeCall(t *testing.T) {
	created := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	var got signaling.MakeCallRequest
	fake := &fakeCalls{MakeCallFunc: func(_ context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error) {
		switch req.From {
		case "4040":
			return signaling.CallInfo{}, fmt.Errorf("from %s: %w", req.From, signaling.ErrUnknownDN)
		case "4000":
			return signaling.CallInfo{}, fmt.Errorf("to %s: %w", req.To, signaling.ErrBadTarget)
		}
		got = req
		return signaling.CallInfo{
			ID: "c1", State: signaling.StateInitiating, Caller: req.From, Dialed: req.To, Created: created,
			Legs: []signaling.LegInfo{{ID: "A", DN: req.From, Direction: "outbound", State: signaling.StateRinging,
				Decision: signaling.LegDecision{Leg: "A", Scheme: "sips", Transport: "TLS", Secure: true, Reason: "registered with sips", Rule: "R8"}}},
		}, nil
	}}
	env := startAPI(t, fake, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewCallServiceClient(env.conn)

	resp, err := c.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "1000", To: "sips:bob@example.com", Timeout: durationpb.New(20 * time.Second)})
	if err != nil {
		t.Fatalf("MakeCall: %v", err)
	}
	if got.From != "1000" || got.To != "sips:bob@example.com" || got.Timeout != 20*time.Second {
		t.Errorf("CallControl got %+v", got)
	}
	call := resp.GetCall()
	if call.GetCallId() != "c1" || call.GetState() != sipsvcv1.CallState_CALL_STATE_INITIATING || !call.GetCreateTime().AsTime().Equal(created) ||
		call.GetAnswerTime() != nil || call.GetLegs()[0].GetDirection() != sipsvcv1.LegDirection_LEG_DIRECTION_OUTBOUND ||
		call.GetLegs()[0].GetDecision().GetRule() != "R8" {
		t.Errorf("MakeCall = %v", call)
	}

	for _, tc := range []struct {
		name string
		req  *sipsvcv1.MakeCallRequest
		code codes.Code
		want string
	}{
		{"no from", &sipsvcv1.MakeCallRequest{To: "1001"}, codes.InvalidArgument, "from"},
		{"bad from", &sipsvcv1.MakeCallRequest{From: "sip:1000@x", To: "1001"}, codes.InvalidArgument, "from"},
		{"no to", &sipsvcv1.MakeCallRequest{From: "1000"}, codes.InvalidArgument, "to"},
		{"http to", &sipsvcv1.MakeCallRequest{From: "1000", To: "http://example.com"}, codes.InvalidArgument, "to"},
		{"bad to number", &sipsvcv1.MakeCallRequest{From: "1000", To: "10 01"}, codes.InvalidArgument, "to"},
		{"negative timeout", &sipsvcv1.MakeCallRequest{From: "1000", To: "1001", Timeout: durationpb.New(-time.Second)}, codes.InvalidArgument, "timeout"},
		{"unknown DN", &sipsvcv1.MakeCallRequest{From: "4040", To: "1001"}, codes.NotFound, "4040"},
		{"bad target", &sipsvcv1.MakeCallRequest{From: "4000", To: "sip:nobody@nowhere.invalid"}, codes.InvalidArgument, "nowhere.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.MakeCall(ctx, tc.req)
			wantCode(t, err, tc.code, tc.want)
		})
	}

	code, body := env.do(t, "POST", "/v1/calls", map[string]any{"from": "1000", "to": "1001", "timeout": "15s"}, "")
	if code != 200 || body["call"].(map[string]any)["call_id"] != "c1" {
		t.Fatalf("POST /v1/calls = %d %v", code, body)
	}
	code, body = env.do(t, "POST", "/v1/calls", map[string]any{"from": "1000", "to": "mailto:x@y"}, "")
	wantHTTP(t, code, body, 400, "to")
}

func TestTransferAndRelease(t *testing.T) {
	var got signaling.TransferRequest
	fake := &fakeCalls{
		TransferCallFunc: func(_ context.Context, req signaling.TransferRequest) error {
			if req.ConsultCallID == "gone" {
				return fmt.Errorf("consult call %s: %w", req.ConsultCallID, signaling.ErrCallNotFound)
			}
			got = req
			return nil
		},
		ReleaseCallFunc: func(_ context.Context, callID string) error {
			if callID != "c1" {
				return signaling.ErrCallNotFound
			}
			return nil
		},
	}
	env := startAPI(t, fake, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewCallServiceClient(env.conn)

	if _, err := c.TransferCall(ctx, &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A", Destination: &sipsvcv1.TransferCallRequest_Target{Target: "1002"}}); err != nil {
		t.Fatal(err)
	}
	if got != (signaling.TransferRequest{CallID: "c1", LegID: "A", Target: "1002"}) {
		t.Errorf("blind transfer got %+v", got)
	}
	code, body := env.do(t, "POST", "/v1/calls/c1/legs/A:transfer", map[string]any{"consult_call_id": "c2"}, "")
	if code != 200 || got != (signaling.TransferRequest{CallID: "c1", LegID: "A", ConsultCallID: "c2"}) {
		t.Errorf("attended transfer: %d %v, got %+v", code, body, got)
	}
	for _, tc := range []struct {
		name string
		req  *sipsvcv1.TransferCallRequest
		code codes.Code
		want string
	}{
		{"no destination", &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A"}, codes.InvalidArgument, "target"},
		{"bad target", &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A", Destination: &sipsvcv1.TransferCallRequest_Target{Target: "tel:+123"}}, codes.InvalidArgument, "target"},
		{"self consult", &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A", Destination: &sipsvcv1.TransferCallRequest_ConsultCallId{ConsultCallId: "c1"}}, codes.InvalidArgument, "consult_call_id"},
		{"no leg", &sipsvcv1.TransferCallRequest{CallId: "c1", Destination: &sipsvcv1.TransferCallRequest_Target{Target: "1002"}}, codes.InvalidArgument, "leg_id"},
		{"gone consult", &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A", Destination: &sipsvcv1.TransferCallRequest_ConsultCallId{ConsultCallId: "gone"}}, codes.NotFound, "gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.TransferCall(ctx, tc.req)
			wantCode(t, err, tc.code, tc.want)
		})
	}

	if code, body := env.do(t, "POST", "/v1/calls/c1:release", map[string]any{}, ""); code != 200 {
		t.Errorf("release = %d %v", code, body)
	}
	code, body = env.do(t, "POST", "/v1/calls/c9:release", map[string]any{}, "")
	wantHTTP(t, code, body, 404, "c9")
	_, err := c.ReleaseCall(ctx, &sipsvcv1.ReleaseCallRequest{CallId: strings.Repeat("x", 200)})
	wantCode(t, err, codes.InvalidArgument, "call_id")
}

func TestGetAndListCalls(t *testing.T) {
	base := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	var all []signaling.CallInfo
	for i := range 5 {
		st := signaling.StateTalking
		if i%2 == 0 {
			st = signaling.StateRinging
		}
		all = append(all, signaling.CallInfo{ID: fmt.Sprintf("c%d", 4-i), State: st, Created: base.Add(time.Duration(i) * time.Second)})
	}
	var gotFilter signaling.CallFilter
	fake := &fakeCalls{
		GetCallFunc: func(_ context.Context, id string) (signaling.CallInfo, error) {
			for _, c := range all {
				if c.ID == id {
					return c, nil
				}
			}
			return signaling.CallInfo{}, signaling.ErrCallNotFound
		},
		ListCallsFunc: func(_ context.Context, f signaling.CallFilter) []signaling.CallInfo {
			gotFilter = f
			var out []signaling.CallInfo
			for i := len(all) - 1; i >= 0; i-- { // any order
				if f.State == "" || all[i].State == f.State {
					out = append(out, all[i])
				}
			}
			return out
		},
	}
	env := startAPI(t, fake, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewCallServiceClient(env.conn)

	got, err := c.GetCall(ctx, &sipsvcv1.GetCallRequest{CallId: "c2"})
	if err != nil || got.GetCall().GetState() != sipsvcv1.CallState_CALL_STATE_RINGING {
		t.Fatalf("GetCall = %v, %v", got, err)
	}
	_, err = c.GetCall(ctx, &sipsvcv1.GetCallRequest{CallId: "c77"})
	wantCode(t, err, codes.NotFound, "c77")

	// Oldest first, two per page.
	var ids []string
	tok := ""
	for range 5 {
		resp, err := c.ListCalls(ctx, &sipsvcv1.ListCallsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range resp.GetCalls() {
			ids = append(ids, call.GetCallId())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if s := strings.Join(ids, ","); s != "c4,c3,c2,c1,c0" {
		t.Errorf("pages = %s", s)
	}

	code, body := env.do(t, "GET", "/v1/calls?state=CALL_STATE_RINGING&dn=1000", nil, "")
	if code != 200 || len(body["calls"].([]any)) != 3 {
		t.Fatalf("GET /v1/calls = %d %v", code, body)
	}
	if gotFilter != (signaling.CallFilter{DN: "1000", State: signaling.StateRinging}) {
		t.Errorf("filter = %+v", gotFilter)
	}
	code, body = env.do(t, "GET", "/v1/calls?dn=10%2000", nil, "")
	wantHTTP(t, code, body, 400, "dn")
}

func TestCallServiceUnimplementedWithoutCallControl(t *testing.T) {
	env := startAPI(t, nil, nil)
	_, err := sipsvcv1.NewCallServiceClient(env.conn).GetCall(ctxT(t), &sipsvcv1.GetCallRequest{CallId: "c1"})
	wantCode(t, err, codes.Unimplemented, "")
	if code, _ := env.do(t, "GET", "/v1/calls/c1", nil, ""); code != http.StatusNotImplemented {
		t.Errorf("REST without call control = %d; want 501", code)
	}
}
