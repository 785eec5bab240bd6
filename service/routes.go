package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// routeTable lists the REST path templates and their methods, read from the OpenAPI
// document generated from the same HTTP rules as the gateway, so the two cannot drift.
type routeTable []route

// route is one path template ("/v1/calls/{call_id}:release") split on "/", with its
// methods in upper case.
type route struct {
	segs    []string
	methods []string
}

// newRouteTable reads the "paths" of an OpenAPI v2 document.
func newRouteTable(doc []byte) (routeTable, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("service: read routes from the OpenAPI document: %w", err)
	}
	var t routeTable
	for p, ops := range d.Paths {
		r := route{segs: strings.Split(strings.Trim(p, "/"), "/")}
		for m := range ops {
			r.methods = append(r.methods, strings.ToUpper(m))
		}
		t = append(t, r)
	}
	return t, nil
}

// allowed returns the methods the path takes (sorted), or nil when no template matches.
func (t routeTable) allowed(path string) []string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var out []string
	for _, r := range t {
		if r.match(segs) {
			for _, m := range r.methods {
				if !slices.Contains(out, m) {
					out = append(out, m)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// match reports whether segs fit the template: "{x}" takes any non-empty segment, and
// "{x}:verb" any segment that ends in ":verb" after a non-empty prefix.
func (r route) match(segs []string) bool {
	if len(segs) != len(r.segs) {
		return false
	}
	for i, want := range r.segs {
		got := segs[i]
		if !strings.HasPrefix(want, "{") {
			if got != want {
				return false
			}
			continue
		}
		_, verb, hasVerb := strings.Cut(want[strings.Index(want, "}"):], ":")
		if hasVerb {
			pre, ok := strings.CutSuffix(got, ":"+verb)
			if !ok || pre == "" {
				return false
			}
		} else if got == "" {
			return false
		}
	}
	return true
}

// routingErrorHandler answers the gateway's routing errors: a path that exists but does
// not take the method is 405 Method Not Allowed with Allow (the gateway's default is 501);
// the rest go to the default handler.
func (t routeTable) routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if httpStatus == http.StatusMethodNotAllowed || httpStatus == http.StatusNotFound {
		if allow := t.allowed(r.URL.Path); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{
				"code":    12, // UNIMPLEMENTED, as the gateway maps 405
				"message": fmt.Sprintf("%s is not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allow, ", ")),
				"details": []any{},
			})
			return
		}
	}
	runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
}
