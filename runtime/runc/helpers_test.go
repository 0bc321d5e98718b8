package runc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/rootfs"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/runtime/reaper"
)

// The test binary has one reaper, as the shim has: two reap loops in one
// process would steal each other's children. The busybox rootfs is built
// before it starts (BuildBusybox runs a command through os/exec, whose own
// wait the reaper would race) and shared, read-write, by every container.
var (
	testReaper *reaper.Reaper
	testRootfs string
)

func TestMain(m *testing.M) {
	// Keep tests off the main thread: see testnode.Main.
	runtime.LockOSThread()
	code := func() int {
		if os.Geteuid() == 0 {
			if _, err := os.Stat(rootfs.Busybox); err == nil {
				dir, err := os.MkdirTemp("", "podbox-runc-rootfs")
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				defer os.RemoveAll(dir)
				if err := rootfs.BuildBusybox(dir, "podbox\n"); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				testRootfs = dir
			}
		}
		r, err := reaper.New()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer r.Close()
		testReaper = r
		return m.Run()
	}()
	os.Exit(code)
}

// env is one privileged test's world: a node netns for its containers, a runc
// state root, a cgroup parent, all checked for leaks at the end.
type env struct {
	t        testing.TB
	rt       *Runtime
	node     *testnode.Node
	dir      string
	cgParent string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	node := testnode.New(t)
	testnode.RequireBinary(t, "runc")
	if testRootfs == "" {
		testnode.Skip(t, "no busybox rootfs (install busybox-static: make deps)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "runc")
	e := &env{t: t, node: node, dir: dir, rt: New(testReaper, "", root), cgParent: "podbox-test-" + randHex()}
	if tt, ok := t.(*testing.T); ok {
		leakcheck.Check(tt, leakcheck.Options{Root: root, Node: node, CgroupParent: e.cgParent})
	}
	// Runs before the leak check: the parent cgroup is the test's own.
	t.Cleanup(e.removeCgroupParent)
	return e
}

func randHex() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// removeCgroupParent removes the test's cgroup parent from every hierarchy
// (runc delete removes each container's own cgroup, not the parent it made).
func (e *env) removeCgroupParent() {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup") {
			continue
		}
		mnt := strings.Fields(pre)[4]
		p := filepath.Join(mnt, e.cgParent)
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			e.t.Errorf("remove cgroup parent %s: %v", p, err)
		}
	}
}

// bundle writes an OCI bundle running args in the node's network namespace,
// and registers a forced delete of the container id as cleanup.
func (e *env) bundle(id string, terminal bool, args ...string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	b, err := json.MarshalIndent(e.spec(id, terminal, args...), "", "\t")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.rt.Delete(ctx, id, true); err != nil {
			e.t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// spec is what `runc spec` generates, with the namespaces a podbox container
// has (its own pid and mount, a network namespace we created) and the host's
// limits respected (no rlimit above 20000, no negative oomScoreAdj).
func (e *env) spec(id string, terminal bool, args ...string) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: terminal,
			User:     specs.User{UID: 0, GID: 0},
			Args:     args,
			Env:      []string{"PATH=/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: testRootfs, Readonly: false},
		Hostname: "podbox-test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + e.cgParent + "/" + id,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: e.node.Path},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func waitExit(t testing.TB, p Process) reaper.Exit {
	t.Helper()
	select {
	case e := <-p.Exited:
		return e
	case <-time.After(20 * time.Second):
		t.Fatalf("process %d never exited", p.Pid)
		return reaper.Exit{}
	}
}
