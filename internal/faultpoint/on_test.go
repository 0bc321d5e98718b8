//go:build podbox_faults

package faultpoint

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		step string
		nth  int
		ok   bool
	}{
		{"", "", 0, false},
		{"create.record", "create.record", 1, true},
		{"run.start:3", "run.start", 3, true},
		{"run.start:0", "", 0, false},
		{"run.start:x", "", 0, false},
	} {
		step, nth, ok := parse(tt.in)
		if step != tt.step || nth != tt.nth || ok != tt.ok {
			t.Errorf("parse(%q) = %q, %d, %v; want %q, %d, %v", tt.in, step, nth, ok, tt.step, tt.nth, tt.ok)
		}
	}
}

// A point that names another step, or the right step before its Nth hit,
// lets the process live.
func TestPointSpares(t *testing.T) {
	t.Setenv(Env, "some.step:2")
	Point("other.step")
	Point("some.step") // the first hit of two
}
