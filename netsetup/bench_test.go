package netsetup_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

// BenchmarkSetupTeardown measures one sandbox's whole network life inside a
// test node: Setup (namespace creation and pin, bridge check, lease, veth,
// addresses, routes) then Teardown. Besides ns/op it reports the median and
// 90th percentile of each half, since the sandbox create target is a p50.
//
//	idle:         the sandbox is the node's only one
//	busy-N:       N other sandboxes stay attached meanwhile (a larger lease
//	              file, more bridge ports, more links to search)
func BenchmarkSetupTeardown(b *testing.B) {
	for _, others := range []int{0, 200} {
		name := "idle"
		if others > 0 {
			name = fmt.Sprintf("busy-%d", others)
		}
		b.Run(name, func(b *testing.B) {
			node := testnode.New(b)
			root := b.TempDir()
			leakcheck.Check(b, leakcheck.Options{Root: root, Node: node, AllowLinks: []string{testBridge}, AllowFiles: []string{"ipam/*/*"}})
			n := netsetup.Network{Bridge: testBridge, StateRoot: root, NodeNetNS: node.Path}
			dir := filepath.Join(root, "sandboxes")
			ctx := context.Background()
			for i := range others {
				id := fmt.Sprintf("other-%d", i)
				if _, err := n.Setup(ctx, id, filepath.Join(dir, id)); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					if err := n.Teardown(ctx, id, filepath.Join(dir, id)); err != nil {
						b.Error(err)
					}
				})
			}
			var setup, teardown []time.Duration
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("bench-%d", i)
				pin := filepath.Join(dir, id)
				t0 := time.Now()
				if _, err := n.Setup(ctx, id, pin); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := n.Teardown(ctx, id, pin); err != nil {
					b.Fatal(err)
				}
				setup = append(setup, t1.Sub(t0))
				teardown = append(teardown, time.Since(t1))
			}
			b.StopTimer()
			report(b, "setup", setup)
			report(b, "teardown", teardown)
		})
	}
}

func report(b *testing.B, what string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), what+"-p50-µs")
	b.ReportMetric(float64(d[len(d)*9/10].Microseconds()), what+"-p90-µs")
}
