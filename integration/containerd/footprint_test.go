package containerd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
)

// BenchmarkPeerIdleFootprint is the reference for podbox's memory per idle
// sandbox (runtime/shim's BenchmarkIdleFootprint): N idle pods of
// containerd 1.6's CRI with io.containerd.runc.v2 and podbox's pause image,
// and the mean PSS and anonymous memory per containerd-shim-runc-v2 and per
// pause, from /proc/PID/smaps_rollup. Run it alone:
//
//	go test -run '^$' -bench PeerIdleFootprint -benchtime 1x ./integration/containerd/
func BenchmarkPeerIdleFootprint(b *testing.B) {
	if testing.Short() {
		b.Skip("runs containerd and real pods")
	}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			node := testnode.New(b)
			cg := fmt.Sprintf("podbox-peerfoot-%d-%d", os.Getpid(), n)
			b.Cleanup(func() { removeCgroupParent(b, cg) })
			leakcheck.Check(b, leakcheck.Options{Node: node, AllowLinks: []string{CNIBridge}, CgroupParent: cg})
			d := Start(b, node, Options{SandboxImage: pauseRef})
			d.ImportImage(b, CRINamespace, pauseImage(b, testnode.Binary(b, "podbox-pause")))
			dir := b.TempDir()
			for b.Loop() {
				pods := make([]string, n)
				for i := range pods {
					pod := writeJSON(b, dir, fmt.Sprintf("pod-%d.json", i), map[string]any{
						"metadata":      map[string]any{"name": fmt.Sprint("foot-", i), "namespace": "default", "uid": fmt.Sprint("foot-uid-", i)},
						"log_directory": filepath.Join(dir, "logs"),
						"linux":         map[string]any{"cgroup_parent": "/" + cg},
					})
					pods[i] = crictl(b, d, "runp", "--runtime", "runc", pod)
				}
				time.Sleep(2 * time.Second)
				var shim, pause smapsRollup
				for _, p := range processes(b, "containerd-shim", d.Address) {
					shim.add(b, p)
				}
				for _, p := range processes(b, "pause", cg) {
					pause.add(b, p)
				}
				if shim.n != n || pause.n != n {
					b.Fatalf("%d pods: found %d runc shims and %d pauses", n, shim.n, pause.n)
				}
				b.ReportMetric(shim.pss/float64(n), "shim-pss-KiB")
				b.ReportMetric(shim.anon/float64(n), "shim-anon-KiB")
				b.ReportMetric(pause.pss/float64(n), "pause-pss-KiB")
				b.ReportMetric((shim.pss+pause.pss)/float64(n), "pod-pss-KiB")
				for _, id := range pods {
					crictl(b, d, "stopp", id)
					crictl(b, d, "rmp", id)
				}
			}
		})
	}
}

// processes lists the processes whose command name is comm and whose
// command line or cgroup names mark: the runc shims of this daemon name its
// socket in their arguments, the pauses run below the benchmark's cgroup
// parent.
func processes(tb testing.TB, comm, mark string) []int {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cg, _ := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if strings.Contains(string(cmdline), mark) || strings.Contains(string(cg), mark) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// smapsRollup sums fields of /proc/PID/smaps_rollup, in KiB.
type smapsRollup struct {
	n         int
	pss, anon float64
}

func (r *smapsRollup) add(tb testing.TB, pid int) {
	tb.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r.n++
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(s.Text(), ":")
		fs := strings.Fields(v)
		if len(fs) != 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(fs[0], 64)
		switch k {
		case "Pss":
			r.pss += kib
		case "Anonymous":
			r.anon += kib
		}
	}
}
