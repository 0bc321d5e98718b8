package restart

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Policy
		wantErr string
	}{
		{in: "", want: Policy{Mode: No}},
		{in: "no", want: Policy{Mode: No}},
		{in: "always", want: Policy{Mode: Always}},
		{in: "on-failure", want: Policy{Mode: OnFailure}},
		{in: "on-failure:3", want: Policy{Mode: OnFailure, MaxRestarts: 3}},
		{in: "sometimes", wantErr: "want no, on-failure[:N] or always"},
		{in: "Always", wantErr: "want no, on-failure[:N] or always"},
		{in: "on-failure:-1", wantErr: `count "-1"`},
		{in: "on-failure:0", wantErr: `count "0"`},
		{in: "on-failure:x", wantErr: `count "x"`},
		{in: "on-failure:", wantErr: `count ""`},
		{in: "always:2", wantErr: "only on-failure takes a count"},
		{in: "no:1", wantErr: "only on-failure takes a count"},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		// What String writes, Parse reads back.
		if back, err := Parse(got.String()); err != nil || back != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestRestarts(t *testing.T) {
	for _, tc := range []struct {
		policy           string
		status, restarts int
		want             bool
	}{
		{"no", 1, 0, false},
		{"no", 0, 0, false},
		{"always", 0, 0, true},
		{"always", 137, 1000, true},
		{"on-failure", 0, 0, false},
		{"on-failure", 3, 0, true},
		{"on-failure", 3, 1000, true},
		{"on-failure:2", 3, 0, true},
		{"on-failure:2", 3, 1, true},
		{"on-failure:2", 3, 2, false},
		{"on-failure:2", 0, 1, false},
	} {
		p, err := Parse(tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Restarts(tc.status, tc.restarts); got != tc.want {
			t.Errorf("%s: Restarts(status %d, after %d) = %v, want %v", tc.policy, tc.status, tc.restarts, got, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := DefaultBackoff()
	for k, want := range map[int]time.Duration{
		1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 4: 80 * time.Second,
		5: 160 * time.Second, 6: 5 * time.Minute, 7: 5 * time.Minute, 100: 5 * time.Minute,
		1 << 40: 5 * time.Minute,
	} {
		if got := b.Delay(k); got != want {
			t.Errorf("Delay(%d) = %v, want %v", k, got, want)
		}
	}
	// A cap that is not a power of two times the base is reached exactly,
	// and a cap near the largest duration does not overflow.
	if got := (Backoff{Base: 3 * time.Second, Cap: 10 * time.Second}).Delay(3); got != 10*time.Second {
		t.Errorf("Delay(3) of 3s..10s = %v", got)
	}
	huge := Backoff{Base: time.Second, Cap: time.Duration(1<<63 - 1)}
	for _, k := range []int{62, 63, 64, 200} {
		if got := huge.Delay(k); got <= 0 {
			t.Errorf("Delay(%d) up to the largest duration = %v", k, got)
		}
	}
}

func TestBackoffStep(t *testing.T) {
	b := DefaultBackoff()
	for _, tc := range []struct {
		step int
		ran  time.Duration
		want int
	}{
		{0, time.Second, 1},
		{1, time.Second, 2},
		{5, 9 * time.Minute, 6},
		{5, 10 * time.Minute, 1},
		{5, time.Hour, 1},
	} {
		if got := b.Step(tc.step, tc.ran); got != tc.want {
			t.Errorf("Step(%d, ran %v) = %d, want %d", tc.step, tc.ran, got, tc.want)
		}
	}
}

func TestParseBackoff(t *testing.T) {
	def := DefaultBackoff()
	for _, tc := range []struct {
		in      string
		want    Backoff
		wantErr bool
	}{
		{in: "100ms", want: Backoff{Base: 100 * time.Millisecond, Cap: def.Cap, Reset: def.Reset}},
		{in: "100ms,1s", want: Backoff{Base: 100 * time.Millisecond, Cap: time.Second, Reset: def.Reset}},
		{in: " 1s , 2s ", want: Backoff{Base: time.Second, Cap: 2 * time.Second, Reset: def.Reset}},
		{in: "10m", want: Backoff{Base: 10 * time.Minute, Cap: 10 * time.Minute, Reset: def.Reset}},
		{in: "", wantErr: true},
		{in: "0s", wantErr: true},
		{in: "-1s", wantErr: true},
		{in: "fast", wantErr: true},
		{in: "1s,500ms", wantErr: true},
		{in: "1s,", wantErr: true},
	} {
		got, err := ParseBackoff(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseBackoff(%q) = %+v, %v", tc.in, got, err)
		}
	}
}
