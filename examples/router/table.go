package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
)

// Table maps dialed-number prefixes to routes; the longest matching prefix wins, and
// Default (if set) serves numbers no prefix matches. Without a default, unmatched numbers
// are rejected with 404.
type Table struct {
	Routes  []Route `yaml:"routes"`
	Default *Route  `yaml:"default"`
}

// Route is one table entry: ordered targets, or a rejection.
type Route struct {
	// Prefix of the dialed number ("" matches everything).
	Prefix  string   `yaml:"prefix"`
	Targets []Target `yaml:"targets"`
	Reject  *Reject  `yaml:"reject"`
}

// Target is a DN or a sip:/sips: URI; "${dialed}" in either is replaced by the dialed number.
type Target struct {
	DN      string        `yaml:"dn"`
	URI     string        `yaml:"uri"`
	Timeout time.Duration `yaml:"timeout"`
	// Policy is "", "per-leg" or "strict".
	Policy string `yaml:"policy"`
}

// Reject answers the call with a SIP error status.
type Reject struct {
	Status int    `yaml:"status"`
	Reason string `yaml:"reason"`
}

// ParseTable reads a YAML table and checks it.
func ParseTable(r io.Reader) (Table, error) {
	var t Table
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil && !errors.Is(err, io.EOF) {
		return t, fmt.Errorf("routing table: %w", err)
	}
	return t, t.Validate()
}

// Validate checks every route.
func (t Table) Validate() error {
	check := func(name string, r Route) error {
		if (len(r.Targets) == 0) == (r.Reject == nil) {
			return fmt.Errorf("%s: set either targets or reject", name)
		}
		if r.Reject != nil && (r.Reject.Status < 400 || r.Reject.Status > 699) {
			return fmt.Errorf("%s: reject status %d is not 400-699", name, r.Reject.Status)
		}
		for i, tg := range r.Targets {
			if (tg.DN == "") == (tg.URI == "") {
				return fmt.Errorf("%s: targets[%d]: set either dn or uri", name, i)
			}
			if tg.URI != "" && !strings.HasPrefix(tg.URI, "sip:") && !strings.HasPrefix(tg.URI, "sips:") {
				return fmt.Errorf("%s: targets[%d]: uri %q is not sip: or sips:", name, i, tg.URI)
			}
			if _, ok := policies[tg.Policy]; !ok {
				return fmt.Errorf("%s: targets[%d]: policy %q is not per-leg or strict", name, i, tg.Policy)
			}
		}
		return nil
	}
	for i, r := range t.Routes {
		if err := check(fmt.Sprintf("routes[%d] (prefix %q)", i, r.Prefix), r); err != nil {
			return err
		}
	}
	if t.Default != nil {
		return check("default", *t.Default)
	}
	return nil
}

var policies = map[string]routingv1.SipsPolicy{
	"":        routingv1.SipsPolicy_SIPS_POLICY_UNSPECIFIED,
	"per-leg": routingv1.SipsPolicy_SIPS_POLICY_PER_LEG,
	"strict":  routingv1.SipsPolicy_SIPS_POLICY_STRICT,
}

// Lookup returns the route for a dialed number: the longest matching prefix, else the
// default, else nil.
func (t Table) Lookup(dialed string) *Route {
	var best *Route
	for i := range t.Routes {
		r := &t.Routes[i]
		if strings.HasPrefix(dialed, r.Prefix) && (best == nil || len(r.Prefix) > len(best.Prefix)) {
			best = r
		}
	}
	if best == nil {
		return t.Default
	}
	return best
}

// Decide turns the route for dialed into a RouteCallResponse.
func (t Table) Decide(dialed string) *routingv1.RouteCallResponse {
	r := t.Lookup(dialed)
	if r == nil {
		return reject(404, "Not Found")
	}
	if r.Reject != nil {
		return reject(int32(r.Reject.Status), r.Reject.Reason)
	}
	list := &routingv1.TargetList{}
	for _, tg := range r.Targets {
		pt := &routingv1.Target{Policy: policies[tg.Policy]}
		if tg.DN != "" {
			pt.Destination = &routingv1.Target_Dn{Dn: strings.ReplaceAll(tg.DN, "${dialed}", dialed)}
		} else {
			pt.Destination = &routingv1.Target_Uri{Uri: strings.ReplaceAll(tg.URI, "${dialed}", dialed)}
		}
		if tg.Timeout > 0 {
			pt.Timeout = durationpb.New(tg.Timeout)
		}
		list.Targets = append(list.Targets, pt)
	}
	return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Targets{Targets: list}}
}

func reject(status int32, reason string) *routingv1.RouteCallResponse {
	return &routingv1.RouteCallResponse{Decision: &routingv1.RouteCallResponse_Reject{
		Reject: &routingv1.Rejection{SipStatus: status, Reason: reason}}}
}

// routeFlag parses -route "prefix=target[,target…]" where a target with a ':' is a URI.
func routeFlag(v string) (Route, error) {
	prefix, list, ok := strings.Cut(v, "=")
	if !ok || list == "" {
		return Route{}, fmt.Errorf("-route %q: want prefix=target[,target…]", v)
	}
	r := Route{Prefix: prefix}
	for _, s := range strings.Split(list, ",") {
		if strings.Contains(s, ":") {
			r.Targets = append(r.Targets, Target{URI: s})
		} else {
			r.Targets = append(r.Targets, Target{DN: s})
		}
	}
	return r, nil
}

// rejectFlag parses -reject "prefix=status[:reason]".
func rejectFlag(v string) (Route, error) {
	prefix, rest, ok := strings.Cut(v, "=")
	if !ok {
		return Route{}, fmt.Errorf("-reject %q: want prefix=status[:reason]", v)
	}
	code, reason, _ := strings.Cut(rest, ":")
	n, err := strconv.Atoi(code)
	if err != nil {
		return Route{}, fmt.Errorf("-reject %q: status: %w", v, err)
	}
	return Route{Prefix: prefix, Reject: &Reject{Status: n, Reason: reason}}, nil
}

// String lists the table, longest prefixes first, for the start-up log.
func (t Table) String() string {
	rs := append([]Route(nil), t.Routes...)
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Prefix) > len(rs[j].Prefix) })
	var b strings.Builder
	line := func(name string, r Route) {
		if r.Reject != nil {
			fmt.Fprintf(&b, "  %-8s → reject %d %s\n", name, r.Reject.Status, r.Reject.Reason)
			return
		}
		var ts []string
		for _, tg := range r.Targets {
			ts = append(ts, tg.DN+tg.URI)
		}
		fmt.Fprintf(&b, "  %-8s → %s\n", name, strings.Join(ts, ", then "))
	}
	for _, r := range rs {
		line(strconv.Quote(r.Prefix), r)
	}
	if t.Default != nil {
		line("default", *t.Default)
	}
	return b.String()
}
