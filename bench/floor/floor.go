// Package floor is the benchmark's lower bound: what a sandbox or a
// container costs with no daemon, no shim and no CLI in the way. A floor
// sandbox is `runc run -d` of a bundle running podbox-pause in a network
// namespace that netsetup attached to a bridge (in process); a floor
// container is `runc run -d` of the very spec podbox gave runc for the same
// container (captured from podbox, see JoinSpec), joining that pause's
// namespaces instead of podbox's. It owns its runc root, bundles, bridge
// and cgroup parent, and removes them; it never touches podbox's or
// containerd's state.
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
	// runc removed the pause's cgroup; the sandbox's goes too, as in
	// podbox's teardown.
	if err := (sandbox.Cgroup{Path: f.sandboxCgroup(id)}).Remove(); err != nil {
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

// JoinSpec returns the spec of the containers that join floor sandbox sb,
// made from podbox's: the config.json that podbox's shim handed runc for a
// container of the same command (subject.Podbox.Spec), after joining it to
// its sandbox. Only what must differ is changed: the namespaces joined are
// sb's pause's, and the /etc files and /dev/shm bound into the container
// are sb's own; Run gives each container its cgroup below sb's, as
// podbox does. Taking the spec from podbox rather than writing one here
// keeps the two the same container: a floor with a lighter spec (no
// /sys/fs/cgroup mount, no /etc binds, fewer masked paths) measured less
// work, not less overhead, and the two cannot drift apart again.
func (f *Floor) JoinSpec(podbox *specs.Spec, sb string) (*specs.Spec, error) {
	if podbox.Linux == nil {
		return nil, fmt.Errorf("floor sandbox %s: podbox's spec has no linux section", sb)
	}
	// A deep copy: the caller's spec stays podbox's.
	b, err := json.Marshal(podbox)
	if err != nil {
		return nil, fmt.Errorf("floor sandbox %s: %w", sb, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("floor sandbox %s: %w", sb, err)
	}
	pid, err := f.PausePID(sb)
	if err != nil {
		return nil, err
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		if ns.Type == specs.NetworkNamespace {
			// podbox joins its sandbox's pinned namespace, the floor its own pin.
			spec.Linux.Namespaces[i].Path = f.pin(sb)
			continue
		}
		file := nsFile(ns.Type)
		if file == "" {
			return nil, fmt.Errorf("floor sandbox %s: podbox's spec joins a %s namespace, which the floor cannot map", sb, ns.Type)
		}
		spec.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", pid, file)
	}
	etc := filepath.Join(f.bundle(sb), "etc")
	for i, m := range spec.Mounts {
		if m.Type == "bind" && m.Destination == "/dev/shm" {
			// podbox's sandbox's /dev/shm: the floor sandbox's
			// containers share a directory of its own instead, the
			// same bind for runc.
			own := filepath.Join(f.bundle(sb), "shm")
			if err := os.MkdirAll(own, 0o700); err != nil {
				return nil, fmt.Errorf("floor sandbox %s: /dev/shm: %w", sb, err)
			}
			if err := os.Chmod(own, 0o777|os.ModeSticky); err != nil {
				return nil, fmt.Errorf("floor sandbox %s: /dev/shm: %w", sb, err)
			}
			spec.Mounts[i].Source = own
			continue
		}
		if m.Type != "bind" || filepath.Dir(m.Destination) != "/etc" {
			continue
		}
		own := filepath.Join(etc, filepath.Base(m.Destination))
		if err := copyFile(m.Source, own); err != nil {
			return nil, fmt.Errorf("floor sandbox %s: %s: %w", sb, m.Destination, err)
		}
		spec.Mounts[i].Source = own
	}
	return &spec, nil
}

// nsFile names the /proc/PID/ns file of a namespace type other than the
// network's, or "" for one it does not know.
func nsFile(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace:
		return string(t)
	case specs.MountNamespace:
		return "mnt"
	}
	return ""
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// Run starts floor container id in floor sandbox sb from spec (JoinSpec's),
// in a cgroup of its own below sb's: the raw `runc run -d` that
// `podbox run -d` is compared with. Only runc is timed.
func (f *Floor) Run(ctx context.Context, id, sb string, spec *specs.Spec) (time.Duration, error) {
	s, linux := *spec, *spec.Linux
	linux.CgroupsPath = f.containerCgroup(sb, id)
	s.Linux = &linux
	if err := writeBundle(f.bundle(id), &s); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := f.runc(ctx, f.bundle(id), "run", "-d", "--bundle", f.bundle(id), id); err != nil {
		return 0, fmt.Errorf("floor container %s: %w", id, err)
	}
	return time.Since(start), nil
}

// sandboxCgroup is floor sandbox sb's cgroup: its pause runs in "pause"
// below it and its containers beside that, as in podbox (sandbox.Node's
// SandboxCgroup and ContainerCgroupsPath).
func (f *Floor) sandboxCgroup(sb string) string { return f.CgroupParent + "/" + sb }

func (f *Floor) containerCgroup(sb, id string) string { return "/" + f.sandboxCgroup(sb) + "/" + id }

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
			CgroupsPath: f.containerCgroup(id, "pause"),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: f.pin(id)},
			},
		},
	}
}
