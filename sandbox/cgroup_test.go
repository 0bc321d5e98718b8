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
