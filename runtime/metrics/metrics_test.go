package metrics

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

// TestReadRealCgroup makes a cgroup in every hierarchy (as package sandbox
// does for a sandbox), runs a process in it that allocates memory and burns
// CPU, and reads its metrics from the host's real cgroup files.
func TestReadRealCgroup(t *testing.T) {
	testnode.RequirePrivileged(t)
	b := make([]byte, 6)
	rand.Read(b)
	parent := "podbox-test-" + hex.EncodeToString(b)
	cg := sandbox.Cgroup{Path: parent + "/m"}
	if err := cg.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := (sandbox.Cgroup{Path: parent}).Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	h, err := mountedHierarchiesIn(t, "/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !h.isV1() {
		// A v2 cgroup has the memory and pids files only if its parent
		// delegates those controllers (runc does this for its cgroups).
		enableControllers(t, filepath.Join(h.v2, parent))
	}

	// The shell waits for a line, so that it joins the cgroup before it
	// works; then it builds a 5 MB string (memory, CPU) and says so.
	sh := exec.Command("sh", "-c", `read go; x=$(head -c 5000000 /dev/zero | tr '\0' a); echo ready; sleep 30`)
	stdin, _ := sh.StdinPipe()
	stdout, _ := sh.StdoutPipe()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Process.Kill(); sh.Wait() })
	if err := cg.Add(sh.Process.Pid); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	msg, err := Read(cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	var url string
	switch m := msg.(type) {
	case *stats1.Metrics:
		url = "io.containerd.cgroups.v1.Metrics"
		if !h.isV1() {
			t.Errorf("pure v2 host gave v1 metrics")
		}
		if m.GetMemory().GetUsage().GetUsage() == 0 {
			t.Errorf("memory usage 0: %v", m.Memory)
		}
		if m.GetPids().GetCurrent() < 1 {
			t.Errorf("pids.current %d, want ≥ 1", m.GetPids().GetCurrent())
		}
		if u := m.GetCPU().GetUsage(); u.GetTotal() == 0 || len(u.GetPerCPU()) == 0 {
			t.Errorf("cpu usage: %v", u)
		}
	case *stats2.Metrics:
		url = "io.containerd.cgroups.v2.Metrics"
		if h.isV1() {
			t.Errorf("host with v1 controllers gave v2 metrics")
		}
		if m.GetMemory().GetUsage() == 0 {
			t.Errorf("memory usage 0: %v", m.Memory)
		}
		if m.GetPids().GetCurrent() < 1 {
			t.Errorf("pids.current %d, want ≥ 1", m.GetPids().GetCurrent())
		}
		if m.GetCPU().GetUsageUsec() == 0 {
			t.Errorf("cpu usage 0: %v", m.CPU)
		}
	default:
		t.Fatalf("Read gave %T", msg)
	}
	t.Logf("metrics of %s: %v", cg.Path, msg)

	metric, err := ToMetric("m", msg)
	if err != nil {
		t.Fatal(err)
	}
	if metric.Data.TypeUrl != url {
		t.Errorf("type URL %q, want %q", metric.Data.TypeUrl, url)
	}
	v, err := typeurl.UnmarshalAny(metric.Data)
	if err != nil {
		t.Fatalf("typeurl cannot decode %q: %v", metric.Data.TypeUrl, err)
	}
	if !proto.Equal(v.(proto.Message), msg) {
		t.Error("metric does not round-trip")
	}

	// On a hybrid host the unified tree holds no controllers, but its
	// core files (cpu.stat, pressure) are real v2 files: read them too, so
	// the v2 parsers meet a real kernel here as well.
	if h.isV1() && h.v2 != "" {
		msg, err := hierarchies{v2: h.v2}.read(sandbox.CgroupPaths{Path: cg.Path})
		if err != nil {
			t.Fatalf("read %s in the unified tree: %v", cg.Path, err)
		}
		if m := msg.(*stats2.Metrics); m.GetCPU().GetUsageUsec() == 0 {
			t.Errorf("unified tree: cpu usage 0: %v", m)
		}
	}

	// The sandbox level sums its containers.
	if _, err := Read(parent); err != nil {
		t.Errorf("read parent: %v", err)
	}
	_, err = Read(parent + "/gone")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), parent+"/gone") {
		t.Errorf("missing cgroup: %v, want ErrNotExist naming it", err)
	}
}

// enableControllers delegates the controllers metrics reads to dir's
// children on a pure v2 host.
func enableControllers(t *testing.T, dir string) {
	t.Helper()
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range strings.Fields(string(avail)) {
		switch c {
		case "cpu", "memory", "pids", "io":
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644); err != nil {
				t.Fatalf("enable %s in %s: %v", c, dir, err)
			}
		}
	}
}
