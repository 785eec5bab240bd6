package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"gopkg.in/yaml.v3"
)

// rest sends a JSON request to the gateway with the stack's token and decodes the JSON reply.
func (s *stack) rest(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	return s.restToken(method, path, body, s.token)
}

func (s *stack) restToken(method, path string, body any, token string) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(s.base, method, s.baseURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer discard(res.Body)
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s → %d, body is not JSON: %v\n%s", method, path, res.StatusCode, err, raw)
		}
	}
	return res.StatusCode, out
}

// str digs a string out of decoded JSON: str(m, "call", "call_id").
func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	s, _ := cur.(string)
	return s
}

// restWaitState polls GET /v1/calls/{id} until the call is in the state (enum name).
func (s *stack) restWaitState(id, state string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	var code int
	var body map[string]any
	for time.Now().Before(deadline) {
		code, body = s.rest("GET", "/v1/calls/"+id, nil)
		if code == 200 && str(body, "call", "state") == state {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("GET /v1/calls/%s: %d %v, want state %s", id, code, body, state)
	return nil
}

// restLeg returns the leg id of the call's leg to a DN, from a decoded Call.
func restLeg(t *testing.T, call map[string]any, number string) string {
	t.Helper()
	legs, _ := call["legs"].([]any)
	for _, l := range legs {
		if lm, ok := l.(map[string]any); ok && lm["dn"] == number {
			return str(lm, "leg_id")
		}
	}
	t.Fatalf("no leg to %s in %v", number, call)
	return ""
}

// TestREST: call control through the gateway over net/http — MakeCall, GetCall, ListCalls,
// HoldCall, ReleaseCall — and the error statuses (400 naming the field, 404, 412).
func TestREST(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	bob := s.addPhone("2000", "bob", "UDP")
	carol := s.addPhone("3000", "carol", "UDP")
	carol.setAnswer(ringUntilCancel)

	code, body := s.rest("POST", "/v1/calls", map[string]any{"from": "1000", "to": "2000"})
	if code != 200 {
		t.Fatalf("POST /v1/calls → %d %v", code, body)
	}
	id := str(body, "call", "call_id")
	if id == "" || str(body, "call", "caller") != "1000" || str(body, "call", "dialed") != "2000" {
		t.Fatalf("POST /v1/calls body %v", body)
	}
	got := s.restWaitState(id, "CALL_STATE_TALKING")
	if str(got, "call", "create_time") == "" || str(got, "call", "answer_time") == "" {
		t.Errorf("GET /v1/calls/%s: times missing: %v", id, got)
	}
	if string(bob.WaitRequest(sip.INVITE, 1, time.Second).Body()) != alice.sdp {
		t.Errorf("destination did not get the origin's offer")
	}

	code, body = s.rest("GET", "/v1/calls?dn=1000&state=CALL_STATE_TALKING", nil)
	if calls, _ := body["calls"].([]any); code != 200 || len(calls) != 1 {
		t.Errorf("GET /v1/calls?dn=1000&state=CALL_STATE_TALKING → %d %v", code, body)
	}
	code, body = s.rest("GET", "/v1/calls?dn=1000&state=CALL_STATE_RINGING", nil)
	if calls, _ := body["calls"].([]any); code != 200 || len(calls) != 0 {
		t.Errorf("GET /v1/calls?dn=1000&state=CALL_STATE_RINGING → %d %v", code, body)
	}

	// Hold and retrieve through REST.
	call, _ := got["call"].(map[string]any)
	bobLeg := restLeg(t, call, "2000")
	if code, body := s.rest("POST", "/v1/calls/"+id+"/legs/"+bobLeg+":hold", map[string]any{}); code != 200 {
		t.Fatalf("hold → %d %v", code, body)
	}
	if b := string(bob.WaitRequest(sip.INVITE, 2, 3*time.Second).Body()); !strings.Contains(b, "a=sendonly") {
		t.Errorf("held party got %q", b)
	}
	s.restWaitState(id, "CALL_STATE_HELD")
	if code, body := s.rest("POST", "/v1/calls/"+id+"/legs/"+bobLeg+":retrieve", map[string]any{}); code != 200 {
		t.Fatalf("retrieve → %d %v", code, body)
	}
	if b := string(bob.WaitRequest(sip.INVITE, 3, 3*time.Second).Body()); !strings.Contains(b, "a=sendrecv") {
		t.Errorf("retrieved party got %q", b)
	}

	if code, body := s.rest("POST", "/v1/calls/"+id+":release", map[string]any{}); code != 200 {
		t.Fatalf("release → %d %v", code, body)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	bob.WaitRequest(sip.BYE, 1, 3*time.Second)

	// 404: the released call, and an unknown one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body = s.rest("GET", "/v1/calls/"+id, nil)
		if code == 404 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 404 || body["code"] != float64(5) || !strings.Contains(str(body, "message"), id) {
		t.Errorf("GET released call → %d %v, want 404 NOT_FOUND naming the call", code, body)
	}
	if code, body := s.rest("POST", "/v1/calls/nope:release", map[string]any{}); code != 404 {
		t.Errorf("release unknown call → %d %v", code, body)
	}

	// 400 naming the field.
	code, body = s.rest("POST", "/v1/calls", map[string]any{"from": "not a number!", "to": "2000"})
	if code != 400 || body["code"] != float64(3) || !strings.HasPrefix(str(body, "message"), "from") {
		t.Errorf("bad from → %d %v, want 400 INVALID_ARGUMENT naming from", code, body)
	}
	code, body = s.rest("POST", "/v1/calls", map[string]any{"from": "1000"})
	if code != 400 || !strings.HasPrefix(str(body, "message"), "to") {
		t.Errorf("missing to → %d %v, want 400 naming to", code, body)
	}
	if code, body := s.rest("POST", "/v1/calls", map[string]any{"from": "1000", "to": "9999"}); code != 404 {
		t.Errorf("unknown DN → %d %v, want 404", code, body)
	}

	// 412: hold a ringing call.
	code, body = s.rest("POST", "/v1/calls", map[string]any{"from": "3000", "to": "2000"})
	if code != 200 {
		t.Fatalf("POST /v1/calls → %d %v", code, body)
	}
	rid := str(body, "call", "call_id")
	ringing := s.restWaitState(rid, "CALL_STATE_RINGING")
	rcall, _ := ringing["call"].(map[string]any)
	carolLeg := restLeg(t, rcall, "3000")
	code, body = s.rest("POST", "/v1/calls/"+rid+"/legs/"+carolLeg+":hold", map[string]any{})
	if code != 412 || body["code"] != float64(9) {
		t.Errorf("hold a ringing call → %d %v, want 412 FAILED_PRECONDITION", code, body)
	}
	code, body = s.rest("POST", "/v1/calls/"+rid+"/legs/"+carolLeg+":answer", map[string]any{})
	if code != 412 || !strings.Contains(str(body, "message"), "talk") {
		t.Errorf("answer a phone without talk → %d %v, want 412", code, body)
	}
	if code, body := s.rest("POST", "/v1/calls/"+rid+":release", map[string]any{}); code != 200 {
		t.Errorf("release ringing → %d %v", code, body)
	}
	carol.waitCancelled(3 * time.Second)
}

// TestRESTEventStream: GET /v1/events streams newline-delimited JSON; a sips caller over TLS
// reaching a plain sip DN produces call_created, leg_scheme_decided (sips/TLS on A, sip/UDP on
// the B leg) and header_rewritten events.
func TestRESTEventStream(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	bob := s.addPhone("6000", "bob", "UDP")
	alice := s.callerPhone("alice", "TLS")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.baseURL+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	subs := s.hub.Subscribers()
	type result struct {
		res *http.Response
		err error
	}
	resc := make(chan result, 1)
	go func() {
		res, err := (&http.Client{}).Do(req)
		resc <- result{res, err}
	}()
	// The gateway answers with the first event; wait until the stream has subscribed.
	for deadline := time.Now().Add(5 * time.Second); s.hub.Subscribers() <= subs; {
		if time.Now().After(deadline) {
			t.Fatalf("REST event stream did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}

	u := alice.invite(s, "6000", inviteOpts{
		ruri:    fmt.Sprintf("sips:6000@%s", s.sipTLS),
		from:    "sips:alice@127.0.0.1",
		contact: fmt.Sprintf("sips:alice@%s", alice.Addr),
	})
	res := u.Wait(8 * time.Second)
	if res.StatusCode != 200 {
		t.Fatalf("sips call → %d", res.StatusCode)
	}
	u.Ack()
	if inv := bob.WaitRequest(sip.INVITE, 1, 2*time.Second); inv.Recipient.Scheme != "sip" || inv.Via().Transport != "UDP" {
		t.Errorf("B leg %s over %s, want sip over UDP", inv.Recipient.String(), inv.Via().Transport)
	}

	var hr result
	select {
	case hr = <-resc:
	case <-ctx.Done():
		t.Fatalf("no response from GET /v1/events")
	}
	if hr.err != nil {
		t.Fatalf("GET /v1/events: %v", hr.err)
	}
	defer discard(hr.res.Body)
	if hr.res.StatusCode != 200 {
		t.Fatalf("GET /v1/events → %d", hr.res.StatusCode)
	}

	type event struct {
		Kind        string `json:"kind"`
		CallID      string `json:"call_id"`
		LegID       string `json:"leg_id"`
		LegDecision *struct {
			LegID     string `json:"leg_id"`
			Scheme    string `json:"scheme"`
			Transport string `json:"transport"`
			Secure    bool   `json:"secure"`
		} `json:"leg_decision"`
		HeaderRewrite *struct {
			LegID  string `json:"leg_id"`
			Header string `json:"header"`
			Before string `json:"before"`
			After  string `json:"after"`
			Rule   string `json:"rule"`
		} `json:"header_rewrite"`
	}
	var (
		callID    string
		created   bool
		decisions = map[string]string{} // leg → scheme/transport
		rewrites  = map[string]string{} // header → before → after
	)
	done := func() bool {
		return created && decisions["A"] != "" && decisions["B1"] != "" && rewrites["From"] != ""
	}
	sc := bufio.NewScanner(hr.res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for !done() && sc.Scan() {
		var line struct {
			Result *struct {
				Event event `json:"event"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("event stream line is not JSON: %v\n%s", err, sc.Bytes())
		}
		if line.Result == nil {
			t.Fatalf("event stream line without result: %s", sc.Bytes())
		}
		ev := line.Result.Event
		if callID == "" {
			callID = ev.CallID
		}
		if ev.CallID != callID {
			continue
		}
		switch ev.Kind {
		case "EVENT_KIND_CALL_CREATED":
			created = true
		case "EVENT_KIND_LEG_SCHEME_DECIDED":
			if d := ev.LegDecision; d != nil {
				decisions[d.LegID] = fmt.Sprintf("%s/%s/%v", d.Scheme, d.Transport, d.Secure)
			}
		case "EVENT_KIND_HEADER_REWRITTEN":
			if r := ev.HeaderRewrite; r != nil {
				rewrites[r.Header] = r.Before + " → " + r.After + " (" + r.Rule + ")"
			}
		}
	}
	if !done() {
		t.Fatalf("stream ended (%v) before call_created, both decisions and a From rewrite: created=%v decisions=%v rewrites=%v",
			sc.Err(), created, decisions, rewrites)
	}
	if decisions["A"] != "sips/TLS/true" || decisions["B1"] != "sip/UDP/false" {
		t.Errorf("decisions %v, want A sips/TLS/true and B1 sip/UDP/false", decisions)
	}
	if r := rewrites["From"]; !strings.HasPrefix(r, "sips:") || !strings.Contains(r, "→ sip:") {
		t.Errorf("From rewrite %q, want sips: → sip:", r)
	}
	cancel()
	if code := u.Bye(); code != 200 {
		t.Errorf("BYE → %d", code)
	}
}

// TestOpenAPI: /openapi.json parses and lists every REST path of sipsvc_http.yaml with its
// method.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	res, err := s.http.Get(s.baseURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer discard(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json → %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var doc struct {
		Swagger string                               `json:"swagger"`
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatalf("/openapi.json does not parse: %v", err)
	}
	if doc.Swagger == "" && doc.OpenAPI == "" {
		t.Errorf("/openapi.json has no swagger/openapi version")
	}

	// Every rule of the HTTP mapping, including additional bindings.
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "proto", "sipsvc", "v1", "sipsvc_http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type rule struct {
		Selector           string `yaml:"selector"`
		Get                string `yaml:"get"`
		Post               string `yaml:"post"`
		Put                string `yaml:"put"`
		Patch              string `yaml:"patch"`
		Delete             string `yaml:"delete"`
		AdditionalBindings []rule `yaml:"additional_bindings"`
	}
	var mapping struct {
		HTTP struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &mapping); err != nil {
		t.Fatal(err)
	}
	type route struct{ method, path, selector string }
	var want []route
	var add func(r rule, sel string)
	add = func(r rule, sel string) {
		for m, p := range map[string]string{"get": r.Get, "post": r.Post, "put": r.Put, "patch": r.Patch, "delete": r.Delete} {
			if p != "" {
				want = append(want, route{m, p, sel})
			}
		}
		for _, b := range r.AdditionalBindings {
			add(b, sel)
		}
	}
	for _, r := range mapping.HTTP.Rules {
		add(r, r.Selector)
	}
	if len(want) < 17 {
		t.Fatalf("only %d routes read from sipsvc_http.yaml", len(want))
	}
	for _, r := range want {
		ops, ok := doc.Paths[r.path]
		if !ok {
			t.Errorf("/openapi.json lacks path %s (%s)", r.path, r.selector)
			continue
		}
		op, ok := ops[r.method]
		if !ok {
			t.Errorf("/openapi.json path %s lacks %s (%s)", r.path, strings.ToUpper(r.method), r.selector)
			continue
		}
		method := r.selector[strings.LastIndex(r.selector, ".")+1:]
		if id, _ := op["operationId"].(string); !strings.Contains(id, method) {
			t.Errorf("%s %s: operationId %q, want %s", strings.ToUpper(r.method), r.path, id, method)
		}
	}
	var paths []string
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	t.Logf("%d paths: %v", len(paths), paths)
}

// TestRESTEventStreamOpensBeforeFirstEvent: GET /v1/events answers (200, headers sent) as
// soon as the stream is subscribed, before any event, as service/events.go intends ("Send the
// response headers now, so that clients (and the REST gateway) see the stream open before
// the first event"). A client watching a quiet DN must not wait for the first event to learn
// that its request was accepted (HTTP clients and proxies time out on response headers).
func TestRESTEventStreamOpensBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.baseURL+"/v1/events?dn=1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events with no event yet: no response headers within 2s: %v", err)
	}
	defer res.Body.Close() // the stream never ends by itself
	if res.StatusCode != 200 {
		t.Errorf("GET /v1/events → %d", res.StatusCode)
	}
}

// TestRESTDirectory: DNs created, read, updated and deleted over REST are what calls use at
// once: a DN created over REST can be called, a deleted one cannot (404).
func TestRESTDirectory(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	alice := s.addPhone("1000", "alice", "UDP")
	erin := s.callerPhone("erin", "UDP")

	dnBody := map[string]any{"number": "5000", "type": "DN_TYPE_EXTENSION", "contact": erin.ContactURI("5000", "sip"), "display_name": "Erin"}
	code, body := s.rest("POST", "/v1/dns", dnBody)
	if code != 200 || str(body, "dn", "number") != "5000" || str(body, "dn", "display_name") != "Erin" {
		t.Fatalf("POST /v1/dns → %d %v", code, body)
	}
	if code, body := s.rest("POST", "/v1/dns", dnBody); code != 409 {
		t.Errorf("POST /v1/dns again → %d %v, want 409", code, body)
	}
	code, body = s.rest("POST", "/v1/dns", map[string]any{"number": "bad number!", "type": "DN_TYPE_EXTENSION", "contact": "sip:x@127.0.0.1"})
	if code != 400 || !strings.Contains(str(body, "message"), "number") {
		t.Errorf("POST /v1/dns with a bad number → %d %v, want 400 naming the number", code, body)
	}
	if code, body := s.rest("GET", "/v1/dns/5000", nil); code != 200 || str(body, "dn", "contact") != erin.ContactURI("5000", "sip") {
		t.Errorf("GET /v1/dns/5000 → %d %v", code, body)
	}
	if code, body := s.rest("GET", "/v1/dns/5999", nil); code != 404 {
		t.Errorf("GET /v1/dns/5999 → %d %v, want 404", code, body)
	}
	code, body = s.rest("PATCH", "/v1/dns/5000?update_mask=display_name", map[string]any{"display_name": "Erin B."})
	if code != 200 || str(body, "dn", "display_name") != "Erin B." || str(body, "dn", "contact") == "" {
		t.Errorf("PATCH /v1/dns/5000 → %d %v", code, body)
	}

	// The new DN is callable at once.
	code, body = s.rest("POST", "/v1/calls", map[string]any{"from": "1000", "to": "5000"})
	if code != 200 {
		t.Fatalf("POST /v1/calls to the new DN → %d %v", code, body)
	}
	id := str(body, "call", "call_id")
	s.restWaitState(id, "CALL_STATE_TALKING")
	if inv := erin.WaitRequest(sip.INVITE, 1, time.Second); string(inv.Body()) != alice.sdp {
		t.Errorf("the new DN did not get the origin's offer")
	}
	if code, body := s.rest("POST", "/v1/calls/"+id+":release", map[string]any{}); code != 200 {
		t.Fatalf("release → %d %v", code, body)
	}
	alice.WaitRequest(sip.BYE, 1, 3*time.Second)
	erin.WaitRequest(sip.BYE, 1, 3*time.Second)

	if code, body := s.rest("DELETE", "/v1/dns/5000", nil); code != 200 {
		t.Fatalf("DELETE /v1/dns/5000 → %d %v", code, body)
	}
	if code, _ := s.rest("GET", "/v1/dns/5000", nil); code != 404 {
		t.Errorf("GET a deleted DN → %d, want 404", code)
	}
	if code, body := s.rest("DELETE", "/v1/dns/5000", nil); code != 404 {
		t.Errorf("DELETE a deleted DN → %d %v, want 404", code, body)
	}
	if code, body := s.rest("POST", "/v1/calls", map[string]any{"from": "1000", "to": "5000"}); code != 404 {
		t.Errorf("call a deleted DN → %d %v, want 404", code, body)
	}
	code, body = s.rest("GET", "/v1/dns", nil)
	if dns, _ := body["dns"].([]any); code != 200 || len(dns) != 1 {
		t.Errorf("GET /v1/dns → %d %v, want only 1000", code, body)
	}
}
