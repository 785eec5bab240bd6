package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
)

func TestRoutesYAML(t *testing.T) {
	f, err := os.Open("routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := ParseTable(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dialed, want string }{
		{"1001", "targets 1001,6000"},
		{"5000", "targets 5000"},
		{"90123", "targets sips:90123@trunk.example.com"},
		{"0900123", "reject 403"},
		{"0123", "reject 404"},
	} {
		resp := table.Decide(tc.dialed)
		var got string
		if rj := resp.GetReject(); rj != nil {
			got = "reject " + strconv.Itoa(int(rj.GetSipStatus()))
		} else {
			var ts []string
			for _, tg := range resp.GetTargets().GetTargets() {
				ts = append(ts, tg.GetDn()+tg.GetUri())
			}
			got = "targets " + strings.Join(ts, ",")
		}
		if got != tc.want {
			t.Errorf("%s → %s; want %s", tc.dialed, got, tc.want)
		}
	}
}

func TestBadTables(t *testing.T) {
	for _, y := range []string{
		"routes: [{prefix: '1'}]",
		"routes: [{prefix: '1', targets: [{dn: '1', uri: 'sip:x@y'}]}]",
		"routes: [{prefix: '1', targets: [{uri: 'http://x'}]}]",
		"routes: [{prefix: '1', reject: {status: 302}}]",
		"routes: [{prefix: '1', targets: [{dn: '1', policy: lax}]}]",
		"colour: blue",
	} {
		if _, err := ParseTable(strings.NewReader(y)); err == nil {
			t.Errorf("table %q accepted", y)
		}
	}
	if _, err := routeFlag("nope"); err == nil {
		t.Error("-route nope accepted")
	}
	if r, err := rejectFlag("666=403:Forbidden"); err != nil || r.Reject.Status != 403 || r.Reject.Reason != "Forbidden" {
		t.Errorf("-reject = %+v, %v", r, err)
	}
}

// TestWithRoutingClient runs the example against sipsvc's own routing client.
func TestWithRoutingClient(t *testing.T) {
	r1, _ := routeFlag("1=${dialed},sip:vm@10.0.0.9")
	table := Table{Routes: []Route{r1}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l, table, log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	c, err := service.NewRoutingClient(ctx, service.RoutingClientConfig{Address: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.Route(ctx, signaling.RouteRequest{CallID: "c1", Dialed: "1001"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Targets) != 2 || d.Targets[0] != (signaling.Target{DN: "1001"}) || d.Targets[1].URI != "sip:vm@10.0.0.9" {
		t.Errorf("decision %+v", d)
	}
	d, err = c.Route(ctx, signaling.RouteRequest{CallID: "c2", Dialed: "2001"})
	if err != nil || d.Reject == nil || d.Reject.Status != 404 {
		t.Errorf("unrouted: %+v, %v", d, err)
	}
	c.Observe(ctx, signaling.Event{Kind: signaling.EventLegSchemeDecided, CallID: "c1", Leg: "B1", DN: "1001",
		Decision: &signaling.LegDecision{Leg: "B1", Scheme: "sips", Transport: "TLS", Secure: true, Reason: "registered with sips", Rule: "R8"}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := out.String()
		if strings.Contains(s, "leg scheme decided") && strings.Contains(s, "rule=R8") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision not printed:\n%s", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
