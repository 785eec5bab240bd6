package signaling

import (
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
	}{
		{"replace a", a, n, n, b},
		{"replace b", b, n, a, n},
		{"empty a", a, nil, nil, b},
		{"empty b", b, nil, a, nil},
		// Not a bridged leg: the b slot is taken, as the transfers always did.
		{"other leg", &leg{id: "X"}, n, a, n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &call{a: a, b: b}
			c.replaceLegLocked(tt.old, tt.nl)
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
