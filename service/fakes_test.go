package service

import (
	"context"

	"github.com/sipsvc/sipsvc/signaling"
)

// fakeCalls is a CallControl whose behaviour each test sets through func fields; an unset
// field answers signaling.ErrNotSupported (or an empty list).
type fakeCalls struct {
	MakeCallFunc     func(ctx context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error)
	AnswerCallFunc   func(ctx context.Context, callID, legID string) error
	HoldCallFunc     func(ctx context.Context, callID, legID string) error
	RetrieveCallFunc func(ctx context.Context, callID, legID string) error
	TransferCallFunc func(ctx context.Context, req signaling.TransferRequest) error
	ReleaseCallFunc  func(ctx context.Context, callID string) error
	GetCallFunc      func(ctx context.Context, callID string) (signaling.CallInfo, error)
	ListCallsFunc    func(ctx context.Context, f signaling.CallFilter) []signaling.CallInfo
	// ReadyFunc answers Ready; unset means ready.
	ReadyFunc func() error
}

var (
	_ CallControl = (*fakeCalls)(nil)
	_ Readiness   = (*fakeCalls)(nil)
)

func (f *fakeCalls) Ready() error {
	if f.ReadyFunc == nil {
		return nil
	}
	return f.ReadyFunc()
}

func (f *fakeCalls) MakeCall(ctx context.Context, req signaling.MakeCallRequest) (signaling.CallInfo, error) {
	if f.MakeCallFunc == nil {
		return signaling.CallInfo{}, signaling.ErrNotSupported
	}
	return f.MakeCallFunc(ctx, req)
}

func (f *fakeCalls) AnswerCall(ctx context.Context, callID, legID string) error {
	if f.AnswerCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.AnswerCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) HoldCall(ctx context.Context, callID, legID string) error {
	if f.HoldCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.HoldCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) RetrieveCall(ctx context.Context, callID, legID string) error {
	if f.RetrieveCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.RetrieveCallFunc(ctx, callID, legID)
}

func (f *fakeCalls) TransferCall(ctx context.Context, req signaling.TransferRequest) error {
	if f.TransferCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.TransferCallFunc(ctx, req)
}

func (f *fakeCalls) ReleaseCall(ctx context.Context, callID string) error {
	if f.ReleaseCallFunc == nil {
		return signaling.ErrNotSupported
	}
	return f.ReleaseCallFunc(ctx, callID)
}

func (f *fakeCalls) GetCall(ctx context.Context, callID string) (signaling.CallInfo, error) {
	if f.GetCallFunc == nil {
		return signaling.CallInfo{}, signaling.ErrCallNotFound
	}
	return f.GetCallFunc(ctx, callID)
}

func (f *fakeCalls) ListCalls(ctx context.Context, filter signaling.CallFilter) []signaling.CallInfo {
	if f.ListCallsFunc == nil {
		return nil
	}
	return f.ListCallsFunc(ctx, filter)
}
