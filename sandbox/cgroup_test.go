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

// On a v1 cpuset hierarchy, the sandbox's cgroup has the kernel copy cpus
// and mems into new children (cgroup.clone_children), so neither the pause's
// cgroup nor the container cgroups runc makes below it need them written
// (each write rebuilds the scheduler domains); and the pause's cgroup holds
// the parent's cpus and mems, so that a task can join it.
func TestCgroupCpusetClonesChildren(t *testing.T) {
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
		testnode.Skip(t, "no cgroup v1 cpuset hierarchy on this host")
	}
	rootFlag, err := os.ReadFile(filepath.Join(mount, "cgroup.clone_children"))
	if err != nil {
		t.Fatal(err)
	}
	parent := "podbox-test-" + NewID()[:12]
	if err := (Cgroup{Path: parent + "/sb/pause"}).Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Cgroup{Path: parent}.Remove() })
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mount, rel))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, dir := range []string{parent, parent + "/sb"} {
		if got := read(dir + "/cgroup.clone_children"); got != "1" {
			t.Errorf("%s: cgroup.clone_children = %q, want 1", dir, got)
		}
	}
	// The root's children are not all ours: its flag stays as it was.
	if got, want := read("cgroup.clone_children"), strings.TrimSpace(string(rootFlag)); got != want {
		t.Errorf("root cgroup.clone_children = %q, was %q", got, want)
	}
	// A child made the way runc makes a container's cgroup, a bare mkdir,
	// can take tasks at once.
	ctr := filepath.Join(mount, parent, "sb", "ctr")
	if err := os.Mkdir(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		want := read(f)
		for _, dir := range []string{parent + "/sb/pause", parent + "/sb/ctr"} {
			if got := read(dir + "/" + f); got != want || got == "" {
				t.Errorf("%s/%s = %q, want the root's %q", dir, f, got, want)
			}
		}
	}
}
