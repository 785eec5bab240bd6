package signaling

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func mustURI(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

// TestSetDialogDestLocked checks where in-dialog requests to leg A's peer go: the top route
// when there is a route set (its scheme and transport parameter decide the transport), else
// the peer's connection over TCP/TLS and the remote target over UDP.
func TestSetDialogDestLocked(t *testing.T) {
	tests := []struct {
		name          string
		transport     string
		source        string
		routes        []string
		wantTransport string
		wantDest      string
	}{
		{"UDP remote target", "UDP", "10.0.0.2:40000", nil, "UDP", "192.0.2.1:5062"},
		{"TCP connection", "TCP", "10.0.0.2:40000", nil, "TCP", "10.0.0.2:40000"},
		{"TLS connection", "TLS", "10.0.0.2:40001", nil, "TLS", "10.0.0.2:40001"},
		{"TCP without source", "TCP", "", nil, "TCP", "192.0.2.1:5062"},
		{"UDP route", "UDP", "10.0.0.2:40000", []string{"sip:proxy.example.com;lr", "sip:p2.example.com;lr"}, "UDP", "proxy.example.com:5060"},
		{"TCP route, not the connection", "TCP", "10.0.0.2:40000", []string{"sip:proxy.example.com:5080;lr"}, "TCP", "proxy.example.com:5080"},
		{"sips route means TLS (R35)", "UDP", "10.0.0.2:40000", []string{"sips:edge.example.com;lr"}, "TLS", "edge.example.com:5061"},
		{"transport parameter (P6)", "UDP", "10.0.0.2:40000", []string{"sip:edge.example.com;transport=tcp;lr"}, "TCP", "edge.example.com:5060"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &leg{transport: tt.transport, remoteTarget: mustURI(t, "sip:alice@192.0.2.1:5062")}
			for _, r := range tt.routes {
				l.routeSet = append(l.routeSet, mustURI(t, r))
			}
			l.setDialogDestLocked(tt.source)
			if l.transport != tt.wantTransport || l.dest != tt.wantDest {
				t.Errorf("transport %s dest %s, want %s %s", l.transport, l.dest, tt.wantTransport, tt.wantDest)
			}
		})
	}
}

// TestConfirmDest checks where in-dialog requests go after an outbound leg's 2xx: the top of
// the reversed Record-Route set, else the Contact over UDP, else (TCP/TLS) the INVITE's
// destination.
func TestConfirmDest(t *testing.T) {
	tests := []struct {
		name          string
		transport     string
		recordRoutes  []string // as the 2xx lists them: the route set is the reverse
		wantTransport string
		wantDest      string
	}{
		{"UDP contact", "UDP", nil, "UDP", "192.0.2.7:5064"},
		{"TCP keeps the connection", "TCP", nil, "TCP", "10.0.0.9:5070"},
		{"TLS keeps the connection", "TLS", nil, "TLS", "10.0.0.9:5070"},
		{"UDP record-route", "UDP", []string{"sip:far.example.com;lr", "sip:near.example.com;lr"}, "UDP", "near.example.com:5060"},
		{"TCP record-route", "TCP", []string{"sip:near.example.com:5090;lr"}, "TCP", "near.example.com:5090"},
		{"sips record-route means TLS", "UDP", []string{"sips:near.example.com;lr"}, "TLS", "near.example.com:5061"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &call{}
			l := &leg{c: c, transport: tt.transport, dest: "10.0.0.9:5070", remoteTarget: mustURI(t, "sip:bob@10.0.0.9:5070")}
			res := sip.NewResponse(200, "OK")
			to := &sip.ToHeader{Address: mustURI(t, "sip:bob@example.com"), Params: sip.NewParams()}
			to.Params.Add("tag", "bt")
			res.AppendHeader(to)
			res.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sip:bob@192.0.2.7:5064")})
			for _, r := range tt.recordRoutes {
				res.AppendHeader(&sip.RecordRouteHeader{Address: mustURI(t, r)})
			}
			c.confirm(l, res)
			if l.transport != tt.wantTransport || l.dest != tt.wantDest {
				t.Errorf("transport %s dest %s, want %s %s", l.transport, l.dest, tt.wantTransport, tt.wantDest)
			}
			if l.remoteTag != "bt" {
				t.Errorf("remote tag %q, want bt", l.remoteTag)
			}
		})
	}
}
