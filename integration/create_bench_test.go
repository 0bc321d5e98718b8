package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The benchmarks of issue 6's latency targets, through the real binaries:
//
//	go test -run '^$' -bench 'SandboxCreate|RunDetached' -benchtime 60x ./integration/
//
// Every command runs on a thread that has entered the node's network
// namespace, so the figures hold no nsenter start; what is timed is the
// user's command from its fork to its exit. They report p50 and p90 in ms
// (ns/op is the mean) and are leak-checked like the tests.

// inNode runs fn on a thread inside the node namespace: the commands it
// starts inherit the namespace without an nsenter in front.
func (n *cliNode) inNode(fn func()) {
	n.t.Helper()
	if err := n.node.Do(func() error { fn(); return nil }); err != nil {
		n.t.Fatal(err)
	}
}

// timed runs name args (already inside the node) and returns how long it
// took and its stdout; it fails the benchmark if the command fails.
func (n *cliNode) timed(name string, args ...string) (time.Duration, string) {
	n.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = n.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if name == "runc" {
		// A detached container keeps runc's stdio: with pipes, Run would
		// wait for the container's end.
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		n.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return d, strings.TrimSpace(out.String())
}

// reportPercentiles adds p50 and p90 (ms) of ds under prefix.
func reportPercentiles(b *testing.B, prefix string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / 1e6 }
	b.ReportMetric(ms(0.5), prefix+"p50-ms")
	b.ReportMetric(ms(0.9), prefix+"p90-ms")
}

// newBenchNode is a node whose state root is under /run, like podbox's
// default: a runtime directory, which podbox treats as such (no fsync).
func newBenchNode(b *testing.B) *cliNode {
	root, err := os.MkdirTemp("/run", "podbox-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) }) // last, after the leak check
	return newCLINodeAt(b, root)
}

// BenchmarkSandboxCreate times `podbox sandbox create` (a bridge network
// sandbox, from the command's start to its exit, when the pause runs and the
// network is up); each sandbox is removed again, untimed.
func BenchmarkSandboxCreate(b *testing.B) {
	n := newBenchNode(b)
	// The bridge and the pause root are made once per node; the first
	// create pays for them and is not counted.
	n.inNode(func() {
		_, id := n.timed(n.podbox, "sandbox", "create")
		n.timed(n.podbox, "sandbox", "rm", "-f", id)
	})
	var ds []time.Duration
	b.ResetTimer()
	n.inNode(func() {
		for i := 0; i < b.N; i++ {
			d, id := n.timed(n.podbox, "sandbox", "create")
			ds = append(ds, d)
			b.StopTimer()
			n.timed(n.podbox, "sandbox", "rm", "-f", id)
			b.StartTimer()
		}
	})
	b.StopTimer()
	reportPercentiles(b, "", ds)
}

// BenchmarkRunDetached times `podbox run -d` of a sleeping busybox into a
// ready sandbox, interleaved with a raw `runc run -d` of the very bundle the
// shim made for such a container, and reports both and their ratio. It also
// times raw `runc create` + `runc start` of that bundle: the Task API's
// Create and Start are two runc invocations where `run -d` is one, and that
// share of the ratio is the API's, not podbox's.
func BenchmarkRunDetached(b *testing.B) {
	n := newBenchNode(b)
	fs := busybox(b)
	runcRoot := filepath.Join(b.TempDir(), "runc")
	bundle := filepath.Join(b.TempDir(), "bundle")
	var podbox, raw, split []time.Duration
	n.inNode(func() {
		_, sid := n.timed(n.podbox, "sandbox", "create", "--name", "pod")
		defer n.timed(n.podbox, "sandbox", "rm", "-f", "pod")
		// A first container gives the raw bundle: the spec as the shim
		// rewrote it, joined to the sandbox, with the same rootfs.
		_, cid := n.timed(n.podbox, "run", "-d", "--sandbox", "pod", "--rootfs", fs, "--", "sleep", "600")
		spec := rawSpec(b, filepath.Join(n.root, "sandboxes", sid, "containers", cid, "config.json"))
		n.timed(n.podbox, "rm", "-f", cid)
		if err := os.MkdirAll(bundle, 0o700); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			d, cid := n.timed(n.podbox, "run", "-d", "--sandbox", "pod", "--rootfs", fs, "--", "sleep", "600")
			podbox = append(podbox, d)
			b.StopTimer()
			n.timed(n.podbox, "rm", "-f", cid)

			id := fmt.Sprintf("raw%d", i)
			spec["linux"].(map[string]any)["cgroupsPath"] = "/" + n.cgroup + "/" + sid + "/" + id
			writeJSON(b, filepath.Join(bundle, "config.json"), spec)
			b.StartTimer()
			d, _ = n.timed("runc", "--root", runcRoot, "run", "-d", "--bundle", bundle, id)
			raw = append(raw, d)
			b.StopTimer()
			n.timed("runc", "--root", runcRoot, "delete", "-f", id)

			id += "s"
			spec["linux"].(map[string]any)["cgroupsPath"] = "/" + n.cgroup + "/" + sid + "/" + id
			writeJSON(b, filepath.Join(bundle, "config.json"), spec)
			d1, _ := n.timed("runc", "--root", runcRoot, "create", "--bundle", bundle, id)
			d2, _ := n.timed("runc", "--root", runcRoot, "start", id)
			split = append(split, d1+d2)
			n.timed("runc", "--root", runcRoot, "delete", "-f", id)
			b.StartTimer()
		}
		b.StopTimer()
	})
	reportPercentiles(b, "podbox-", podbox)
	reportPercentiles(b, "runc-", raw)
	reportPercentiles(b, "runc-create-start-", split)
	slices.Sort(podbox)
	slices.Sort(raw)
	if len(raw) > 0 {
		b.ReportMetric(float64(podbox[len(podbox)/2])/float64(raw[len(raw)/2]), "p50-ratio")
	}
}

// rawSpec reads the container spec at path, for a raw runc to run again.
func rawSpec(b *testing.B, path string) map[string]any {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return spec
}

func writeJSON(b *testing.B, path string, v any) {
	raw, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(path, raw, 0o600)
	}
	if err != nil {
		b.Fatal(err)
	}
}
