package signaling

import (
	"context"
	"slices"
	"testing"
)

// TestReplaceLegLocked checks the one place where a transfer swaps a bridged leg.
func TestReplaceLegLocked(t *testing.T) {
	a, b, n := &leg{id: "A"}, &leg{id: "B1"}, &leg{id: "B2"}
	tests := []struct {
		name         string
		old, nl      *leg
		wantA, wantB *leg
		want         bool
	}{
		{"replace a", a, n, n, b, true},
		{"replace b", b, n, a, n, true},
		{"empty a", a, nil, nil, b, true},
		{"empty b", b, nil, a, nil, true},
		// No longer a bridged leg (the call changed during a transfer): nothing is replaced,
		// least of all the party's own leg.
		{"other leg", &leg{id: "X"}, n, a, b, false},
		{"nil old", nil, n, a, b, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &call{a: a, b: b}
			if got := c.replaceLegLocked(tt.old, tt.nl); got != tt.want {
				t.Errorf("replaceLegLocked = %v, want %v", got, tt.want)
			}
			if c.a != tt.wantA || c.b != tt.wantB {
				t.Errorf("a, b = %v, %v; want %v, %v", c.a, c.b, tt.wantA, tt.wantB)
			}
		})
	}
}

// TestRemoveForkLocked checks that a fork leaves the list and the others keep their order.
func TestRemoveForkLocked(t *testing.T) {
	f1, f2, f3 := &leg{id: "B1"}, &leg{id: "B2"}, &leg{id: "B3"}
	tests := []struct {
		name  string
		forks []*leg
		drop  *leg
		want  []*leg
	}{
		{"first", []*leg{f1, f2, f3}, f1, []*leg{f2, f3}},
		{"middle", []*leg{f1, f2, f3}, f2, []*leg{f1, f3}},
		{"last", []*leg{f1, f2, f3}, f3, []*leg{f1, f2}},
		{"absent", []*leg{f1, f2}, f3, []*leg{f1, f2}},
		{"only", []*leg{f1}, f1, []*leg{}},
		{"empty", nil, f1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &call{forks: tt.forks}
			c.removeForkLocked(tt.drop)
			if !slices.Equal(c.forks, tt.want) {
				t.Errorf("forks = %v, want %v", c.forks, tt.want)
			}
		})
	}
}

// TestFinishUnanswered checks both ways an unanswered call ends: finish after leg A's final
// response, and endUnanswered for a MakeCall whose origin never answered (no leg A). Forks
// are released first, then leg A, then the call ends; legs and call are unregistered.
func TestFinishUnanswered(t *testing.T) {
	tests := []struct {
		name       string
		withA      bool
		end        func(c *call, a *leg)
		wantCause  string
		wantStatus int
	}{
		{"finish", true, func(c *call, a *leg) { c.finish(a, "no target answered", 480) }, "no target answered", 480},
		{"endUnanswered no failure", false, func(c *call, _ *leg) { c.endUnanswered(nil) }, "no answer", 480},
		{"endUnanswered failure", false, func(c *call, _ *leg) { c.endUnanswered(&failure{status: 486, cause: "leg B1 answered 486"}) }, "leg B1 answered 486", 486},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s, err := New(Config{Directory: newMemDir(), Observers: []Observer{rec}, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			c := &call{id: "c1", s: s, ctx: context.Background(), state: StateRinging, cancelled: make(chan struct{}), done: make(chan struct{})}
			var a *leg
			want := []string{"B1", "B2"}
			if tt.withA {
				a = &leg{id: "A", c: c, dir: inbound, callID: "a@x", state: StateRinging}
				c.a = a
				s.registerLeg(a)
				want = append(want, "A")
			}
			for _, id := range []string{"B1", "B2"} {
				f := &leg{id: id, c: c, dir: outbound, callID: id + "@x", state: StateRinging}
				c.forks = append(c.forks, f)
				s.registerLeg(f)
			}
			s.addCall(c)
			tt.end(c, a)

			var got []string
			for _, e := range rec.all() {
				switch e.Kind {
				case EventLegReleased:
					got = append(got, e.Leg)
					if e.Cause != tt.wantCause || e.Status != tt.wantStatus {
						t.Errorf("leg %s released with %q %d, want %q %d", e.Leg, e.Cause, e.Status, tt.wantCause, tt.wantStatus)
					}
				case EventCallEnded:
					got = append(got, "end")
					if e.Cause != tt.wantCause || e.Status != tt.wantStatus {
						t.Errorf("call ended with %q %d, want %q %d", e.Cause, e.Status, tt.wantCause, tt.wantStatus)
					}
				}
			}
			if want = append(want, "end"); !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			if c.state != StateReleased {
				t.Errorf("state %s, want %s", c.state, StateReleased)
			}
			select {
			case <-c.done:
			default:
				t.Error("done not closed")
			}
			if len(s.calls) != 0 || len(s.legs) != 0 {
				t.Errorf("%d calls and %d legs left registered", len(s.calls), len(s.legs))
			}
		})
	}
}
