package service

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

func TestDirectoryGRPC(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewDirectoryServiceClient(env.conn)

	created, err := c.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{
		Number: "1000", Type: sipsvcv1.DNType_DN_TYPE_EXTENSION, Contact: "*",
		DisplayName: "Alice", Password: "secret", Policy: sipsvcv1.SipsPolicy_SIPS_POLICY_STRICT,
	}})
	if err != nil {
		t.Fatalf("CreateDN: %v", err)
	}
	if got := created.GetDn(); got.GetPassword() != "" || !got.GetHasPassword() || got.GetDisplayName() != "Alice" {
		t.Errorf("created DN = %v; want no password, has_password, display name", got)
	}
	stored, _ := env.store.Lookup(ctx, "1000")
	wantMD5, wantSHA := dn.HashPassword("1000", testRealm, "secret")
	if stored.HA1MD5 != wantMD5 || stored.HA1SHA256 != wantSHA || stored.Policy != dn.PolicyStrict {
		t.Errorf("stored DN = %+v; want HA1 for realm %s and strict policy", stored, testRealm)
	}

	_, err = c.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "1000", Type: sipsvcv1.DNType_DN_TYPE_EXTENSION, Contact: "*"}})
	wantCode(t, err, codes.AlreadyExists, "1000")

	got, err := c.GetDN(ctx, &sipsvcv1.GetDNRequest{Number: "1000"})
	if err != nil || got.GetDn().GetNumber() != "1000" || !got.GetDn().GetHasPassword() {
		t.Fatalf("GetDN = %v, %v", got, err)
	}
	_, err = c.GetDN(ctx, &sipsvcv1.GetDNRequest{Number: "9999"})
	wantCode(t, err, codes.NotFound, "9999")

	// Masked update: only display_name changes; the password stays.
	up, err := c.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{
		Dn:         &sipsvcv1.DN{Number: "1000", DisplayName: "Alice B"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	})
	if err != nil || up.GetDn().GetDisplayName() != "Alice B" || !up.GetDn().GetHasPassword() || up.GetDn().GetPolicy() != sipsvcv1.SipsPolicy_SIPS_POLICY_STRICT {
		t.Fatalf("UpdateDN(mask) = %v, %v", up, err)
	}
	// Masked password with empty value removes it.
	up, err = c.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{
		Dn:         &sipsvcv1.DN{Number: "1000"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"password"}},
	})
	if err != nil || up.GetDn().GetHasPassword() {
		t.Fatalf("UpdateDN(clear password) = %v, %v", up, err)
	}
	// Full replacement: unset fields go back to defaults.
	up, err = c.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{Dn: &sipsvcv1.DN{
		Number: "1000", Type: sipsvcv1.DNType_DN_TYPE_TRUNK, Contact: "sips:gw@example.com", Password: "new",
	}})
	if err != nil || up.GetDn().GetType() != sipsvcv1.DNType_DN_TYPE_TRUNK || up.GetDn().GetDisplayName() != "" || !up.GetDn().GetHasPassword() {
		t.Fatalf("UpdateDN(replace) = %v, %v", up, err)
	}

	for _, tc := range []struct {
		name  string
		req   *sipsvcv1.UpdateDNRequest
		code  codes.Code
		field string
	}{
		{"immutable number", &sipsvcv1.UpdateDNRequest{Dn: &sipsvcv1.DN{Number: "1000"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"number"}}}, codes.InvalidArgument, "update_mask"},
		{"unknown path", &sipsvcv1.UpdateDNRequest{Dn: &sipsvcv1.DN{Number: "1000"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"colour"}}}, codes.InvalidArgument, "colour"},
		{"bad contact", &sipsvcv1.UpdateDNRequest{Dn: &sipsvcv1.DN{Number: "1000", Contact: "http://x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"contact"}}}, codes.InvalidArgument, "dn.contact"},
		{"missing dn", &sipsvcv1.UpdateDNRequest{}, codes.InvalidArgument, "dn"},
		{"unknown DN", &sipsvcv1.UpdateDNRequest{Dn: &sipsvcv1.DN{Number: "4242"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}}, codes.NotFound, "4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.UpdateDN(ctx, tc.req)
			wantCode(t, err, tc.code, tc.field)
		})
	}

	for i := range 4 {
		if _, err := c.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{
			Number: fmt.Sprintf("20%02d", i), Type: sipsvcv1.DNType_DN_TYPE_EXTENSION, Contact: "sip:x@127.0.0.1:5070",
		}}); err != nil {
			t.Fatal(err)
		}
	}
	var numbers []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, err := c.ListDNs(ctx, &sipsvcv1.ListDNsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDns() {
			numbers = append(numbers, d.GetNumber())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if got := strings.Join(numbers, ","); got != "1000,2000,2001,2002,2003" {
		t.Errorf("ListDNs pages = %s", got)
	}
	_, err = c.ListDNs(ctx, &sipsvcv1.ListDNsRequest{PageToken: "!!"})
	wantCode(t, err, codes.InvalidArgument, "page_token")

	// Registrations, through the store-backed default.
	exp := time.Now().Add(time.Hour)
	for _, contact := range []string{"sips:1000@10.0.0.1:5061", "sip:1000@10.0.0.2:5060"} {
		_ = env.store.PutBinding(ctx, dn.Binding{Number: "1000", Contact: contact, Transport: "TLS", Expires: exp})
	}
	regs, err := c.ListRegistrations(ctx, &sipsvcv1.ListRegistrationsRequest{Number: "1000"})
	if err != nil || len(regs.GetRegistrations()) != 2 || regs.GetRegistrations()[0].GetDn() != "1000" {
		t.Fatalf("ListRegistrations = %v, %v", regs, err)
	}
	_, err = c.ListRegistrations(ctx, &sipsvcv1.ListRegistrationsRequest{Number: "7777"})
	wantCode(t, err, codes.NotFound, "7777")
	// Scheme-insensitive removal (R29).
	if _, err := c.RemoveRegistration(ctx, &sipsvcv1.RemoveRegistrationRequest{Number: "1000", Contact: "sip:1000@10.0.0.1:5061"}); err != nil {
		t.Fatalf("RemoveRegistration: %v", err)
	}
	_, err = c.RemoveRegistration(ctx, &sipsvcv1.RemoveRegistrationRequest{Number: "1000", Contact: "sip:1000@10.0.0.1:5061"})
	wantCode(t, err, codes.NotFound, "sip:1000@10.0.0.1:5061")
	_, err = c.RemoveRegistration(ctx, &sipsvcv1.RemoveRegistrationRequest{Number: "1000", Contact: "not a uri"})
	wantCode(t, err, codes.InvalidArgument, "contact")

	if _, err := c.DeleteDN(ctx, &sipsvcv1.DeleteDNRequest{Number: "1000"}); err != nil {
		t.Fatalf("DeleteDN: %v", err)
	}
	_, err = c.DeleteDN(ctx, &sipsvcv1.DeleteDNRequest{Number: "1000"})
	wantCode(t, err, codes.NotFound, "1000")
}

func TestDirectoryValidation(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)
	c := sipsvcv1.NewDirectoryServiceClient(env.conn)
	ext := sipsvcv1.DNType_DN_TYPE_EXTENSION
	for _, tc := range []struct {
		name  string
		dn    *sipsvcv1.DN
		field string
	}{
		{"no dn", nil, "dn"},
		{"bad number", &sipsvcv1.DN{Number: "12 34", Type: ext, Contact: "*"}, "dn.number"},
		{"no type", &sipsvcv1.DN{Number: "1234", Contact: "*"}, "dn.type"},
		{"unknown type", &sipsvcv1.DN{Number: "1234", Type: 99, Contact: "*"}, "dn.type"},
		{"no contact", &sipsvcv1.DN{Number: "1234", Type: ext}, "dn.contact"},
		{"http contact", &sipsvcv1.DN{Number: "1234", Type: ext, Contact: "http://example.com"}, "dn.contact"},
		{"sips over udp", &sipsvcv1.DN{Number: "1234", Type: ext, Contact: "sips:a@example.com;transport=udp"}, "dn.contact"},
		{"bad trusted source", &sipsvcv1.DN{Number: "1234", Type: ext, Contact: "*", TrustedSources: []string{"10.0.0.1", "nope"}}, "dn.trusted_sources[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: tc.dn})
			wantCode(t, err, codes.InvalidArgument, tc.field)
			st, _ := status.FromError(err)
			if !strings.HasPrefix(st.Message(), tc.field+":") {
				t.Errorf("message %q does not start with the field %q", st.Message(), tc.field)
			}
		})
	}
	for _, n := range []string{"", "a b", strings.Repeat("1", 65)} {
		_, err := c.GetDN(ctx, &sipsvcv1.GetDNRequest{Number: n})
		wantCode(t, err, codes.InvalidArgument, "number")
	}
	if dns, err := env.store.ListDNs(ctx); err != nil || len(dns) != 0 {
		t.Errorf("a failed request changed the store: %v (%v)", dns, err)
	}
}

func TestDirectoryREST(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)

	code, body := env.do(t, "POST", "/v1/dns", map[string]any{
		"number": "1000", "type": "DN_TYPE_EXTENSION", "contact": "*", "display_name": "Alice",
		"password": "pw", "trusted_sources": []string{"10.0.0.0/8"},
	}, "")
	if code != http.StatusOK {
		t.Fatalf("POST /v1/dns = %d %v", code, body)
	}
	d := body["dn"].(map[string]any)
	if d["number"] != "1000" || d["display_name"] != "Alice" || d["has_password"] != true {
		t.Fatalf("POST /v1/dns = %v", d)
	}
	// Defaults are emitted (EmitDefaultValues), so "password" is there, always empty.
	if pw, ok := d["password"]; ok && pw != "" {
		t.Errorf("response carries a password: %v", d)
	}
	for k := range d {
		if strings.Contains(strings.ToLower(k), "ha1") {
			t.Errorf("response carries a hash field %q", k)
		}
	}

	code, body = env.do(t, "POST", "/v1/dns", map[string]any{"number": "1000", "type": "DN_TYPE_EXTENSION", "contact": "*"}, "")
	wantHTTP(t, code, body, http.StatusConflict, "1000")
	code, body = env.do(t, "POST", "/v1/dns", map[string]any{"number": "1001", "type": "DN_TYPE_EXTENSION", "contact": "ftp://x"}, "")
	wantHTTP(t, code, body, http.StatusBadRequest, "dn.contact")
	code, body = env.do(t, "POST", "/v1/dns", map[string]any{"number": "1001", "type": "DN_TYPE_NOPE", "contact": "*"}, "")
	wantHTTP(t, code, body, http.StatusBadRequest, "type")

	code, body = env.do(t, "GET", "/v1/dns/1000", nil, "")
	if code != http.StatusOK || body["dn"].(map[string]any)["number"] != "1000" {
		t.Fatalf("GET /v1/dns/1000 = %d %v", code, body)
	}
	code, body = env.do(t, "GET", "/v1/dns/9999", nil, "")
	wantHTTP(t, code, body, http.StatusNotFound, "9999")

	// PATCH fills update_mask from the body: only display_name changes.
	code, body = env.do(t, "PATCH", "/v1/dns/1000", map[string]any{"display_name": "Alice B"}, "")
	if code != http.StatusOK {
		t.Fatalf("PATCH = %d %v", code, body)
	}
	d = body["dn"].(map[string]any)
	if d["display_name"] != "Alice B" || d["has_password"] != true || d["contact"] != "*" {
		t.Errorf("PATCH result %v", d)
	}
	// PUT replaces the whole DN.
	code, body = env.do(t, "PUT", "/v1/dns/1000", map[string]any{"type": "DN_TYPE_TRUNK", "contact": "sip:gw@example.com"}, "")
	if code != http.StatusOK {
		t.Fatalf("PUT = %d %v", code, body)
	}
	d = body["dn"].(map[string]any)
	if d["type"] != "DN_TYPE_TRUNK" || d["display_name"] != "" || d["has_password"] != true {
		t.Errorf("PUT result %v", d)
	}
	code, body = env.do(t, "PATCH", "/v1/dns/1000", map[string]any{"contact": "nope"}, "")
	wantHTTP(t, code, body, http.StatusBadRequest, "dn.contact")

	code, body = env.do(t, "GET", "/v1/dns?page_size=10", nil, "")
	if code != http.StatusOK || len(body["dns"].([]any)) != 1 {
		t.Fatalf("GET /v1/dns = %d %v", code, body)
	}
	code, body = env.do(t, "GET", "/v1/dns?page_size=-1", nil, "")
	wantHTTP(t, code, body, http.StatusBadRequest, "page_size")

	_ = env.store.PutBinding(ctx, dn.Binding{Number: "1000", Contact: "sips:1000@10.0.0.1:5061", Secure: true, Transport: "TLS", Expires: time.Now().Add(time.Hour)})
	code, body = env.do(t, "GET", "/v1/dns/1000/registrations", nil, "")
	if code != http.StatusOK || len(body["registrations"].([]any)) != 1 {
		t.Fatalf("GET registrations = %d %v", code, body)
	}
	reg := body["registrations"].([]any)[0].(map[string]any)
	if reg["contact"] != "sips:1000@10.0.0.1:5061" || reg["secure"] != true || reg["expire_time"] == nil {
		t.Errorf("registration %v", reg)
	}
	q := "/v1/dns/1000/registrations?contact=" + url.QueryEscape("sips:1000@10.0.0.1:5061")
	if code, body = env.do(t, "DELETE", q, nil, ""); code != http.StatusOK {
		t.Fatalf("DELETE registration = %d %v", code, body)
	}
	code, body = env.do(t, "DELETE", q, nil, "")
	wantHTTP(t, code, body, http.StatusNotFound, "sips:1000@10.0.0.1:5061")
	code, body = env.do(t, "DELETE", "/v1/dns/1000/registrations", nil, "")
	wantHTTP(t, code, body, http.StatusBadRequest, "contact")

	if code, body = env.do(t, "DELETE", "/v1/dns/1000", nil, ""); code != http.StatusOK {
		t.Fatalf("DELETE /v1/dns/1000 = %d %v", code, body)
	}
	code, body = env.do(t, "DELETE", "/v1/dns/1000", nil, "")
	wantHTTP(t, code, body, http.StatusNotFound, "1000")
}

// wantCode checks a gRPC error's code and that its message mentions want.
func wantCode(t *testing.T, err error, code codes.Code, want string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%v); want %v", st.Code(), err, code)
	}
	if !strings.Contains(st.Message(), want) {
		t.Errorf("message %q does not name %q", st.Message(), want)
	}
}

// wantHTTP checks a REST error's HTTP status and that the google.rpc.Status message
// mentions want.
func wantHTTP(t *testing.T, code int, body map[string]any, wantStatus int, want string) {
	t.Helper()
	if code != wantStatus {
		t.Fatalf("HTTP status = %d (%v); want %d", code, body, wantStatus)
	}
	msg, _ := body["message"].(string)
	if !strings.Contains(msg, want) {
		t.Errorf("message %q does not name %q", msg, want)
	}
}
