package sipconv

import (
	"crypto/tls"
	"strconv"
	"testing"
)

func TestHelpers(t *testing.T) {
	if got := TransactionSpanName("BYE"); got != "sip.transaction BYE" {
		t.Errorf("TransactionSpanName = %q", got)
	}
	for in, want := range map[string]string{"UDP": "udp", "tls": "tcp", "TCP": "tcp", "WSS": "tcp", "SCTP": ""} {
		if got := NetworkTransport(in); got != want {
			t.Errorf("NetworkTransport(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3", 0: ""} {
		if got := TLSVersion(in); got != want {
			t.Errorf("TLSVersion(%x) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusIsError(t *testing.T) {
	for _, tc := range []struct {
		name              string
		status            int
		client, cancelled bool
		want              bool
	}{
		{"client 200", 200, true, false, false},
		{"client 486", 486, true, false, true},
		{"client 487 after our cancel", 487, true, true, false},
		{"client 487 not ours", 487, true, false, true},
		{"server 486", 486, false, false, false},
		{"server 503", 503, false, false, true},
		{"server 603", 603, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := StatusIsError(tc.status, tc.client, tc.cancelled); got != tc.want {
				t.Fatalf("StatusIsError = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRewriteAttrs(t *testing.T) {
	kv := RewriteAttrs("B1", "Contact", "a", "b", "R8")
	want := map[string]string{"sip.leg": "B1", "sip.header": "Contact", "sip.header.before": "a", "sip.header.after": "b", "sip.rule": "R8"}
	if len(kv) != len(want) {
		t.Fatalf("%d attrs", len(kv))
	}
	for _, a := range kv {
		if want[string(a.Key)] != a.Value.AsString() {
			t.Errorf("%s = %q", a.Key, a.Value.AsString())
		}
	}
}

// TestOutcomeForStatus pins the status → outcome table: a 480 is unavailable (the callee
// said so), never no_answer; only the path that ends a call knows about ring timeouts.
func TestOutcomeForStatus(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{0, OutcomeAnswered}, {200, OutcomeAnswered}, {202, OutcomeAnswered},
		{486, OutcomeBusy}, {600, OutcomeBusy},
		{408, OutcomeNoAnswer},
		{480, OutcomeUnavailable}, {502, OutcomeUnavailable}, {503, OutcomeUnavailable}, {504, OutcomeUnavailable},
		{487, OutcomeCancelled},
		{500, OutcomeFailed}, {501, OutcomeFailed}, {580, OutcomeFailed},
		{302, OutcomeRejected}, {403, OutcomeRejected}, {404, OutcomeRejected}, {416, OutcomeRejected},
		{488, OutcomeRejected}, {603, OutcomeRejected}, {606, OutcomeRejected},
		{100, ""}, {180, ""}, {42, ""}, {700, ""},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			if got := OutcomeForStatus(tc.status); got != tc.want {
				t.Errorf("OutcomeForStatus(%d) = %q, want %q", tc.status, got, tc.want)
			}
		})
	}
}
