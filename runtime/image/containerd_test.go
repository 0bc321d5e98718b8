package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	ctrd "github.com/podbox/podbox/integration/containerd"
	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
)

func TestMain(m *testing.M) { testnode.Main(m) }

// TestContainerdImportsPauseImage imports the pause image into a throwaway
// containerd (Debian's 1.6, and containerd 2.x) under the k8s.io namespace CRI uses, checks the image is complete, and
// runs it: /pause must start as uid 65535 from the image's own entrypoint and
// exit 0 on SIGTERM. containerd runs inside a test node namespace, and the
// container gets its own network namespace from runc.
func TestContainerdImportsPauseImage(t *testing.T) {
	testnode.RequirePrivileged(t)
	for _, b := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2", "nsenter"} {
		if _, err := exec.LookPath(b); err != nil {
			testnode.Skip(t, "%s is not installed (run `make deps`)", b)
		}
	}
	pause := testnode.Binary(t, "podbox-pause")
	archive := filepath.Join(t.TempDir(), "podbox-pause.tar")
	const ref = "localhost/podbox/pause:test"
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	d, err := WritePauseImage(f, pause, ref)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: manifest %s, layer %s, diff_id %s", ref, d.Manifest, d.Layer, d.DiffID)

	t.Run("containerd-1.6", func(t *testing.T) {
		testImport(t, "containerd", archive, ref, d)
	})
	t.Run("containerd-2", func(t *testing.T) {
		// Built on demand when `make containerd2` has not: never skipped.
		testImport(t, ctrd.V2Binary(t), archive, ref, d)
	})
}

func testImport(t *testing.T, containerdBin, archive, ref string, d Digests) {
	node := testnode.New(t)
	base := t.TempDir()
	leakcheck.Check(t, leakcheck.Options{Root: base, Node: node})
	c := startContainerd(t, node, containerdBin, base)

	t.Logf("ctr version:\n%s", c.ctr(t, "version"))
	out := c.ctr(t, "images", "import", archive)
	t.Logf("ctr images import: %s", out)
	c.cleanup(t, "images", "rm", ref)
	if ls := c.ctr(t, "images", "ls"); !strings.Contains(ls, ref) || !strings.Contains(ls, d.Manifest) {
		t.Fatalf("ctr images ls does not show %s %s:\n%s", ref, d.Manifest, ls)
	} else {
		t.Logf("ctr images ls:\n%s", ls)
	}
	if check := c.ctr(t, "images", "check"); !strings.Contains(check, "complete") {
		t.Errorf("ctr images check: image not complete:\n%s", check)
	} else {
		t.Logf("ctr images check:\n%s", check)
	}

	// The container's cgroup is a leaf of its own, so that runc's delete
	// leaves nothing (ctr's default, /k8s.io/ID, would leave k8s.io behind).
	id := fmt.Sprintf("pbx-pause-%d", os.Getpid())
	cgroup := "/podbox-image-test-" + id
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// runc's state and ctr's stdio FIFOs go under base too, not under
	// /run/containerd where they would default.
	run := c.command(ctx, "run", "--rm", "--runc-root", filepath.Join(base, "runc"),
		"--fifo-dir", filepath.Join(base, "fifo"), "--cgroup", cgroup, ref, id)
	var runOut bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatalf("ctr run: %v", err)
	}
	// runDone is closed when ctr run has exited, with its error in runErr.
	runDone := make(chan struct{})
	var runErr error
	go func() { runErr = run.Wait(); close(runDone) }()
	t.Cleanup(func() {
		select {
		case <-runDone:
		default:
			c.ctrQuiet("task", "kill", "--signal", "SIGKILL", id)
			<-runDone
			c.ctrQuiet("task", "rm", "-f", id)
			c.ctrQuiet("containers", "rm", id)
		}
	})

	pid, err := c.taskPID(ctx, id)
	if err != nil {
		t.Fatalf("container %s did not start: %v; ctr run: %s", id, err, runOut.String())
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("container %s: read its process status: %v", id, err)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if got := string(bytes.TrimRight(cmdline, "\x00")); got != "/pause" {
		t.Errorf("container %s runs %q, want the entrypoint /pause", id, got)
	}
	for _, want := range []string{"Uid:\t65535\t65535\t65535\t65535", "Gid:\t65535\t65535\t65535\t65535"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("container %s: process status lacks %q:\n%s", id, want, status)
		}
	}
	t.Logf("container %s: pid %d runs %q as uid/gid 65535", id, pid, bytes.TrimRight(cmdline, "\x00"))
	c.ctr(t, "task", "kill", "--signal", "SIGTERM", id)
	select {
	case <-runDone:
		if runErr != nil {
			t.Errorf("ctr run (pause after SIGTERM): %v, want exit 0: %s", runErr, runOut.String())
		} else {
			t.Logf("container %s: exited 0 on SIGTERM", id)
		}
	case <-ctx.Done():
		t.Fatalf("container %s: pause did not exit on SIGTERM", id)
	}
	for _, p := range cgroupPaths(cgroup) {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("container %s: cgroup %s left behind", id, p)
		}
	}
}

// containerd is one throwaway containerd: its own root, state and sockets,
// no CRI plugin.
type containerd struct {
	sock string
	node *testnode.Node
}

// startContainerd starts containerdBin in node with everything under base,
// and registers its stop and the removal of everything it left.
func startContainerd(t *testing.T, node *testnode.Node, containerdBin, base string) *containerd {
	t.Helper()
	// A unix socket path must fit in 108 bytes; t.TempDir's may not.
	sockDir, err := os.MkdirTemp("/tmp", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	c := &containerd{sock: filepath.Join(sockDir, "c.sock"), node: node}
	root, state := filepath.Join(base, "root"), filepath.Join(base, "state")
	// Plugins that would reach outside base, load kernel modules or need
	// what this test does not provide are off: CRI (CNI, image pulls),
	// opt (/opt/containerd), and the snapshotters other than overlayfs.
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, root, state, c.sock, c.sock+".ttrpc")
	cfg := filepath.Join(base, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(base, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := node.Command(context.Background(), containerdBin, "--config", cfg, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", containerdBin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM makes containerd close its database and sockets; nsenter
		// forwards it and exits with containerd.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop on SIGTERM; killed", containerdBin)
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", containerdBin, b)
			}
		}
		// The snapshotter mounts only while unpacking, so nothing should be
		// mounted; anything that is would keep base from being removed.
		for _, m := range mountsUnder(base) {
			t.Errorf("mount %s left by containerd; unmounting", m)
			unix.Unmount(m, unix.MNT_DETACH)
		}
		// leakcheck (which runs next) wants base empty: everything in it
		// belonged to this containerd.
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(base, e.Name())); err != nil {
				t.Errorf("remove containerd's %s: %v", e.Name(), err)
			}
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.command(context.Background(), "version").Run(); err == nil {
			return c
		}
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited: %v\n%s", containerdBin, err, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s: no answer on %s after 10s\n%s", containerdBin, c.sock, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) command(ctx context.Context, args ...string) *exec.Cmd {
	return c.node.Command(ctx, "ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...)
}

// ctr runs a ctr command and fails the test if it fails.
func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := c.command(ctx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// ctrQuiet runs a best-effort ctr command of a cleanup.
func (c *containerd) ctrQuiet(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.command(ctx, args...).Run()
}

// cleanup registers a ctr command that must succeed at the end of the test
// (before containerd stops, as cleanups run last-registered first).
func (c *containerd) cleanup(t *testing.T, args ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := c.command(ctx, args...).CombinedOutput(); err != nil {
			t.Errorf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
}

// taskPID waits until task id runs and returns its PID (ctr task ls:
// "TASK PID STATUS").
func (c *containerd) taskPID(ctx context.Context, id string) (int, error) {
	var last string
	for ctx.Err() == nil {
		out, err := c.command(ctx, "task", "ls").CombinedOutput()
		last = string(out)
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				var task, status string
				var pid int
				if n, _ := fmt.Sscan(sc.Text(), &task, &pid, &status); n == 3 && task == id && status == "RUNNING" {
					return pid, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, errors.New("ctr task ls never showed it RUNNING:\n" + last)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		if m := fields[4]; m == dir || strings.HasPrefix(m, dir+"/") {
			ms = append([]string{m}, ms...)
		}
	}
	return ms
}

// cgroupPaths are where a cgroupfs path lives in every hierarchy (v1
// controllers, the unified v2 mount, or a pure v2 root).
func cgroupPaths(path string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var ps []string
	for _, r := range roots {
		ps = append(ps, filepath.Join(r, path))
	}
	return ps
}
