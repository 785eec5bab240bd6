package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sipsvc/sipsvc/dn"
	"github.com/sipsvc/sipsvc/signaling"
)

// errorCodes is the one table from domain errors to gRPC codes, checked in order with
// errors.Is (so wrapped errors match; etcd's map lookup would miss them).
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{signaling.ErrCallNotFound, codes.NotFound},
	{signaling.ErrLegNotFound, codes.NotFound},
	{signaling.ErrWrongState, codes.FailedPrecondition},
	{signaling.ErrNotSupported, codes.FailedPrecondition},
	// An unknown DN named in a request is a missing object, like an unknown call.
	{signaling.ErrUnknownDN, codes.NotFound},
	{signaling.ErrBadTarget, codes.InvalidArgument},
	{signaling.ErrOverCap, codes.ResourceExhausted},
	// Shutting down: try again elsewhere or later.
	{signaling.ErrNotServing, codes.Unavailable},
	{dn.ErrInvalid, codes.InvalidArgument},
	{dn.ErrNotFound, codes.NotFound},
	{dn.ErrExists, codes.AlreadyExists},
}

// grpcError turns an error from the domain into a gRPC status error. Errors that already
// carry a status (GRPCStatus, or made here) keep it; context errors become Canceled and
// DeadlineExceeded; the table assigns the rest; anything unknown is Internal. The message
// is the error text, which names the call, leg, DN or field concerned. A *dn.FieldError
// also gets a google.rpc.BadRequest detail naming the field (prefixed by fieldPrefix, e.g.
// "dn.").
func grpcError(err error, fieldPrefix string) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	var fe *dn.FieldError
	if errors.As(err, &fe) {
		return invalidField(fieldPrefix+fe.Field, "%s", fe.Msg)
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// invalidField returns an InvalidArgument status whose message starts with the field name
// and which carries a google.rpc.BadRequest field violation.
func invalidField(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := s.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	}); err == nil {
		s = d
	}
	return s.Err()
}

// httpStatusFromCode is runtime.HTTPStatusFromCode except that FAILED_PRECONDITION is
// 412 Precondition Failed (the gateway's default is 400, which would hide it among bad
// arguments).
func httpStatusFromCode(c codes.Code) int {
	if c == codes.FailedPrecondition {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(c)
}

// gatewayErrorHandler writes gRPC errors as google.rpc.Status JSON bodies with the HTTP
// status from httpStatusFromCode.
func gatewayErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		if msg := explainEnum(st.Message()); msg != st.Message() {
			err = status.Error(codes.InvalidArgument, msg)
		}
	}
	var he *runtime.HTTPStatusError
	if !errors.As(err, &he) {
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatusFromCode(status.Code(err)), Err: err}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// subjectError is grpcError for errors about one named object (subject, e.g. `DN "7000"`,
// whose identifying text key, e.g. `"7000"`, the domain error may already contain). Context
// is added once (issue 12: "create DN 7000: number: DN \"7000\" dn: already exists"):
//   - a missing or duplicate subject gets one plain message, `DN "7000" already exists`;
//   - an error that already names the subject gets only the operation, "release: …";
//   - any other error gets the operation and the subject.
func subjectError(op, subject, key string, err error, fieldPrefix string) error {
	names := strings.Contains(err.Error(), key)
	switch {
	case names && errors.Is(err, dn.ErrExists):
		return status.Error(codes.AlreadyExists, subject+" already exists")
	case names && (errors.Is(err, dn.ErrNotFound) || errors.Is(err, signaling.ErrCallNotFound) || errors.Is(err, signaling.ErrLegNotFound)):
		return status.Error(codes.NotFound, subject+" not found")
	case names:
		return grpcError(fmt.Errorf("%s: %w", op, err), fieldPrefix)
	}
	return grpcError(fmt.Errorf("%s %s: %w", op, subject, err), fieldPrefix)
}

// callSubject names a call, or a leg of it, for subjectError, with its key (the quoted call
// id, which the signaling errors about the call or its legs contain).
func callSubject(_ error, callID, legID string) (subject, key string) {
	key = strconv.Quote(callID)
	if legID == "" {
		return "call " + key, key
	}
	return fmt.Sprintf("call %s leg %q", key, legID), key
}

// dnSubject names a DN for subjectError.
func dnSubject(number string) (subject, key string) {
	key = strconv.Quote(number)
	return "DN " + key, key
}
