package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Restart policies (podbox run --restart) and exit reasons, through the
// CLI, the shim and runc. The shims of these tests wait
// PODBOX_RESTART_BACKOFF instead of the kubelet's 10 s before a restart.

// inspectedContainer is what these tests read of `podbox inspect`.
type inspectedContainer struct {
	State         string     `json:"state"`
	PID           int        `json:"pid"`
	Bundle        string     `json:"bundle"`
	RestartPolicy string     `json:"restartPolicy"`
	RestartCount  int        `json:"restartCount"`
	NextRestart   *time.Time `json:"nextRestart"`
	RestartError  string     `json:"restartError"`
	Exit          *struct {
		Status int    `json:"status"`
		Reason string `json:"reason"`
	} `json:"exit"`
}

func (n *cliNode) inspectContainer(ref string) inspectedContainer {
	n.t.Helper()
	var c inspectedContainer
	if err := json.Unmarshal([]byte(n.mustRun("inspect", ref)), &c); err != nil {
		n.t.Fatal(err)
	}
	return c
}

// waitContainer polls inspect until ok holds, and fails the test after
// within.
func (n *cliNode) waitContainer(ref, what string, within time.Duration, ok func(inspectedContainer) bool) inspectedContainer {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := n.inspectContainer(ref)
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("container %s not %s within %s: %+v (exit %+v)", ref, what, within, c, c.Exit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withBackoff makes the node's next sandboxes' shims wait base[,cap]
// before restarts.
func (n *cliNode) withBackoff(b string) {
	n.env = append(n.env, "PODBOX_RESTART_BACKOFF="+b)
}

// psRow is ps -a's row of the container named name, its fields joined by
// single spaces.
func (n *cliNode) psRow(name string) string {
	n.t.Helper()
	for _, line := range strings.Split(n.mustRun("ps", "-a"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == name {
			return strings.Join(f, " ")
		}
	}
	n.t.Fatalf("ps -a has no row for %s", name)
	return ""
}

// on-failure:2 restarts a failing container twice, each run's output going
// on in the same log and its writes in the same root, and then leaves it
// stopped with the last exit.
func TestRestartOnFailure(t *testing.T) {
	n := newCLINode(t)
	n.withBackoff("100ms,1s")
	fs := busybox(t)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "flaky", "--restart", "on-failure:2", "--rootfs", fs, "--",
		"sh", "-c", "mkdir -p /data; echo run >> /data/x; echo run $(wc -l < /data/x); exit 3")
	c := n.waitContainer("flaky", "stopped after 2 restarts", 20*time.Second, func(c inspectedContainer) bool {
		return c.State == "stopped" && c.RestartCount == 2
	})
	if c.Exit == nil || c.Exit.Status != 3 || c.Exit.Reason != "Error" || c.RestartPolicy != "on-failure:2" {
		t.Errorf("after the last run: %+v, exit %+v; want exit 3 (Error), policy on-failure:2", c, c.Exit)
	}
	if out := n.mustRun("logs", "flaky"); out != "run 1\nrun 2\nrun 3\n" {
		t.Errorf("log of three runs = %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(fs, "data", "x")); err != nil || string(b) != "run\nrun\nrun\n" {
		t.Errorf("/data/x after three runs = %q, %v", b, err)
	}
	if row := n.psRow("flaky"); !strings.Contains(row, "stopped (3) Error 2 ") {
		t.Errorf("ps -a row %q, want state stopped (3) Error and 2 restarts", row)
	}
	// No third restart comes later.
	time.Sleep(1500 * time.Millisecond)
	if c := n.inspectContainer("flaky"); c.State != "stopped" || c.RestartCount != 2 {
		t.Errorf("1.5 s later: %+v", c)
	}
}

// always restarts a container that exits 0; podbox stop ends that, whether
// the container runs or waits for its next run.
func TestRestartAlwaysUntilStopped(t *testing.T) {
	n := newCLINode(t)
	n.withBackoff("100ms,400ms")
	fs := busybox(t)
	n.sandbox("--name", "pod")
	// sh is PID 1 of its container and ignores stop's SIGTERM: each run
	// ends on its own, after 0.3 s, also the one stop is stopping.
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "loop", "--restart", "always", "--rootfs", fs, "--",
		"sh", "-c", "echo up; sleep 0.3")
	n.waitContainer("loop", "running after 2 restarts", 20*time.Second, func(c inspectedContainer) bool {
		return c.State == "running" && c.RestartCount >= 2
	})
	n.mustRun("stop", "loop")
	c := n.inspectContainer("loop")
	if c.State != "stopped" || c.Exit == nil || c.Exit.Status != 0 || c.Exit.Reason != "Completed" {
		t.Fatalf("after stop: %+v, exit %+v", c, c.Exit)
	}
	time.Sleep(1500 * time.Millisecond) // several back-offs
	if later := n.inspectContainer("loop"); later.State != "stopped" || later.RestartCount != c.RestartCount {
		t.Errorf("restarted after stop: %+v, then %+v", c, later)
	}
	if logs := n.mustRun("logs", "loop"); strings.Count(logs, "up\n") != c.RestartCount+1 {
		t.Errorf("log %q of %d runs", logs, c.RestartCount+1)
	}

	// A container waiting for its restart: shown so, not removed without
	// -f, and stopped for good by stop.
	// Long enough for the checks below to come before the restart would.
	n.withBackoff("3s")
	n.sandbox("--name", "slow")
	n.mustRun("run", "-d", "--sandbox", "slow", "--name", "waiter", "--restart", "always", "--rootfs", fs, "--", "true")
	c = n.waitContainer("waiter", "restarting", 10*time.Second, func(c inspectedContainer) bool { return c.State == "restarting" })
	if c.NextRestart == nil || c.Exit == nil || c.Exit.Reason != "Completed" {
		t.Errorf("waiting for its restart: %+v, exit %+v", c, c.Exit)
	}
	if row := n.psRow("waiter"); !strings.Contains(row, "restarting (0) Completed, in ") {
		t.Errorf("ps -a row %q", row)
	}
	code, _, stderr := n.run("rm", "waiter")
	assertOneLineError(t, code, stderr, `container "waiter"`, "restarting", "-f")
	n.mustRun("stop", "waiter")
	if c := n.inspectContainer("waiter"); c.State != "stopped" || c.NextRestart != nil {
		t.Errorf("after stop while waiting: %+v", c)
	}
	time.Sleep(3500 * time.Millisecond)
	if c := n.inspectContainer("waiter"); c.State != "stopped" || c.RestartCount != 0 {
		t.Errorf("restarted after stop while waiting: %+v", c)
	}
}

// In the foreground, podbox run is attached to the first run only and
// exits with its status; the restarts go on behind it, into the log.
func TestRestartForeground(t *testing.T) {
	n := newCLINode(t)
	n.withBackoff("100ms")
	fs := busybox(t)
	n.sandbox("--name", "pod")
	code, out, stderr := n.run("run", "--sandbox", "pod", "--name", "fg", "--restart", "on-failure:1", "--rootfs", fs, "--",
		"sh", "-c", "echo hi; exit 4")
	if code != 4 || out != "hi\n" || stderr != "" {
		t.Errorf("foreground run: exit %d, stdout %q, stderr %q; want 4, one hi", code, out, stderr)
	}
	n.waitContainer("fg", "stopped after its restart", 10*time.Second, func(c inspectedContainer) bool {
		return c.State == "stopped" && c.RestartCount == 1
	})
	if logs := n.mustRun("logs", "fg"); logs != "hi\nhi\n" {
		t.Errorf("log = %q, want both runs", logs)
	}
}

// A container whose process the OOM killer ends shows reason OOMKilled;
// the same status without the OOM killer is an Error.
func TestRestartOOMKilledReason(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	// dd's 64 MB block is in its memory once read: far over the limit.
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "hog", "--rootfs", fs, "--",
		"sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exec dd if=/dev/zero of=/dev/null bs=64M count=1")
	limitMemory(t, n.inspectContainer("hog").Bundle, 16<<20)
	n.mustRun("exec", "hog", "--", "touch", "/go")
	c := n.waitContainer("hog", "stopped", 10*time.Second, func(c inspectedContainer) bool { return c.State == "stopped" })
	if c.Exit == nil || c.Exit.Status != 137 || c.Exit.Reason != "OOMKilled" {
		t.Errorf("OOM-killed container's exit %+v, want 137 OOMKilled", c.Exit)
	}
	if row := n.psRow("hog"); !strings.Contains(row, "stopped (137) OOMKilled") {
		t.Errorf("ps -a row %q", row)
	}

	if code, _, stderr := n.run("run", "--sandbox", "pod", "--name", "plain", "--rootfs", fs, "--", "sh", "-c", "exit 137"); code != 137 {
		t.Fatalf("run of exit 137: exit %d, %s", code, stderr)
	}
	if c := n.inspectContainer("plain"); c.Exit == nil || c.Exit.Status != 137 || c.Exit.Reason != "Error" {
		t.Errorf("exit 137 without the OOM killer: %+v, want Error", c.Exit)
	}
}

// limitMemory sets the memory limit of the container of bundle in its
// cgroup (run has no --memory here), in the v1 memory hierarchy or the
// unified one, whichever holds the memory controller.
func limitMemory(t *testing.T, bundle string, limit int) {
	t.Helper()
	var spec struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil || spec.Linux.CgroupsPath == "" {
		t.Fatalf("cgroup of %s: %v", bundle, err)
	}
	v := []byte(strconv.Itoa(limit))
	if dir := filepath.Join("/sys/fs/cgroup/memory", spec.Linux.CgroupsPath); exists(dir) {
		for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil && !os.IsNotExist(err) {
				t.Fatalf("limit %s: %v", dir, err)
			}
		}
		return
	}
	dir := filepath.Join("/sys/fs/cgroup", spec.Linux.CgroupsPath)
	for _, f := range []string{"memory.max", "memory.swap.max"} {
		val := v
		if f == "memory.swap.max" {
			val = []byte("0")
		}
		if err := os.WriteFile(filepath.Join(dir, f), val, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatalf("limit %s: %v", dir, err)
		}
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// A restart that is due is never done once the sandbox is stopped or
// removed: after sandbox stop the container stays stopped, and sandbox
// rm -f leaves nothing (the leak check).
func TestRestartPendingSandboxStopAndRemove(t *testing.T) {
	n := newCLINode(t)
	// Long enough for the sandboxes to be stopped and removed before the
	// restarts would come.
	n.withBackoff("3s")
	fs := busybox(t)
	sandboxes := []string{"stopped", "removed"}
	for _, sb := range sandboxes {
		n.sandbox("--name", sb)
	}
	for _, sb := range sandboxes {
		n.mustRun("run", "-d", "--sandbox", sb, "--name", sb+"-c", "--restart", "always", "--rootfs", fs, "--", "true")
	}
	for _, sb := range sandboxes {
		n.waitContainer(sb+"-c", "restarting", 10*time.Second, func(c inspectedContainer) bool { return c.State == "restarting" })
	}
	n.mustRun("sandbox", "stop", "stopped")
	if c := n.inspectContainer("stopped-c"); c.State != "stopped" || c.NextRestart != nil {
		t.Errorf("container of a stopped sandbox still waits for its restart: %+v", c)
	}
	n.mustRun("sandbox", "rm", "-f", "removed")
	time.Sleep(3500 * time.Millisecond)
	// Not even tried: a restart in a sandbox without its pause would fail.
	if c := n.inspectContainer("stopped-c"); c.State != "stopped" || c.RestartCount != 0 || c.RestartError != "" {
		t.Errorf("container of a stopped sandbox: %+v", c)
	}
	n.mustRun("sandbox", "rm", "-f", "stopped")
	// A shim exits a moment after it answered the removal.
	if !waitUntil(5*time.Second, func() bool { return len(n.shims()) == 0 }) {
		t.Errorf("shims left: %v", n.shims())
	}
}

// A restarted container keeps its root: an image's writable layer stays
// mounted across runs, and a terminal's output goes on into the log.
func TestRestartImageWithTerminal(t *testing.T) {
	n := newCLINode(t)
	n.withBackoff("100ms")
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t))
	var cf *v1.ConfigFile
	if err == nil {
		cf, err = img.ConfigFile()
	}
	if err == nil {
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Config.Env = "linux", "amd64", []string{"PATH=/bin"}
		img, err = mutate.ConfigFile(img, cf)
	}
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("example.com/restart/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(saved, tag, img); err != nil {
		t.Fatal(err)
	}
	n.mustRun("image", "load", "-q", "-i", saved)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "-t", "--sandbox", "pod", "--name", "tty", "--restart", "on-failure:1", "--image", tag.String(), "--",
		"sh", "-c", "echo run >> /x; echo runs $(wc -l < /x); exit 1")
	c := n.waitContainer("tty", "stopped after its restart", 10*time.Second, func(c inspectedContainer) bool {
		return c.State == "stopped" && c.RestartCount == 1
	})
	if c.RestartError != "" || c.Exit == nil || c.Exit.Status != 1 {
		t.Errorf("after the restart: %+v, exit %+v", c, c.Exit)
	}
	if logs := n.mustRun("logs", "tty"); logs != "runs 1\r\nruns 2\r\n" {
		t.Errorf("log of two runs on a terminal = %q", logs)
	}
	n.mustRun("rm", "tty")
	n.pruneAll("after the restarted container")
}
