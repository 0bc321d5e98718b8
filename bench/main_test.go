package main

import (
	"slices"
	"testing"

	"github.com/podbox/podbox/bench/report"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-runs", "5", "-scale", "40", "-mem", "1, 3", "-micro=false"})
	if err != nil {
		t.Fatal(err)
	}
	if c.runs != 5 || c.scale != 40 || !slices.Equal(c.memN, []int{1, 3}) || c.micro || c.burst != 32 || c.scaleWindow != 2 {
		t.Errorf("parseFlags = %+v", c)
	}
	if !c.selected("ready") || !c.selected("micro") {
		t.Errorf("without -phases, not every phase is selected: %q", c.phases)
	}
	c, err = parseFlags([]string{"-phases", "join, scale"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.selected("join") || !c.selected("scale") || c.selected("ready") || c.selected("micro") {
		t.Errorf("-phases join,scale selects %q", c.phases)
	}
	for _, bad := range [][]string{{"-mem", "1,x"}, {"-mem", "0"}, {"-runs", "0"}, {"extra"}, {"-phases", "join,nope"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/podbox/podbox/netsetup/ipam
cpu: Intel(R) Xeon(R) Processor
BenchmarkLeaseRelease/tmpfs/leases=0-2         	    6234	    190612 ns/op
PASS
pkg: github.com/podbox/podbox/netsetup
BenchmarkSetupTeardown/busy-200-2   	      32	  36479224 ns/op	      3609 setup-p50-µs	     35631 teardown-p50-µs
ok  	github.com/podbox/podbox/netsetup	12.3s
`
	got := parseBench(out)
	want := []report.Micro{
		{Package: "netsetup/ipam", Name: "BenchmarkLeaseRelease/tmpfs/leases=0", Iter: 6234, Metrics: map[string]float64{"ns/op": 190612}},
		{Package: "netsetup", Name: "BenchmarkSetupTeardown/busy-200", Iter: 32,
			Metrics: map[string]float64{"ns/op": 36479224, "setup-p50-µs": 3609, "teardown-p50-µs": 35631}},
	}
	if len(got) != len(want) {
		t.Fatalf("parseBench = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Package != want[i].Package || got[i].Name != want[i].Name || got[i].Iter != want[i].Iter || !maps(got[i].Metrics, want[i].Metrics) {
			t.Errorf("result %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func maps(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRotate(t *testing.T) {
	seen := map[string]bool{}
	for i := range 3 {
		o := rotate(i)
		if len(o) != 3 {
			t.Fatalf("rotate(%d) = %v", i, o)
		}
		seen[o[0]] = true
	}
	if len(seen) != 3 {
		t.Errorf("over three rounds the first subjects were %v, want all three", seen)
	}
}
