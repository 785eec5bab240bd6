package service

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// tokenAuth checks "Authorization: Bearer <token>" against a fixed set of tokens. The zero
// value (no tokens) lets everything through.
type tokenAuth struct {
	tokens [][]byte
}

func newTokenAuth(tokens []string) *tokenAuth {
	a := &tokenAuth{}
	for _, t := range tokens {
		if t != "" {
			a.tokens = append(a.tokens, []byte(t))
		}
	}
	return a
}

func (a *tokenAuth) enabled() bool { return len(a.tokens) > 0 }

// valid reports whether header is "Bearer <one of the tokens>", comparing in constant time.
func (a *tokenAuth) valid(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tb := []byte(strings.TrimSpace(tok))
	match := 0
	for _, t := range a.tokens {
		match |= subtle.ConstantTimeCompare(t, tb)
	}
	return match == 1
}

// exempt lists gRPC method prefixes that need no token: health checks.
func exempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}

func (a *tokenAuth) check(ctx context.Context, fullMethod string) error {
	if !a.enabled() || exempt(fullMethod) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, h := range md.Get("authorization") {
		if a.valid(h) {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "missing or invalid bearer token (authorization: Bearer <token>)")
}

func (a *tokenAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a *tokenAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// http wraps next with the same check, answering 401 with a google.rpc.Status-shaped body.
func (a *tokenAuth) http(next http.Handler) http.Handler {
	if !a.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.valid(r.Header.Get("Authorization")) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipsvc"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":16,"message":"missing or invalid bearer token (Authorization: Bearer <token>)","details":[]}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
