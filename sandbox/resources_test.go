package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
)

func TestResourcesValidate(t *testing.T) {
	for _, tc := range []struct {
		r    Resources
		want string // "" for valid
	}{
		{Resources{}, ""},
		{Resources{Memory: MinMemory, CPUs: 0.01, PidsLimit: 1}, ""},
		{Resources{Memory: 1 << 40, CPUs: 64}, ""},
		{Resources{Memory: MinMemory - 1}, "at least 6 MiB"},
		{Resources{Memory: -1}, "at least 6 MiB"},
		{Resources{CPUs: 0.009}, "at least 0.01"},
		{Resources{CPUs: -1}, "at least 0.01"},
		{Resources{PidsLimit: -2}, "positive"},
	} {
		err := tc.r.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.r, err, tc.want)
		}
	}
	if q := (Resources{CPUs: 0.5}).CPUQuota(); q != 50000 {
		t.Errorf("quota of 0.5 CPUs = %d", q)
	}
	if q := (Resources{CPUs: 0.33}).CPUQuota(); q != 33000 {
		t.Errorf("quota of 0.33 CPUs = %d", q)
	}
}

// fakeFiles makes dir/NAME for each name (cgroupfs has every file of a
// cgroup's controllers from its mkdir on).
func fakeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// setLimits writes each limit where the host's hierarchies keep it: v1's
// memory and cpu hierarchies (memsw only where swap is accounted), or the
// v2 tree with the controllers handed down from its root; a hybrid host's
// unified tree, without controllers, is left alone.
func TestSetLimits(t *testing.T) {
	cg := Cgroup{Path: "podbox/sb1"}
	r := Resources{Memory: 32 << 20, CPUs: 0.5}

	t.Run("v1 hybrid", func(t *testing.T) {
		root := t.TempDir()
		mem, cpu, uni := filepath.Join(root, "memory"), filepath.Join(root, "cpu"), filepath.Join(root, "unified")
		fakeFiles(t, filepath.Join(mem, cg.Path), "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
		fakeFiles(t, filepath.Join(cpu, cg.Path), "cpu.cfs_period_us", "cpu.cfs_quota_us")
		fakeFiles(t, uni, "cgroup.controllers")
		hs := []hierarchy{{mount: cpu, controllers: []string{"cpu"}}, {mount: mem, controllers: []string{"memory"}}, {mount: uni, v2: true}}
		if err := cg.setLimits(hs, r); err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]string{
			"memory/podbox/sb1/memory.limit_in_bytes": "33554432", "memory/podbox/sb1/memory.memsw.limit_in_bytes": "33554432",
			"cpu/podbox/sb1/cpu.cfs_period_us": "100000", "cpu/podbox/sb1/cpu.cfs_quota_us": "50000",
		} {
			if got := readFile(t, filepath.Join(root, f)); got != want {
				t.Errorf("%s = %q, want %q", f, got, want)
			}
		}
		if _, err := os.Stat(filepath.Join(uni, "podbox")); !os.IsNotExist(err) {
			t.Errorf("the unified tree without controllers was written to: %v", err)
		}
	})

	t.Run("v1 without swap accounting", func(t *testing.T) {
		mem := t.TempDir()
		fakeFiles(t, filepath.Join(mem, cg.Path), "memory.limit_in_bytes")
		if err := cg.setLimits([]hierarchy{{mount: mem, controllers: []string{"memory"}}}, Resources{Memory: 8 << 20}); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(mem, cg.Path, "memory.limit_in_bytes")); got != "8388608" {
			t.Errorf("memory.limit_in_bytes = %q", got)
		}
	})

	t.Run("v2", func(t *testing.T) {
		mount := t.TempDir()
		fakeFiles(t, mount, "cgroup.controllers", "cgroup.subtree_control")
		os.WriteFile(filepath.Join(mount, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
		fakeFiles(t, filepath.Join(mount, "podbox"), "cgroup.subtree_control")
		fakeFiles(t, filepath.Join(mount, cg.Path), "memory.max", "memory.swap.max", "cpu.max")
		if err := cg.setLimits([]hierarchy{{mount: mount, v2: true}}, r); err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]string{
			"cgroup.subtree_control": "+memory +cpu", "podbox/cgroup.subtree_control": "+memory +cpu",
			"podbox/sb1/memory.max": "33554432", "podbox/sb1/memory.swap.max": "0", "podbox/sb1/cpu.max": "50000 100000",
		} {
			if got := readFile(t, filepath.Join(mount, f)); got != want {
				t.Errorf("%s = %q, want %q", f, got, want)
			}
		}
	})

	t.Run("no controller", func(t *testing.T) {
		cpu := t.TempDir()
		fakeFiles(t, filepath.Join(cpu, cg.Path), "cpu.cfs_period_us", "cpu.cfs_quota_us")
		err := cg.setLimits([]hierarchy{{mount: cpu, controllers: []string{"cpu"}}}, r)
		if err == nil || !strings.Contains(err.Error(), "memory controller") || !strings.Contains(err.Error(), cg.Path) {
			t.Errorf("memory limit without a memory hierarchy: %v", err)
		}
	})

	t.Run("nothing to limit", func(t *testing.T) {
		if err := cg.setLimits(nil, Resources{PidsLimit: 3}); err != nil {
			t.Errorf("no memory or CPU limit: %v", err)
		}
	})
}

// On this host: a sandbox cgroup made as Create makes it has its limits
// before anything joins it.
func TestSandboxCgroupLimits(t *testing.T) {
	testnode.RequirePrivileged(t)
	parent := "podbox-test-" + NewID()[:12]
	n := Node{CgroupParent: parent}
	t.Cleanup(func() { Cgroup{Path: parent}.Remove() })
	sb := &Sandbox{ID: "sb1", Resources: &Resources{Memory: 16 << 20, CPUs: 0.25}}
	if r := n.createPauseCgroup(sb); r.err != nil {
		t.Fatal(r.err)
	}
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, h := range hs {
		dir := filepath.Join(h.mount, parent, "sb1")
		for file, want := range map[string]string{
			"memory.limit_in_bytes": "16777216", "cpu.cfs_quota_us": "25000", "memory.max": "16777216", "cpu.max": "25000 100000",
		} {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				found++
				if got := strings.TrimSpace(string(b)); got != want {
					t.Errorf("%s/%s = %q, want %q", dir, file, got, want)
				}
			}
		}
	}
	if found != 2 {
		t.Errorf("found %d limit files of the sandbox's cgroup, want 2 (memory and cpu)", found)
	}
}
