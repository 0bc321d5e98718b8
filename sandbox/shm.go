package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ShmDir is the directory, in a sandbox's state directory, where the
// sandbox's /dev/shm is mounted: one tmpfs that every container of the
// sandbox gets at /dev/shm, as a Kubernetes pod's containers share one.
const ShmDir = "shm"

// shmOptions are the sandbox's /dev/shm's, those of the /dev/shm that
// containerd's CRI makes for a pod (64 MiB).
const shmOptions = "mode=1777,size=65536k"

// shmPath is where sandbox sb's /dev/shm is mounted.
func (n Node) shmPath(sb *Sandbox) string {
	return filepath.Join(n.Store.SandboxDir(sb.ID), ShmDir)
}

// isDefaultShm tells whether m is the /dev/shm that an OCI spec's defaults
// bring (a tmpfs named "shm", as `runc spec`, containerd and the podbox CLI
// write it): a container's own, which the sandbox's replaces. Any other
// mount at /dev/shm was asked for, by a user or by CRI, and stays.
func isDefaultShm(m specs.Mount) bool {
	return filepath.Clean(m.Destination) == "/dev/shm" && m.Type == "tmpfs" && m.Source == "shm"
}

// ShareShm binds the /dev/shm of sandbox sb in spec, in place of the
// spec's default one (isDefaultShm) or where it has none; MountShm then
// makes it. A /dev/shm the spec asks for otherwise stays: a user's mount,
// or CRI's bind of the pod's own (containerd 1.6 and podsandbox make it)
// or of the node's (hostIPC). A sandbox in the node's IPC namespace shares
// the node's /dev/shm, which is not the sandbox's to give: its containers
// keep what their spec says.
func (n Node) ShareShm(spec *specs.Spec, sb *Sandbox) {
	if sb.Host.IPC {
		return
	}
	at := -1
	for i, m := range spec.Mounts {
		if filepath.Clean(m.Destination) != "/dev/shm" {
			continue
		}
		if !isDefaultShm(m) {
			return
		}
		at = i
	}
	m := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: n.shmPath(sb),
		Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"}}
	if at >= 0 {
		spec.Mounts[at] = m
	} else {
		spec.Mounts = append(spec.Mounts, m)
	}
}

// MountShm mounts the /dev/shm of sandbox sb if spec binds it (Join or
// ShareShm put it there) and it is not mounted yet: the first container
// that joins makes it, so that a sandbox create does no more work.
func (n Node) MountShm(spec *specs.Spec, sb *Sandbox) error {
	p := n.shmPath(sb)
	if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Type == "bind" && m.Source == p }) {
		return nil
	}
	if err := n.mountShm(sb); err != nil {
		return fmt.Errorf("sandbox %q: /dev/shm: %w", sb.Name, err)
	}
	return nil
}

// mountShm mounts sb's /dev/shm unless it is mounted already. Containers
// of one sandbox are created concurrently: a lock on the sandbox's
// directory keeps two of them from mounting one each.
func (n Node) mountShm(sb *Sandbox) error {
	dir := n.Store.SandboxDir(sb.ID)
	p := n.shmPath(sb)
	if ok, err := isMountedOn(p, dir); ok || err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	if ok, err := isMountedOn(p, dir); ok || err != nil {
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Mount("shm", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, shmOptions); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", p, err)
	}
	return nil
}

// isMountedOn tells whether a file system other than parent's is mounted
// on p, a directory in parent; a p that does not exist is not.
func isMountedOn(p, parent string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	if err := unix.Stat(parent, &pst); err != nil {
		return false, fmt.Errorf("stat %s: %w", parent, err)
	}
	return st.Dev != pst.Dev, nil
}

// unmountShm unmounts the /dev/shm of the sandbox whose state directory is
// dir, so that its removal can delete it; one never mounted is fine.
// Containers still running keep their own view of it until they end.
func unmountShm(dir string) error {
	return unmountAll(filepath.Join(dir, ShmDir))
}

// unmountAll unmounts every mount stacked on p; none is fine.
func unmountAll(p string) error {
	for range 8 { // stacked mounts come off one at a time
		err := unix.Unmount(p, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return nil
}
