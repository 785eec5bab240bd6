package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// maxRingTimeout bounds MakeCallRequest.timeout.
const maxRingTimeout = 10 * 60 // seconds

// callServer implements CallService on a CallControl.
type callServer struct {
	sipsvcv1.UnimplementedCallServiceServer
	calls CallControl
	enums *enumTables
	// store and regs, when set, let MakeCall refuse a caller DN that cannot be reached.
	store store.Store
	regs  Registrations
}

var _ sipsvcv1.CallServiceServer = (*callServer)(nil)

// MakeCall validates from and to and starts the call.
func (s *callServer) MakeCall(ctx context.Context, req *sipsvcv1.MakeCallRequest) (*sipsvcv1.MakeCallResponse, error) {
	if err := checkNumber("from", req.GetFrom()); err != nil {
		return nil, err
	}
	if err := checkDestination("to", req.GetTo()); err != nil {
		return nil, err
	}
	if err := s.reachable(ctx, req.GetFrom()); err != nil {
		return nil, err
	}
	mr := signaling.MakeCallRequest{From: req.GetFrom(), To: req.GetTo()}
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, invalidField("timeout", "%s", err.Error())
		}
		if t.GetSeconds() < 0 || t.GetSeconds() > maxRingTimeout || (t.GetSeconds() == 0 && t.GetNanos() < 0) {
			return nil, invalidField("timeout", "must lie between 0 and %ds", maxRingTimeout)
		}
		mr.Timeout = t.AsDuration()
	}
	info, err := s.calls.MakeCall(ctx, mr)
	if err != nil {
		return nil, grpcError(fmt.Errorf("make call from %s to %s: %w", mr.From, mr.To, err), "")
	}
	return &sipsvcv1.MakeCallResponse{Call: callToProto(info)}, nil
}

// legOp validates call_id and leg_id and runs op on them.
func legOp(ctx context.Context, what, callID, legID string, op func(context.Context, string, string) error) error {
	if err := checkID("call_id", callID); err != nil {
		return err
	}
	if err := checkID("leg_id", legID); err != nil {
		return err
	}
	if err := op(ctx, callID, legID); err != nil {
		subject, key := callSubject(err, callID, legID)
		return subjectError(what, subject, key, err, "")
	}
	return nil
}

// AnswerCall answers a ringing leg.
func (s *callServer) AnswerCall(ctx context.Context, req *sipsvcv1.AnswerCallRequest) (*sipsvcv1.AnswerCallResponse, error) {
	if err := legOp(ctx, "answer", req.GetCallId(), req.GetLegId(), s.calls.AnswerCall); err != nil {
		return nil, err
	}
	return &sipsvcv1.AnswerCallResponse{}, nil
}

// HoldCall holds the party on a leg.
func (s *callServer) HoldCall(ctx context.Context, req *sipsvcv1.HoldCallRequest) (*sipsvcv1.HoldCallResponse, error) {
	if err := legOp(ctx, "hold", req.GetCallId(), req.GetLegId(), s.calls.HoldCall); err != nil {
		return nil, err
	}
	return &sipsvcv1.HoldCallResponse{}, nil
}

// RetrieveCall retrieves a held leg.
func (s *callServer) RetrieveCall(ctx context.Context, req *sipsvcv1.RetrieveCallRequest) (*sipsvcv1.RetrieveCallResponse, error) {
	if err := legOp(ctx, "retrieve", req.GetCallId(), req.GetLegId(), s.calls.RetrieveCall); err != nil {
		return nil, err
	}
	return &sipsvcv1.RetrieveCallResponse{}, nil
}

// TransferCall validates the destination (exactly one of target and consult_call_id) and transfers.
func (s *callServer) TransferCall(ctx context.Context, req *sipsvcv1.TransferCallRequest) (*sipsvcv1.TransferCallResponse, error) {
	tr := signaling.TransferRequest{CallID: req.GetCallId(), LegID: req.GetLegId()}
	if err := checkID("call_id", tr.CallID); err != nil {
		return nil, err
	}
	if err := checkID("leg_id", tr.LegID); err != nil {
		return nil, err
	}
	switch d := req.GetDestination().(type) {
	case *sipsvcv1.TransferCallRequest_Target:
		if err := checkDestination("target", d.Target); err != nil {
			return nil, err
		}
		tr.Target = d.Target
	case *sipsvcv1.TransferCallRequest_ConsultCallId:
		if err := checkID("consult_call_id", d.ConsultCallId); err != nil {
			return nil, err
		}
		if d.ConsultCallId == tr.CallID {
			return nil, invalidField("consult_call_id", "must differ from call_id")
		}
		tr.ConsultCallID = d.ConsultCallId
	default:
		return nil, invalidField("target", "set target (blind transfer) or consult_call_id (attended transfer)")
	}
	if err := s.calls.TransferCall(ctx, tr); err != nil {
		subject, key := callSubject(err, tr.CallID, tr.LegID)
		return nil, subjectError("transfer", subject, key, err, "")
	}
	return &sipsvcv1.TransferCallResponse{}, nil
}

// ReleaseCall ends a call.
func (s *callServer) ReleaseCall(ctx context.Context, req *sipsvcv1.ReleaseCallRequest) (*sipsvcv1.ReleaseCallResponse, error) {
	if err := checkID("call_id", req.GetCallId()); err != nil {
		return nil, err
	}
	if err := s.calls.ReleaseCall(ctx, req.GetCallId()); err != nil {
		subject, key := callSubject(err, req.GetCallId(), "")
		return nil, subjectError("release", subject, key, err, "")
	}
	return &sipsvcv1.ReleaseCallResponse{}, nil
}

// GetCall returns one call.
func (s *callServer) GetCall(ctx context.Context, req *sipsvcv1.GetCallRequest) (*sipsvcv1.GetCallResponse, error) {
	if err := checkID("call_id", req.GetCallId()); err != nil {
		return nil, err
	}
	info, err := s.calls.GetCall(ctx, req.GetCallId())
	if err != nil {
		subject, key := callSubject(err, req.GetCallId(), "")
		return nil, subjectError("get call", subject, key, err, "")
	}
	return &sipsvcv1.GetCallResponse{Call: callToProto(info)}, nil
}

// callKey orders calls oldest first; it is also the page token.
func callKey(c signaling.CallInfo) string {
	var n int64
	if c.Created.After(time.Unix(0, 0)) {
		n = c.Created.UnixNano()
	}
	return fmt.Sprintf("%020d/%s", n, c.ID)
}

// ListCalls filters, sorts oldest first and pages the live calls.
func (s *callServer) ListCalls(ctx context.Context, req *sipsvcv1.ListCallsRequest) (*sipsvcv1.ListCallsResponse, error) {
	var f signaling.CallFilter
	if req.GetDn() != "" {
		if err := checkNumber("dn", req.GetDn()); err != nil {
			return nil, err
		}
		f.DN = req.GetDn()
	}
	if st := req.GetState(); st != sipsvcv1.CallState_CALL_STATE_UNSPECIFIED {
		var ok bool
		if f.State, ok = s.enums.callState[st]; !ok {
			return nil, invalidField("state", "unknown value %d", st)
		}
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	calls := s.calls.ListCalls(ctx, f)
	keys := make(map[string]string, len(calls))
	for _, c := range calls {
		keys[c.ID] = callKey(c)
	}
	slices.SortFunc(calls, func(a, b signaling.CallInfo) int { return strings.Compare(keys[a.ID], keys[b.ID]) })
	start := 0
	if after != "" {
		start, _ = slices.BinarySearchFunc(calls, after, func(c signaling.CallInfo, k string) int {
			if keys[c.ID] <= k {
				return -1
			}
			return 1
		})
	}
	resp := &sipsvcv1.ListCallsResponse{}
	end := min(start+size, len(calls))
	for _, c := range calls[start:end] {
		resp.Calls = append(resp.Calls, callToProto(c))
	}
	if end < len(calls) {
		resp.NextPageToken = encodePageToken(keys[calls[end-1].ID])
	}
	return resp, nil
}

// reachable refuses, with FAILED_PRECONDITION (HTTP 412), a MakeCall whose caller DN is
// self-registered (contact "*") and has no registration: its leg could only fail a moment
// after MakeCall answered. Other cases (unknown DN, fixed contact) are left to signaling.
func (s *callServer) reachable(ctx context.Context, number string) error {
	if s.store == nil || s.regs == nil {
		return nil
	}
	d, err := s.store.Lookup(ctx, number)
	if err != nil || !d.SelfRegistered() {
		return nil
	}
	bs, err := s.regs.List(ctx, number)
	if err != nil {
		return nil
	}
	if len(bs) == 0 {
		return status.Errorf(codes.FailedPrecondition, "from: DN %q is not registered: its phone must register before it can place a call", number)
	}
	return nil
}
