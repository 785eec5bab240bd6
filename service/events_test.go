package service

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/signaling"
)

// allKinds lists every signaling.EventKind; keep it in step with signaling/interfaces.go.
var allKinds = []signaling.EventKind{
	signaling.EventCallCreated, signaling.EventLegSchemeDecided, signaling.EventHeaderRewritten,
	signaling.EventLegRinging, signaling.EventLegAnswered, signaling.EventLegHeld,
	signaling.EventLegRetrieved, signaling.EventLegTransferred, signaling.EventLegReleased,
	signaling.EventCallEnded, signaling.EventRoutingFallback, signaling.EventRegistrationAdded,
	signaling.EventRegistrationRefresh, signaling.EventRegistrationRemoved,
}

func TestEventKindTable(t *testing.T) {
	seen := map[sipsvcv1.EventKind]bool{}
	for _, k := range allKinds {
		pk, ok := eventKinds[k]
		if !ok || pk == sipsvcv1.EventKind_EVENT_KIND_UNSPECIFIED {
			t.Errorf("%s has no proto kind", k)
		}
		seen[pk] = true
	}
	for v := range sipsvcv1.EventKind_name {
		if k := sipsvcv1.EventKind(v); k != sipsvcv1.EventKind_EVENT_KIND_UNSPECIFIED && !seen[k] {
			t.Errorf("proto %v has no signaling kind", k)
		}
	}
	for st := range callStates {
		if _, ok := newEnumTables().callState[callStates[st]]; !ok {
			t.Errorf("state %s does not round-trip", st)
		}
	}
}

// sampleEvents is one call of DN 1000 (with a scheme decision and a rewrite), one call of
// other DNs, and a registration of 1000 and of 1001.
func sampleEvents() []signaling.Event {
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	return []signaling.Event{
		{Kind: signaling.EventCallCreated, Time: now, CallID: "c1", Leg: "A", DN: "1000"},
		{Kind: signaling.EventLegSchemeDecided, Time: now, CallID: "c1", Leg: "B1", DN: "5000",
			Decision: &signaling.LegDecision{Leg: "B1", Scheme: "sips", Transport: "TLS", Secure: true, Reason: "dn contact sips", Rule: "R8"}},
		{Kind: signaling.EventHeaderRewritten, Time: now, CallID: "c1", Leg: "B1",
			Rewrite: &signaling.Rewrite{Leg: "B1", Header: "Contact", Before: "sip:a@x", After: "sips:a@x", Rule: "R10"}},
		{Kind: signaling.EventCallCreated, Time: now, CallID: "c2", Leg: "A", DN: "6000"},
		{Kind: signaling.EventLegAnswered, Time: now, CallID: "c2", Leg: "B1", DN: "6001", Status: 200},
		{Kind: signaling.EventLegReleased, Time: now, CallID: "c1", Leg: "A", DN: "1000", Status: 487, Cause: "cancelled"},
		{Kind: signaling.EventCallEnded, Time: now, CallID: "c1"},
		{Kind: signaling.EventRegistrationAdded, Time: now, DN: "1000",
			Binding: &dn.Binding{Number: "1000", Contact: "sips:1000@10.0.0.1", Secure: true, Transport: "TLS", Expires: now.Add(time.Hour)}},
		{Kind: signaling.EventRegistrationAdded, Time: now,
			Binding: &dn.Binding{Number: "1001", Contact: "sip:1001@10.0.0.2", Transport: "UDP", Expires: now.Add(time.Hour)}},
	}
}

func TestHubFilters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter EventFilter
		want   []int // indexes into sampleEvents
	}{
		{"all", EventFilter{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"dn follows its calls", EventFilter{DN: "1000"}, []int{0, 1, 2, 5, 6, 7}},
		{"dn by binding", EventFilter{DN: "1001"}, []int{8}},
		{"call", EventFilter{CallID: "c2"}, []int{3, 4}},
		{"kinds", EventFilter{Kinds: []signaling.EventKind{signaling.EventLegSchemeDecided, signaling.EventHeaderRewritten}}, []int{1, 2}},
		{"dn and kind", EventFilter{DN: "1000", Kinds: []signaling.EventKind{signaling.EventRegistrationAdded}}, []int{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHub(32, nil)
			sub := h.subscribe(tc.filter)
			evs := sampleEvents()
			for _, ev := range evs {
				h.Observe(context.Background(), ev)
			}
			h.unsubscribe(sub)
			var got []int
			for ev := range sub.ch {
				got = append(got, slices.IndexFunc(evs, func(e signaling.Event) bool {
					return e.Kind == ev.Kind && e.CallID == ev.CallID && e.Leg == ev.Leg && e.DN == ev.DN && e.Binding == ev.Binding
				}))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got events %v; want %v", got, tc.want)
			}
		})
	}
}

func TestHubDropsSlowSubscriber(t *testing.T) {
	h := NewHub(2, nil)
	slow := h.subscribe(EventFilter{})
	other := h.subscribe(EventFilter{CallID: "nothing"})
	done := make(chan struct{})
	go func() {
		for range 100 {
			h.Observe(context.Background(), signaling.Event{Kind: signaling.EventLegRinging, CallID: "c1"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Observe blocked on a slow subscriber")
	}
	n := 0
	for range slow.ch { // the buffered events, then closed
		n++
	}
	if n != 2 {
		t.Errorf("slow subscriber got %d events; want its 2 buffered", n)
	}
	if h.Subscribers() != 1 {
		t.Errorf("subscribers = %d; want the other one left", h.Subscribers())
	}
	h.unsubscribe(slow) // no-op, no double close
	h.unsubscribe(other)
}

func TestWatchEventsGRPC(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewEventServiceClient(env.conn)

	st, err := c.WatchEvents(ctx, &sipsvcv1.WatchEventsRequest{Dn: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil { // subscribed once headers arrive
		t.Fatal(err)
	}
	for _, ev := range sampleEvents() {
		env.hub.Observe(ctx, ev)
	}
	var got []*sipsvcv1.Event
	for range 6 {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, r.GetEvent())
	}
	if got[0].GetKind() != sipsvcv1.EventKind_EVENT_KIND_CALL_CREATED || got[0].GetCallId() != "c1" || got[0].GetDn() != "1000" {
		t.Errorf("first event %v", got[0])
	}
	if d := got[1].GetLegDecision(); d.GetScheme() != "sips" || d.GetTransport() != "TLS" || d.GetReason() != "dn contact sips" || d.GetRule() != "R8" || !d.GetSecure() {
		t.Errorf("scheme decision %v", got[1])
	}
	if r := got[2].GetHeaderRewrite(); r.GetLegId() != "B1" || r.GetHeader() != "Contact" || r.GetBefore() != "sip:a@x" || r.GetAfter() != "sips:a@x" || r.GetRule() != "R10" {
		t.Errorf("rewrite %v", got[2])
	}
	if got[3].GetSipStatus() != 487 || got[3].GetCause() != "cancelled" {
		t.Errorf("release %v", got[3])
	}
	if r := got[5].GetRegistration(); r.GetContact() != "sips:1000@10.0.0.1" || !r.GetSecure() || got[5].GetKind() != sipsvcv1.EventKind_EVENT_KIND_REGISTRATION_ADDED {
		t.Errorf("registration %v", got[5])
	}

	bad, err := c.WatchEvents(ctx, &sipsvcv1.WatchEventsRequest{Kinds: []sipsvcv1.EventKind{sipsvcv1.EventKind_EVENT_KIND_UNSPECIFIED}})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "kinds")
}

// TestWatchEventsShutdown checks that Shutdown ends open streams promptly.
func TestWatchEventsShutdown(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)
	st, err := sipsvcv1.NewEventServiceClient(env.conn).WatchEvents(ctx, &sipsvcv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := env.api.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	_, err = st.Recv()
	wantCode(t, err, codes.Unavailable, "shutting down")
}

func TestWatchEventsREST(t *testing.T) {
	env := startAPI(t, nil, func(c *APIConfig) { c.Tokens = []string{"tok"} })
	ctx := ctxT(t)

	req, _ := http.NewRequestWithContext(ctx, "GET", env.baseURL+"/v1/events?call_id=c1&kinds=EVENT_KIND_LEG_SCHEME_DECIDED&kinds=EVENT_KIND_CALL_ENDED", nil)
	req.Header.Set("Authorization", "Bearer tok")
	type result struct {
		resp *http.Response
		err  error
	}
	rc := make(chan result, 1)
	go func() {
		resp, err := env.http.Do(req) // headers come with the first event
		rc <- result{resp, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for env.hub.Subscribers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("REST watcher never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, ev := range sampleEvents() {
		env.hub.Observe(ctx, ev)
	}
	r := <-rc
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.resp.Body.Close()
	if r.resp.StatusCode != 200 {
		t.Fatalf("status %d", r.resp.StatusCode)
	}
	sc := bufio.NewScanner(r.resp.Body)
	var kinds []string
	for len(kinds) < 2 && sc.Scan() {
		var line struct {
			Result struct {
				Event map[string]any `json:"event"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		ev := line.Result.Event
		kinds = append(kinds, ev["kind"].(string))
		if ev["kind"] == "EVENT_KIND_LEG_SCHEME_DECIDED" {
			d := ev["leg_decision"].(map[string]any)
			if d["scheme"] != "sips" || d["rule"] != "R8" || ev["call_id"] != "c1" {
				t.Errorf("decision line %s", sc.Text())
			}
		}
	}
	if !slices.Equal(kinds, []string{"EVENT_KIND_LEG_SCHEME_DECIDED", "EVENT_KIND_CALL_ENDED"}) {
		t.Errorf("kinds = %v (scan err %v)", kinds, sc.Err())
	}

	// Unauthenticated watchers get 401 before any stream.
	code, _ := env.do(t, "GET", "/v1/events", nil, "")
	if code != 401 {
		t.Errorf("unauthenticated /v1/events = %d", code)
	}
}
