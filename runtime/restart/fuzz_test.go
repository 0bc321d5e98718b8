package restart

import "testing"

// FuzzParse checks --restart and the spec annotation that carries it to the
// shim, which also reads it back from a container's spec on disk: a policy
// Parse accepts has a known mode and a count only with on-failure, at
// least 1; it spells, with String, as a policy that parses to itself, since
// the CLI writes String and the shim parses it; and Restarts never restarts
// a "no" container nor an on-failure one past its count.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "no", "always", "on-failure", "on-failure:3", "sometimes", "Always", "on-failure:-1",
		"on-failure:0", "on-failure:x", "on-failure:", "always:2", "no:1", "on-failure:+7", "on-failure:007"} {
		f.Add(s, 1, 0)
	}
	f.Fuzz(func(t *testing.T, s string, status, restarts int) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		switch {
		case p.Mode != No && p.Mode != OnFailure && p.Mode != Always,
			p.MaxRestarts < 0, p.MaxRestarts > 0 && p.Mode != OnFailure:
			t.Fatalf("Parse(%q) = %+v", s, p)
		}
		if back, err := Parse(p.String()); err != nil || back != p {
			t.Fatalf("Parse(%q) = %+v, spelt %q, which parses as %+v, %v", s, p, p.String(), back, err)
		}
		r := p.Restarts(status, restarts)
		if p.Mode == No && r || p.Mode == OnFailure && (status == 0 || p.MaxRestarts > 0 && restarts >= p.MaxRestarts) && r {
			t.Fatalf("%s: Restarts(status %d, after %d) = true", p, status, restarts)
		}
	})
}

// FuzzParseBackoff checks PODBOX_RESTART_BACKOFF, read by every shim at
// start: a back-off it accepts has a positive base no longer than its cap,
// and every step's delay lies between them, never shorter than the one
// before: an overflow would restart a crashing container in a tight loop.
func FuzzParseBackoff(f *testing.F) {
	for _, s := range []string{"100ms", "100ms,1s", " 1s , 2s ", "10m", "0s", "1s,0s", "x", "1s,", "2562047h", "1ns,2562047h47m16.854775807s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBackoff(s)
		if err != nil {
			return
		}
		if b.Base <= 0 || b.Cap < b.Base {
			t.Fatalf("ParseBackoff(%q) = %+v", s, b)
		}
		prev := b.Base
		for k := 1; k <= 80; k++ {
			d := b.Delay(k)
			if d < prev || d > b.Cap {
				t.Fatalf("ParseBackoff(%q) = %+v: Delay(%d) = %v after %v", s, b, k, d, prev)
			}
			prev = d
		}
	})
}
