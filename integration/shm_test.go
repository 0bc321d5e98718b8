package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/sandbox"
)

// mountsUnder lists the mount points of the test's process at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var at []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			at = append(at, f[4])
		}
	}
	return at
}

// The containers of a sandbox share one /dev/shm, as a pod's do: what one
// writes there, another reads, while no other sandbox sees it. It is a
// 64 MiB tmpfs that any user may write, without devices, set-user-ID or
// programs; a container that mounts its own /dev/shm keeps it. It goes
// with the sandbox, also when rm -f removes it after its shim was killed.
func TestSandboxSharesDevShm(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	for _, shimKilled := range []bool{false, true} {
		id := n.sandbox("--name", "pod")
		n.sandbox("--name", "other")
		n.mustRun("run", "-d", "--sandbox", "pod", "--name", "writer", "--rootfs", fs, "--",
			"sh", "-c", "echo shared >/dev/shm/x && exec sleep 1000")
		out := n.mustRun("run", "--rm", "--sandbox", "pod", "--user", "1000:1000", "--rootfs", fs, "--",
			"sh", "-c", `for i in $(seq 200); do [ -e /dev/shm/x ] && break; sleep 0.1; done
cat /dev/shm/x && stat -c %a /dev/shm && touch /dev/shm/by-1000 && grep ' /dev/shm ' /proc/self/mountinfo`)
		lines := strings.SplitN(out, "\n", 3)
		if len(lines) < 3 || lines[0] != "shared" || lines[1] != "1777" {
			t.Fatalf("shim killed %v: a second container of the sandbox, as uid 1000, reads /dev/shm/x, stats and writes /dev/shm:\n%s", shimKilled, out)
		}
		for _, want := range []string{"nosuid", "nodev", "noexec", " tmpfs ", "size=65536k"} {
			if !strings.Contains(lines[2], want) {
				t.Errorf("/dev/shm of the sandbox's containers is mounted as %q, want %q in it", lines[2], want)
			}
		}
		if code, out, _ := n.run("run", "--rm", "--sandbox", "other", "--rootfs", fs, "--", "cat", "/dev/shm/x"); code == 0 {
			t.Errorf("a container of another sandbox reads /dev/shm/x: %q", out)
		}
		if code, out, _ := n.run("run", "--rm", "--sandbox", "pod", "--mount", "type=tmpfs,target=/dev/shm", "--rootfs", fs, "--",
			"cat", "/dev/shm/x"); code == 0 {
			t.Errorf("a container with its own /dev/shm mount reads the sandbox's /dev/shm/x: %q", out)
		}
		own := filepath.Join(n.root, "sandboxes", id, sandbox.ShmDir)
		if _, err := os.Stat(filepath.Join(own, "by-1000")); err != nil {
			t.Errorf("the sandbox's /dev/shm on the node: %v", err)
		}

		if shimKilled {
			shim := int(n.inspect("pod")["shimPid"].(float64))
			if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(20 * time.Second); sandbox.Alive(shim, 0) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		n.mustRun("sandbox", "rm", "-f", "pod")
		if _, err := os.Stat(filepath.Join(own, "x")); !os.IsNotExist(err) {
			t.Errorf("shim killed %v: /dev/shm/x after the sandbox's removal: %v", shimKilled, err)
		}
		if m := mountsUnder(t, filepath.Join(n.root, "sandboxes", id)); len(m) > 0 {
			t.Errorf("shim killed %v: mounts left of the removed sandbox: %v", shimKilled, m)
		}
		n.mustRun("sandbox", "rm", "-f", "other")
	}
}
