package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podbox/podbox/integration/testnode"
)

// A cgroup is made in every hierarchy, takes a process, and Remove clears it
// even with the process still inside (what a crashed shim leaves).
func TestCgroupCreateAddRemove(t *testing.T) {
	testnode.RequirePrivileged(t)
	parent := "podbox-test-" + NewID()[:12]
	cg := Cgroup{Path: parent + "/sb/pause"}
	if err := cg.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Cgroup{Path: parent}.Remove() })
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	if err := cg.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := hierarchies()
	if n := strings.Count(string(b), "/"+cg.Path+"\n"); n != len(hs) {
		t.Fatalf("process is in %s in %d of %d hierarchies:\n%s", cg.Path, n, len(hs), b)
	}
	if err := (Cgroup{Path: parent}).Remove(); err != nil {
		t.Fatal(err)
	}
	<-waited
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h.mount, parent)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s remains in %s", parent, h.mount)
		}
	}
	if err := (Cgroup{Path: parent}).Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

// A cpuset made below a sandbox cgroup gets its cpus and mems from the
// kernel at mkdir (cgroup.clone_children), so neither a later sandbox nor
// runc, for a container, needs to write cpuset.cpus, which makes the kernel
// walk every cpuset on the host.
func TestCgroupCpusetInherited(t *testing.T) {
	testnode.RequirePrivileged(t)
	hs, err := hierarchies()
	if err != nil {
		t.Fatal(err)
	}
	var mount string
	for _, h := range hs {
		if h.cpuset {
			mount = h.mount
		}
	}
	if mount == "" {
		testnode.Skip(t, "no v1 cpuset hierarchy: nothing to inherit") // pure v2 host
	}
	// A two-level parent: its upper level is not ours to change.
	top := "podbox-test-" + NewID()[:12]
	parent := top + "/nodes"
	t.Cleanup(func() { Cgroup{Path: top}.Remove() })
	if err := (Cgroup{Path: parent + "/sb1/pause"}).Create(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(mount, parent, "cpuset.cpus"))
	if err != nil {
		t.Fatal(err)
	}
	// Plain mkdirs, as a second sandbox's or runc's, below each level.
	for _, dir := range []string{parent + "/sb2", parent + "/sb1/ctr"} {
		if err := os.Mkdir(filepath.Join(mount, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			got, err := os.ReadFile(filepath.Join(mount, dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) == "" {
				t.Errorf("%s of a new cpuset %s is empty: not inherited", f, dir)
			}
			if f == "cpuset.cpus" && string(got) != string(want) {
				t.Errorf("%s of %s = %q, want the parent's %q", f, dir, got, want)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(mount, top, "cgroup.clone_children")); err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Errorf("clone_children of %s, above the parent, = %q, %v; want it left 0", top, b, err)
	}
	if err := (Cgroup{Path: top}).Remove(); err != nil {
		t.Fatal(err)
	}
}
