package service

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/signaling"
)

// TestAPIRefusesWireInjection (issue 10, "input that reaches the wire"): a value the API
// would have sipsvc write into a SIP message is refused with InvalidArgument naming the
// field when it holds CR, LF or other characters that would change the message: a DN
// display_name (today a CRLF there forges a P-Asserted-Identity in the INVITE), a MakeCall
// `to` or a Transfer target (a CRLF breaks the Request-Line). Nothing reaches call control.
func TestAPIRefusesWireInjection(t *testing.T) {
	reached := 0
	fake := &fakeCalls{
		MakeCallFunc: func(context.Context, signaling.MakeCallRequest) (signaling.CallInfo, error) {
			reached++
			return signaling.CallInfo{ID: "c1"}, nil
		},
		TransferCallFunc: func(context.Context, signaling.TransferRequest) error { reached++; return nil },
	}
	env := startAPI(t, fake, nil)
	ctx := ctxT(t)
	calls := sipsvcv1.NewCallServiceClient(env.conn)
	dir := sipsvcv1.NewDirectoryServiceClient(env.conn)
	ext := sipsvcv1.DNType_DN_TYPE_EXTENSION

	for _, to := range []string{
		"sip:6000@10.0.0.6;a\r\nP-Asserted-Identity: <sip:911@x>",
		"sip:6000@10.0.0.6;a\nX-Evil=1",
		"sip:60 00@10.0.0.6",
		"sip:6000@h>x",
		"sip:6000@10.0.0.6;x\x00",
	} {
		_, err := calls.MakeCall(ctx, &sipsvcv1.MakeCallRequest{From: "1000", To: to})
		wantCode(t, err, codes.InvalidArgument, "to:")
		_, err = calls.TransferCall(ctx, &sipsvcv1.TransferCallRequest{CallId: "c1", LegId: "A", Destination: &sipsvcv1.TransferCallRequest_Target{Target: to}})
		wantCode(t, err, codes.InvalidArgument, "target:")
	}
	if reached != 0 {
		t.Errorf("call control was reached %d times with an unsafe value", reached)
	}

	for _, name := range []string{"Bob\r\nP-Asserted-Identity: <sip:911@x>", "a\nb", `a" <sip:x@y>`} {
		_, err := dir.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "7000", Type: ext, Contact: "*", DisplayName: name}})
		wantCode(t, err, codes.InvalidArgument, "dn.display_name")
	}
	_, err := dir.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "7000", Type: ext, Contact: "sip:7000@10.0.0.7;a\r\nX-Evil=1"}})
	wantCode(t, err, codes.InvalidArgument, "dn.contact")
	if _, err := dir.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "7000", Type: ext, Contact: "*", DisplayName: "Bob"}}); err != nil {
		t.Fatalf("CreateDN with a clean display name: %v", err)
	}
	_, err = dir.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{
		Dn:         &sipsvcv1.DN{Number: "7000", DisplayName: "Bob\r\nP-Asserted-Identity: <sip:911@x>"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	})
	wantCode(t, err, codes.InvalidArgument, "dn.display_name")
	if d, err := env.store.Lookup(ctx, "7000"); err != nil || d.DisplayName != "Bob" {
		t.Errorf("a refused update changed the DN: %+v (%v)", d, err)
	}
}

// TestDirectoryAllowAnonymous: allow_anonymous is set and read over the API, survives an
// update that does not name it, and is refused on a trunk with the field named.
func TestDirectoryAllowAnonymous(t *testing.T) {
	env := startAPI(t, nil, nil)
	ctx := ctxT(t)
	dir := sipsvcv1.NewDirectoryServiceClient(env.conn)
	ext := sipsvcv1.DNType_DN_TYPE_EXTENSION
	got, err := dir.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "6000", Type: ext, Contact: "sip:6000@10.0.0.6", AllowAnonymous: true}})
	if err != nil || !got.GetDn().GetAllowAnonymous() {
		t.Fatalf("CreateDN = %v, %v; want allow_anonymous set", got, err)
	}
	if _, err := dir.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{
		Dn: &sipsvcv1.DN{Number: "6000", DisplayName: "Lobby"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	}); err != nil {
		t.Fatal(err)
	}
	if d, err := env.store.Lookup(ctx, "6000"); err != nil || !d.AllowAnonymous || d.DisplayName != "Lobby" {
		t.Errorf("after a display_name update: %+v (%v)", d, err)
	}
	if _, err := dir.UpdateDN(ctx, &sipsvcv1.UpdateDNRequest{
		Dn: &sipsvcv1.DN{Number: "6000"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"allow_anonymous"}},
	}); err != nil {
		t.Fatal(err)
	}
	if d, _ := env.store.Lookup(ctx, "6000"); d.AllowAnonymous {
		t.Errorf("allow_anonymous not cleared by an update that names it")
	}
	_, err = dir.CreateDN(ctx, &sipsvcv1.CreateDNRequest{Dn: &sipsvcv1.DN{Number: "9000", Type: sipsvcv1.DNType_DN_TYPE_TRUNK, Contact: "sip:gw@192.0.2.1", AllowAnonymous: true}})
	wantCode(t, err, codes.InvalidArgument, "dn.allow_anonymous")
}

// TestMakeCallOverCap: a call cap that is full reaches the API client as
// RESOURCE_EXHAUSTED (REST 429) with the cap named.
func TestMakeCallOverCap(t *testing.T) {
	fake := &fakeCalls{MakeCallFunc: func(context.Context, signaling.MakeCallRequest) (signaling.CallInfo, error) {
		return signaling.CallInfo{}, fmt.Errorf("%w: %s", signaling.ErrOverCap, signaling.RefusedCapDN)
	}}
	env := startAPI(t, fake, nil)
	_, err := sipsvcv1.NewCallServiceClient(env.conn).MakeCall(ctxT(t), &sipsvcv1.MakeCallRequest{From: "1000", To: "2000"})
	wantCode(t, err, codes.ResourceExhausted, signaling.RefusedCapDN)
	code, body := env.do(t, "POST", "/v1/calls", map[string]any{"from": "1000", "to": "2000"}, "")
	wantHTTP(t, code, body, 429, signaling.RefusedCapDN)
}
