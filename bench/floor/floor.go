// Package floor is the benchmark's lower bound: what a sandbox or a
// container costs with no daemon, no shim and no CLI in the way. A floor
// sandbox is `runc run -d` of a bundle running podbox-pause in a network
// namespace that netsetup attached to a bridge (in process); a floor
// container is `runc run -d` of a busybox rootfs joining that pause's
// namespaces. It owns its runc root, bundles, bridge and cgroup parent, and
// removes them; it never touches podbox's or containerd's state.
package floor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/sandbox"
)

// Floor runs floor sandboxes and containers.
type Floor struct {
	// Runc is the runc binary.
	Runc string
	// Dir holds the runc root, the pause root and one bundle per ID.
	Dir string
	// Net is the network floor sandboxes are attached to. It must not be
	// podbox's (its own bridge and state root), or leases would mix.
	Net netsetup.Network
	// CgroupParent is the cgroup every floor container is put below.
	CgroupParent string
}

func (f *Floor) root() string            { return filepath.Join(f.Dir, "runc") }
func (f *Floor) bundle(id string) string { return filepath.Join(f.Dir, "bundles", id) }
func (f *Floor) pin(id string) string    { return filepath.Join(f.bundle(id), "netns") }

// Prepare makes the pause root (holding a copy of pause as /pause) and the
// runc root.
func (f *Floor) Prepare(pause string) error {
	if err := sandbox.PrepareRootDir(f.pauseRoot(), pause); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	// Mount points of the pause's bundle, made now: the root is read-only
	// when runc mounts /dev and /proc.
	for _, d := range []string{"dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(f.pauseRoot(), d), 0o755); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
	}
	if err := os.MkdirAll(f.root(), 0o700); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	return nil
}

func (f *Floor) pauseRoot() string { return filepath.Join(f.Dir, "pause-root") }

// Ready builds floor sandbox id: its bundle is written first (not timed),
// then the timed part: netsetup attaches a fresh namespace to the bridge
// and `runc run -d` starts the pause in it.
func (f *Floor) Ready(ctx context.Context, id string) (time.Duration, error) {
	spec := f.pauseSpec(id)
	if err := writeBundle(f.bundle(id), spec); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := f.Net.Setup(ctx, id, f.pin(id)); err != nil {
		return 0, fmt.Errorf("floor sandbox %s: %w", id, err)
	}
	if err := f.runc(ctx, f.bundle(id), "run", "-d", "--pid-file", filepath.Join(f.bundle(id), "pid"), "--bundle", f.bundle(id), id); err != nil {
		return 0, fmt.Errorf("floor sandbox %s: %w", id, err)
	}
	return time.Since(start), nil
}

// PausePID returns the pause's PID of floor sandbox id.
func (f *Floor) PausePID(id string) (int, error) {
	b, err := os.ReadFile(filepath.Join(f.bundle(id), "pid"))
	if err != nil {
		return 0, fmt.Errorf("floor sandbox %s: %w", id, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Remove kills and deletes floor sandbox id and detaches its network. It
// is idempotent.
func (f *Floor) Remove(ctx context.Context, id string) (time.Duration, error) {
	start := time.Now()
	if err := f.delete(ctx, id); err != nil {
		return 0, err
	}
	if err := f.Net.Teardown(ctx, id, f.pin(id)); err != nil {
		return 0, fmt.Errorf("floor %s: %w", id, err)
	}
	d := time.Since(start)
	if err := os.RemoveAll(f.bundle(id)); err != nil {
		return d, fmt.Errorf("floor %s: %w", id, err)
	}
	return d, nil
}

// RemoveContainer kills and deletes floor container id and its bundle.
func (f *Floor) RemoveContainer(ctx context.Context, id string) error {
	if err := f.delete(ctx, id); err != nil {
		return err
	}
	return os.RemoveAll(f.bundle(id))
}

// delete kills id, then deletes it: delete --force of a live container
// polls for its death in 100 ms steps, a kill first spares that.
func (f *Floor) delete(ctx context.Context, id string) error {
	_ = f.runc(ctx, "", "kill", id, strconv.Itoa(int(syscall.SIGKILL)))
	if err := f.runc(ctx, "", "delete", "--force", id); err != nil && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("floor %s: %w", id, err)
	}
	return nil
}

// Run starts floor container id from rootfs joining the network, IPC and
// UTS namespaces of process joinPID (a floor pause): the raw `runc run -d`
// that `podbox run -d` is compared with. Only runc is timed.
func (f *Floor) Run(ctx context.Context, id, rootfs string, joinPID int, args ...string) (time.Duration, error) {
	spec := f.containerSpec(id, rootfs, joinPID, args)
	if err := writeBundle(f.bundle(id), spec); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := f.runc(ctx, f.bundle(id), "run", "-d", "--bundle", f.bundle(id), id); err != nil {
		return 0, fmt.Errorf("floor container %s: %w", id, err)
	}
	return time.Since(start), nil
}

// Cleanup removes every container left in the floor's runc root (and their
// networks) and the cgroup parent, and reports what it had to remove.
func (f *Floor) Cleanup(ctx context.Context) []string {
	var msgs []string
	out, err := exec.CommandContext(ctx, f.Runc, "--root", f.root(), "list", "-q").Output()
	if err == nil {
		for _, id := range strings.Fields(string(out)) {
			msgs = append(msgs, "floor: removing leftover "+id)
			if _, err := f.Remove(ctx, id); err != nil {
				msgs = append(msgs, err.Error())
			}
		}
	}
	bundles, _ := os.ReadDir(filepath.Join(f.Dir, "bundles"))
	for _, b := range bundles {
		if err := f.Net.Teardown(ctx, b.Name(), f.pin(b.Name())); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if err := (sandbox.Cgroup{Path: f.CgroupParent}).Remove(); err != nil {
		msgs = append(msgs, fmt.Sprintf("floor: cgroup %s: %v", f.CgroupParent, err))
	}
	return msgs
}

// runc runs `runc --root ROOT args…`. Its stdio must not be pipes: a
// detached container inherits them and would hold them open, so output goes
// to a file in dir (the bundle), read back on failure.
func (f *Floor) runc(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, f.Runc, append([]string{"--root", f.root()}, args...)...)
	var errb bytes.Buffer
	if dir != "" {
		out, err := os.Create(filepath.Join(dir, "runc.out"))
		if err != nil {
			return err
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
	} else {
		cmd.Stdout, cmd.Stderr = &errb, &errb
	}
	if err := cmd.Run(); err != nil {
		msg := errb.String()
		if dir != "" {
			b, _ := os.ReadFile(filepath.Join(dir, "runc.out"))
			msg = string(b)
		}
		return fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(msg))
	}
	return nil
}

func writeBundle(dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("floor bundle %s: %w", dir, err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("floor bundle %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("floor bundle %s: %w", dir, err)
	}
	return nil
}

// pauseSpec runs the pause as podbox does (sandbox.StartPause): uid 65535,
// no capabilities, no_new_privs, read-only root holding only the pause, in
// new PID, IPC, UTS and mount namespaces and the attached network
// namespace.
func (f *Floor) pauseSpec(id string) *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			User:            specs.User{UID: sandbox.PauseUID, GID: sandbox.PauseGID},
			Args:            []string{"/pause"},
			Env:             []string{"GOMAXPROCS=1"},
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: f.pauseRoot(), Readonly: true},
		Hostname: id[:min(len(id), 12)],
		// runc itself needs /proc in the container (it closes the exec
		// fds through /proc/self/fd), and makes device nodes under /dev.
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=64k"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + f.CgroupParent + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: f.pin(id)},
			},
		},
	}
}

// containerSpec is `podbox run`'s container (runc spec's defaults,
// containerd's capabilities) joined to the pause by namespace paths.
func (f *Floor) containerSpec(id, rootfs string, joinPID int, args []string) *specs.Spec {
	caps := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
	ns := func(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", joinPID, kind) }
	return &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Args:            args,
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:             "/",
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root: &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + f.CgroupParent + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: ns("net")}, {Type: specs.IPCNamespace, Path: ns("ipc")},
				{Type: specs.UTSNamespace, Path: ns("uts")},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}
