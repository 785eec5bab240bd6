package service

import (
	"context"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MetricHTTPRefused counts REST requests refused before routing, by reason
// (RefusalHost, RefusalOrigin, RefusalContentType).
const MetricHTTPRefused = "sipsvc.api.http.refused"

// Reasons of MetricHTTPRefused (attribute sipsvc.api.refusal).
const (
	RefusalHost        = "host"
	RefusalOrigin      = "origin"
	RefusalContentType = "content_type"
)

var attrRefusal = attribute.Key("sipsvc.api.refusal")

// httpGuard refuses the requests a web page in the operator's browser could send to the REST
// port: a Host header that names neither an IP address nor one of our names (DNS
// rebinding: evil.example resolved to 127.0.0.1), an Origin or Sec-Fetch-Site from another
// site (cross-site request forgery), and writes whose body is not declared as JSON (HTML
// forms and "simple" fetches can only send form or text bodies without a CORS preflight).
// It runs before the request is traced or counted, so refused requests add no time series.
type httpGuard struct {
	// hosts are the accepted host names (lower case), "localhost" included.
	hosts   map[string]bool
	refused metric.Int64Counter
	// refusal holds the counter options of each reason, built once.
	refusal map[string]metric.AddOption
}

func newHTTPGuard(allowed []string, mp metric.MeterProvider) (*httpGuard, error) {
	g := &httpGuard{hosts: map[string]bool{"localhost": true}, refusal: map[string]metric.AddOption{}}
	for _, h := range allowed {
		g.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	c, err := mp.Meter("github.com/sipsvc/sipsvc/service").Int64Counter(MetricHTTPRefused,
		metric.WithDescription("REST requests refused before routing: Host not ours, cross-site Origin, or a write whose body is not JSON"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("service: metric %s: %w", MetricHTTPRefused, err)
	}
	g.refused = c
	for _, r := range []string{RefusalHost, RefusalOrigin, RefusalContentType} {
		g.refusal[r] = metric.WithAttributeSet(attribute.NewSet(attrRefusal.String(r)))
	}
	return g, nil
}

// hostOK reports whether the Host header (host or host:port) is an IP address or one of
// our names.
func (g *httpGuard) hostOK(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	return g.hosts[strings.ToLower(host)]
}

// crossSite reports whether the request comes from a page of another origin than the one
// it is sent to.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default: // cross-site, same-site (another origin on our site)
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return true // "null" (sandboxed pages, file:) and garbage
	}
	return !strings.EqualFold(u.Host, r.Host)
}

// jsonBodyOK reports whether a write declares a JSON body: any request with a body (or a
// Content-Type) must say application/json. GET, HEAD and OPTIONS pass.
func jsonBodyOK(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.ContentLength == 0
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// wrap returns next behind the guard.
func (g *httpGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !g.hostOK(r.Host):
			// 421: this server does not answer for that name.
			g.refuse(w, r, RefusalHost, http.StatusMisdirectedRequest, 7,
				fmt.Sprintf("Host %q is not a name of this API: use an IP address, localhost, or a name listed in api.allowed_hosts", r.Host))
		case crossSite(r):
			g.refuse(w, r, RefusalOrigin, http.StatusForbidden, 7,
				fmt.Sprintf("cross-site request refused (Origin %q, Sec-Fetch-Site %q): the API takes no requests from web pages of other origins", r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site")))
		case !jsonBodyOK(r):
			g.refuse(w, r, RefusalContentType, http.StatusUnsupportedMediaType, 3,
				fmt.Sprintf("Content-Type %q: request bodies must be application/json", r.Header.Get("Content-Type")))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// refuse counts and answers a refused request with a google.rpc.Status-shaped body.
func (g *httpGuard) refuse(w http.ResponseWriter, r *http.Request, reason string, httpStatus, code int, msg string) {
	g.refused.Add(r.Context(), 1, g.refusal[reason])
	writeJSON(w, httpStatus, map[string]any{"code": code, "message": msg, "details": []any{}})
}

// routeKey holds a *routeHolder in a request's context.
type routeKey struct{}

// routeHolder receives the gateway's route template for the request.
type routeHolder struct{ pattern string }

// withRoute labels the metrics and span of gateway requests with the gateway's route
// template ("/v1/calls/{call_id}") instead of the "/" the HTTP mux matched: otelhttp reads
// the request's Pattern after the handler returns, and the gateway matches deeper inside.
// r must be the request otelhttp passed down (the mux sets Pattern on it in place).
func withRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &routeHolder{}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, h)))
		if h.pattern != "" {
			r.Pattern = r.Method + " " + h.pattern
		}
	})
}

// recordRoute is a gateway middleware that stores the matched route template for withRoute.
func recordRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if h, ok := r.Context().Value(routeKey{}).(*routeHolder); ok {
			// The gateway puts the matched Pattern in the context before the middlewares run
			// (HTTPPathPattern only comes later, inside the generated handler).
			if p, ok := runtime.HTTPPattern(r.Context()); ok {
				h.pattern = p.String()
			}
		}
		next(w, r, params)
	}
}
