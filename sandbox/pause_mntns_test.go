package sandbox

import (
	"context"
	"os"
	"strings"
	"testing"
)

// Pauses of one state root share one mount namespace: the second sandbox's
// pause joins the first's, which holds only the read-only pause root, and
// once the first sandbox is gone the next pause joins the second's. Each
// still has its own network, IPC, UTS and PID namespaces.
func TestPausesShareTheirMountNamespace(t *testing.T) {
	n := testNode(t)
	ctx := context.Background()
	create := func(name string) *Sandbox {
		t.Helper()
		sb, err := n.Create(ctx, Options{ID: NewID(), Name: name})
		if err != nil {
			t.Fatal(err)
		}
		// The pause is our child here; reap it as the shim's reaper would.
		go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
		t.Cleanup(func() { n.Remove(ctx, sb, nil) })
		return sb
	}
	ns := func(sb *Sandbox, kind string) uint64 { return ino(t, "/proc/"+itoa(sb.PausePID)+"/ns/"+kind) }

	a, b := create("a"), create("b")
	if ns(a, "mnt") != ns(b, "mnt") {
		t.Errorf("second pause has its own mount namespace, want the first's")
	}
	if ns(a, "mnt") == ino(t, "/proc/self/ns/mnt") {
		t.Fatal("a pause is in the host's mount namespace")
	}
	for _, kind := range []string{"net", "ipc", "uts", "pid"} {
		if ns(a, kind) == ns(b, kind) {
			t.Errorf("two sandboxes' pauses share their %s namespace", kind)
		}
	}
	mounts := strings.Split(strings.TrimSpace(readFile(t, "/proc/"+itoa(b.PausePID)+"/mountinfo")), "\n")
	if len(mounts) != 1 || strings.Fields(mounts[0])[4] != "/" || !strings.HasPrefix(strings.Fields(mounts[0])[5], "ro,") {
		t.Errorf("joined pause should see exactly one read-only mount at /; mountinfo:\n%s", strings.Join(mounts, "\n"))
	}

	if err := n.Remove(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	c := create("c")
	if ns(c, "mnt") != ns(b, "mnt") {
		t.Errorf("after the first sandbox's removal the next pause did not join the remaining one's namespace")
	}
	if st, err := ProcessStart(c.PausePID); err != nil || !Alive(c.PausePID, st) {
		t.Errorf("joined pause not running: %v", err)
	}
}

// A record that names a process that is not a pause of this root (here the
// test itself, in the host's mount namespace) is never joined.
func TestPauseMountNSRefusesAForeignProcess(t *testing.T) {
	n := testNode(t)
	st, err := ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fake := &Sandbox{ID: NewID(), Name: "fake", State: StateReady, PausePID: os.Getpid(), PauseStart: st}
	if err := n.Store.CreateSandboxRecord(fake); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Store.RemoveSandboxRecord(fake) })
	root := n.Store.Root + "/pause-root"
	if err := PrepareRootDir(root, n.PauseBinary); err != nil {
		t.Fatal(err)
	}
	if f := n.pauseMountNS("other", root); f != nil {
		f.Close()
		t.Fatal("pauseMountNS offered the mount namespace of a process that is not a pause")
	}
}
