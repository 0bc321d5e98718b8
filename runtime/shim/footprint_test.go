package shim_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

// These benchmarks measure what a sandbox costs the way a user meets it:
// through the podbox CLI, run inside a test node (from a thread in the node's
// namespace, so no nsenter is timed), with its own state root and cgroup
// parent, leak-checked at the end. Run them alone, e.g.
//
//	go test -run '^$' -bench 'Remove|IdleFootprint' -benchtime 1x ./runtime/shim/

// cliNode runs the podbox CLI inside a fresh test node.
type cliNode struct {
	tb   testing.TB
	node *testnode.Node
	bin  string
	root string
	env  []string
}

func newCLINode(tb testing.TB) *cliNode {
	tb.Helper()
	node := testnode.New(tb)
	root := tb.TempDir()
	cg := "podbox-footprint-" + sandbox.NewID()[:12]
	tb.Cleanup(func() { sandbox.Cgroup{Path: cg}.Remove() })
	leakcheck.Check(tb, leakcheck.Options{
		Root: root, Node: node, CgroupParent: cg, AllowLinks: []string{"podbox0"},
		AllowFiles: []string{"pause-root/pause", "ipam/*/*"},
	})
	return &cliNode{tb: tb, node: node, bin: testnode.Binary(tb, "podbox"), root: root, env: append(os.Environ(),
		"PODBOX_ROOT="+root, "PODBOX_CGROUP_PARENT="+cg,
		"PODBOX_SHIM="+testnode.Binary(tb, "containerd-shim-podbox-v1"),
		"PODBOX_PAUSE="+testnode.Binary(tb, "podbox-pause"))}
}

// run runs `podbox args…` in the node and returns its output and how long it
// took from start to exit.
func (c *cliNode) run(args ...string) (string, time.Duration) {
	c.tb.Helper()
	var out, errb bytes.Buffer
	var d time.Duration
	err := c.node.Do(func() error {
		cmd := exec.Command(c.bin, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = c.env, &out, &errb
		t0 := time.Now()
		err := cmd.Run()
		d = time.Since(t0)
		return err
	})
	if err != nil {
		c.tb.Fatalf("podbox %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), d
}

func reportPercentiles(b *testing.B, what string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ds[len(ds)/2]), what+"-p50-ms")
	b.ReportMetric(ms(ds[len(ds)*9/10]), what+"-p90-ms")
}

// BenchmarkRemove times `podbox sandbox rm -f` of a ready sandbox (and, on
// the side, the `podbox sandbox create` before it), created
// just before (fresh) or 100 ms before (settled; the kernel releases a
// namespace that a netlink socket used only an RCU grace period after the
// socket was closed, see netsetup.Network.Teardown).
func BenchmarkRemove(b *testing.B) {
	if testing.Short() {
		b.Skip("runs the CLI against real sandboxes")
	}
	for _, gap := range []time.Duration{0, 100 * time.Millisecond} {
		name := "fresh"
		if gap > 0 {
			name = "settled"
		}
		b.Run(name, func(b *testing.B) {
			c := newCLINode(b)
			var create, rm []time.Duration
			for b.Loop() {
				b.StopTimer()
				id, d := c.run("sandbox", "create")
				create = append(create, d)
				time.Sleep(gap)
				b.StartTimer()
				_, d = c.run("sandbox", "rm", "-f", id)
				rm = append(rm, d)
			}
			reportPercentiles(b, "create", create)
			reportPercentiles(b, "rm", rm)
		})
	}
}

// BenchmarkIdleFootprint creates N idle sandboxes and reports the mean
// proportional set size (PSS: shared pages divided among their users, so
// that N sandboxes add up fairly) and anonymous memory per shim and per
// pause, from /proc/PID/smaps_rollup, after the shims had time to go idle.
func BenchmarkIdleFootprint(b *testing.B) {
	if testing.Short() {
		b.Skip("runs the CLI against real sandboxes")
	}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			c := newCLINode(b)
			for b.Loop() {
				ids := make([]string, n)
				for i := range ids {
					ids[i], _ = c.run("sandbox", "create")
				}
				time.Sleep(2 * time.Second)
				var shim, pause rollup
				for _, id := range ids {
					sb, err := sandbox.Store{Root: c.root}.LoadSandbox(id)
					if err != nil {
						b.Fatal(err)
					}
					shim.add(b, sb.ShimPID)
					pause.add(b, sb.PausePID)
				}
				b.ReportMetric(shim.pss/float64(n), "shim-pss-KiB")
				b.ReportMetric(shim.anon/float64(n), "shim-anon-KiB")
				b.ReportMetric(shim.rss/float64(n), "shim-rss-KiB")
				b.ReportMetric(pause.pss/float64(n), "pause-pss-KiB")
				b.ReportMetric(pause.anon/float64(n), "pause-anon-KiB")
				b.ReportMetric((shim.pss+pause.pss)/float64(n), "sandbox-pss-KiB")
				c.run(append([]string{"sandbox", "rm", "-f"}, ids...)...)
			}
		})
	}
}

// rollup sums fields of /proc/PID/smaps_rollup, in KiB.
type rollup struct{ rss, pss, anon float64 }

func (r *rollup) add(tb testing.TB, pid int) {
	tb.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(fs[0], 64)
		switch k {
		case "Rss":
			r.rss += kib
		case "Pss":
			r.pss += kib
		case "Anonymous":
			r.anon += kib
		}
	}
}
