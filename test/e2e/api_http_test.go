package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// rawREST sends one request to the stack's REST port with the given headers (Host is set
// with the "Host" key) and returns the status, the headers and the body.
func (s *stack) rawREST(method, path, body string, headers map[string]string) (int, http.Header, string) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(s.base, method, s.baseURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer discard(res.Body)
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// TestRESTRefusesCrossSiteRequests: the REST port refuses what a web page in the
// operator's browser could send it (issue 10): a foreign Origin or Sec-Fetch-Site, a write
// whose body is not JSON, and a Host that is not ours (DNS rebinding). Nothing is created,
// each refusal is counted by reason, and a same-origin JSON request still works.
func TestRESTRefusesCrossSiteRequests(t *testing.T) {
	s := startStack(t, stackOptions{})
	const dnJSON = `{"number":"7100","type":"DN_TYPE_EXTENSION","contact":"sip:7100@127.0.0.1:5999"}`
	host := strings.TrimPrefix(s.baseURL, "http://")
	_, port, _ := net.SplitHostPort(host)
	json := "application/json"
	tests := []struct {
		name    string
		body    string
		headers map[string]string
		want    int
		words   string
	}{
		{"foreign Origin", dnJSON, map[string]string{"Content-Type": json, "Origin": "http://evil.example"}, http.StatusForbidden, "cross-site"},
		{"null Origin", dnJSON, map[string]string{"Content-Type": json, "Origin": "null"}, http.StatusForbidden, "cross-site"},
		{"Origin on another port", dnJSON, map[string]string{"Content-Type": json, "Origin": "http://127.0.0.1:1"}, http.StatusForbidden, "cross-site"},
		{"Sec-Fetch-Site cross-site", dnJSON, map[string]string{"Content-Type": json, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "cross-site"},
		{"text/plain body", dnJSON, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType, "application/json"},
		{"form body", "number=7100", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType, "application/json"},
		{"body without Content-Type", dnJSON, nil, http.StatusUnsupportedMediaType, "application/json"},
		{"DNS rebinding Host", dnJSON, map[string]string{"Content-Type": json, "Host": "evil.example:" + port}, http.StatusMisdirectedRequest, "evil.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := s.rawREST("POST", "/v1/dns", tc.body, tc.headers)
			if code != tc.want || !strings.Contains(body, tc.words) {
				t.Errorf("POST /v1/dns → %d %s, want %d mentioning %q", code, body, tc.want, tc.words)
			}
		})
	}
	if code, _, body := s.rawREST("GET", "/v1/dns/7100", "", nil); code != http.StatusNotFound {
		t.Fatalf("a refused request created the DN: GET → %d %s", code, body)
	}
	// The same request from our own origin, with a JSON body, goes through.
	code, _, body := s.rawREST("POST", "/v1/dns", dnJSON, map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": s.baseURL, "Sec-Fetch-Site": "same-origin"})
	if code != http.StatusOK {
		t.Fatalf("same-origin POST /v1/dns → %d %s", code, body)
	}
	// localhost and IP addresses are ours.
	for _, h := range []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port} {
		if code, _, body := s.rawREST("GET", "/v1/dns/7100", "", map[string]string{"Host": h}); code != http.StatusOK {
			t.Errorf("GET with Host %s → %d %s", h, code, body)
		}
	}
	m := s.metrics()
	for reason, n := range map[string]int{"origin": 4, "content_type": 3, "host": 1} {
		want := fmt.Sprintf(`sipsvc_api_http_refused_total{sipsvc_api_refusal=%q} %d`, reason, n)
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s\n%s", want, grepLines(m, "refus"))
		}
	}
}

// TestMetricsSeriesBounded: requests with 100 distinct Host headers (IP addresses, which the
// guard accepts, and names, which it refuses) add no time series to /metrics, and gateway
// requests are labelled by their route template, not "/" (issue 10, issue 12).
func TestMetricsSeriesBounded(t *testing.T) {
	s := startStack(t, stackOptions{})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.baseURL, "http://"))
	get := func(host string) {
		s.rawREST("GET", "/v1/calls", "", map[string]string{"Host": host})
	}
	// One of each first: the first refusal adds its (bounded) refusal series.
	get("127.0.0.1:" + port)
	get("first.evil.example")
	before := seriesCount(s.metrics())
	for i := range 100 {
		get(fmt.Sprintf("127.0.%d.%d:%d", i/250, i%250+1, 1000+i))
		get(fmt.Sprintf("h%d.evil.example", i))
	}
	m := s.metrics()
	if after := seriesCount(m); after != before {
		t.Errorf("series grew from %d to %d with 100 Host headers:\n%s", before, after, grepLines(m, "_count"))
	}
	if !strings.Contains(m, `http_route="/v1/calls"`) {
		t.Errorf("no http_route=\"/v1/calls\" series:\n%s", grepLines(m, "http_route"))
	}
	if strings.Contains(m, `http_route="/"`) {
		t.Errorf("a gateway request is labelled http_route=\"/\":\n%s", grepLines(m, "http_route"))
	}
}

// TestRESTMethodNotAllowed: a method the path does not take is 405 with Allow (issue 12).
func TestRESTMethodNotAllowed(t *testing.T) {
	s := startStack(t, stackOptions{})
	tests := []struct {
		method, path string
		allow        []string
	}{
		{"PUT", "/v1/dns", []string{"GET", "POST"}},
		{"DELETE", "/v1/calls", []string{"GET", "POST"}},
		{"POST", "/v1/dns/1000", []string{"GET", "PUT", "PATCH", "DELETE"}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			h := map[string]string{}
			body := ""
			if tc.method != "DELETE" {
				h["Content-Type"], body = "application/json", "{}"
			}
			code, hdr, b := s.rawREST(tc.method, tc.path, body, h)
			if code != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s → %d %s, want 405", tc.method, tc.path, code, b)
			}
			allow := hdr.Get("Allow")
			for _, m := range tc.allow {
				if !strings.Contains(allow, m) {
					t.Errorf("Allow %q lacks %s", allow, m)
				}
			}
		})
	}
}

// metrics returns the body of GET /metrics.
func (s *stack) metrics() string {
	s.t.Helper()
	code, _, body := s.rawREST("GET", "/metrics", "", nil)
	if code != http.StatusOK {
		s.t.Fatalf("GET /metrics → %d %s", code, body)
	}
	return body
}

var seriesLine = regexp.MustCompile(`(?m)^[a-z_]+\{`)

// seriesCount counts the labelled sample lines of a Prometheus text exposition.
func seriesCount(m string) int { return len(seriesLine.FindAllString(m, -1)) }

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRESTSaysWhatIsWrong: the REST answers of issue 12 — one context per message (no
// stutter), enum errors that list the JSON values the API takes, a bad event filter refused
// with 400 before the stream opens, and empty lists as [].
func TestRESTSaysWhatIsWrong(t *testing.T) {
	s := startStack(t, stackOptions{})
	if code, body := s.rest("POST", "/v1/dns", map[string]any{"number": "7000", "type": "DN_TYPE_EXTENSION", "contact": "*"}); code != http.StatusOK {
		t.Fatalf("create DN 7000 → %d %v", code, body)
	}
	tests := []struct {
		name         string
		method, path string
		body         any
		want         int
		message      string // the whole message
		contains     []string
	}{
		{name: "duplicate DN", method: "POST", path: "/v1/dns", body: map[string]any{"number": "7000", "type": "DN_TYPE_EXTENSION", "contact": "*"},
			want: http.StatusConflict, message: `DN "7000" already exists`},
		{name: "unknown DN", method: "GET", path: "/v1/dns/7001", want: http.StatusNotFound, message: `DN "7001" not found`},
		{name: "release unknown call", method: "POST", path: "/v1/calls/nosuch:release", body: map[string]any{},
			want: http.StatusNotFound, message: `call "nosuch" not found`},
		{name: "get unknown call", method: "GET", path: "/v1/calls/nosuch", want: http.StatusNotFound, message: `call "nosuch" not found`},
		{name: "type as the domain spells it", method: "POST", path: "/v1/dns", body: map[string]any{"number": "7002", "type": "extension", "contact": "*"},
			want: http.StatusBadRequest, contains: []string{`"extension"`, "DN_TYPE_EXTENSION", "DN_TYPE_TRUNK"}},
		{name: "missing type", method: "POST", path: "/v1/dns", body: map[string]any{"number": "7002", "contact": "*"},
			want: http.StatusBadRequest, contains: []string{"dn.type", "DN_TYPE_EXTENSION", "DN_TYPE_ACD_POSITION"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.rest(tc.method, tc.path, tc.body)
			msg := str(body, "message")
			if code != tc.want {
				t.Fatalf("%s %s → %d %v, want %d", tc.method, tc.path, code, body, tc.want)
			}
			if tc.message != "" && msg != tc.message {
				t.Errorf("message %q, want %q", msg, tc.message)
			}
			for _, w := range tc.contains {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not mention %s", msg, w)
				}
			}
			if strings.Count(msg, "7000") > 1 || strings.Count(msg, "nosuch") > 1 {
				t.Errorf("message %q names its subject twice", msg)
			}
		})
	}

	t.Run("bad event filter is 400 before streaming", func(t *testing.T) {
		code, hdr, body := s.rawREST("GET", "/v1/events?dn=bad%20dn", "", nil)
		if code != http.StatusBadRequest || !strings.Contains(body, "dn") {
			t.Fatalf("GET /v1/events?dn=bad%%20dn → %d %s, want 400 naming dn", code, body)
		}
		if hdr.Get("Content-Type") == "" {
			t.Errorf("no Content-Type on the error")
		}
	})

	t.Run("empty lists are []", func(t *testing.T) {
		for _, p := range []struct{ path, field string }{{"/v1/calls", "calls"}, {"/v1/dns/7000/registrations", "registrations"}} {
			_, _, body := s.rawREST("GET", p.path, "", nil)
			if !strings.Contains(body, `"`+p.field+`":[]`) && !strings.Contains(body, `"`+p.field+`": []`) {
				t.Errorf("GET %s = %s, want %q: []", p.path, body, p.field)
			}
		}
	})
}

// TestMakeCallFromUnregisteredDN: a self-registered DN (contact "*") with no registration
// cannot place a call: MakeCall answers FAILED_PRECONDITION (REST 412) up front instead of
// 200 and a call that fails a moment later (issue 12). No call is created.
func TestMakeCallFromUnregisteredDN(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.addPhone("2000", "Bob", "UDP")
	s.addDN(dn.DN{Number: "1000", Type: dn.TypeExtension, Contact: "*", DisplayName: "Alice"})
	_, err := s.calls.MakeCall(s.ctx(), &sipsvcv1.MakeCallRequest{From: "1000", To: "2000"})
	wantCode(t, err, codes.FailedPrecondition, "1000", "not registered")
	code, body := s.rest("POST", "/v1/calls", map[string]any{"from": "1000", "to": "2000"})
	if code != http.StatusPreconditionFailed || !strings.Contains(str(body, "message"), "not registered") {
		t.Errorf("POST /v1/calls from an unregistered DN → %d %v, want 412", code, body)
	}
	res, err := s.calls.ListCalls(s.ctx(), &sipsvcv1.ListCallsRequest{})
	if err != nil || len(res.GetCalls()) != 0 {
		t.Errorf("ListCalls = %v, %v; want no call", res.GetCalls(), err)
	}
}
