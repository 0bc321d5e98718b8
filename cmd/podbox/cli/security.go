package cli

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// seccompUnconfined is --security-opt seccomp=unconfined, as the record
// keeps it: no seccomp filter.
const seccompUnconfined = "unconfined"

// parseSecurityOpts reads run's --security-opt values: only
// seccomp=unconfined and seccomp=PROFILE (a file, docker's JSON format) are
// known. It returns the seccomp choice, "" for the default profile; the
// last one given counts, as in docker.
func parseSecurityOpts(opts []string) (string, error) {
	choice := ""
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k != "seccomp" {
			return "", fmt.Errorf("--security-opt %q: unknown option (want seccomp=unconfined or seccomp=PROFILE.json)", o)
		}
		if v == "" {
			return "", fmt.Errorf("--security-opt %q: no profile (want seccomp=unconfined or seccomp=PROFILE.json)", o)
		}
		if v != seccompUnconfined {
			abs, err := filepath.Abs(v)
			if err != nil {
				return "", fmt.Errorf("--security-opt %q: %w", o, err)
			}
			v = abs
		}
		choice = v
	}
	return choice, nil
}

// seccompProfile is the seccomp filter of a container whose bounding set is
// caps, by the choice parseSecurityOpts made: the default profile docker and
// containerd apply (moby's own definition, which allows a call that needs a
// capability only to a container that has it), none, or the profile in a
// file, read and checked now so that a bad one fails the run before
// anything is made. nil is no filter.
func seccompProfile(choice string, caps []string) (*specs.LinuxSeccomp, error) {
	// moby's profiles decide by the spec's bounding set alone.
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	switch choice {
	case "":
		p, err := seccomp.GetDefaultProfile(spec)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		return p, nil
	case seccompUnconfined:
		return nil, nil
	}
	b, err := os.ReadFile(choice)
	if err != nil {
		return nil, fmt.Errorf("--security-opt seccomp=%s: %w", choice, err)
	}
	p, err := seccomp.LoadProfile(string(b), spec)
	if err != nil {
		return nil, fmt.Errorf("--security-opt seccomp=%s: %w", choice, err)
	}
	if p == nil || p.DefaultAction == "" {
		// moby takes a profile with neither a default action nor rules
		// for "no filter", and passes on rules without a default action,
		// which runc refuses. A file meant to say "no filter" would say
		// unconfined, so either is a mistake.
		return nil, fmt.Errorf("--security-opt seccomp=%s: no defaultAction (for no filter at all use seccomp=unconfined)", choice)
	}
	return p, nil
}

// applyPrivileged gives spec what docker's --privileged gives: no seccomp
// filter (set by the caller), every capability of the bounding set (the
// caller's caps), no masked or read-only paths in /proc and /sys, /sys and
// its cgroup mount writable, and every device of the host's /dev, which its
// device cgroup lets it use.
func applyPrivileged(spec *specs.Spec, devices []specs.LinuxDevice) {
	spec.Linux.MaskedPaths = nil
	spec.Linux.ReadonlyPaths = nil
	for i, m := range spec.Mounts {
		if m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup" {
			spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			spec.Mounts[i].Options = append(spec.Mounts[i].Options, "rw")
		}
	}
	spec.Linux.Devices = append(spec.Linux.Devices, devices...)
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	spec.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
}

// hostDevices lists the device nodes under dir (the host's /dev), as
// containerd's WithHostDevices does for a privileged container: not those
// of the directories a container gets its own of (pts, shm, mqueue), nor
// the console.
func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	var devs []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // gone meanwhile
			}
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return fs.SkipDir
			}
			return nil
		}
		if path == filepath.Join(dir, "console") {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		var typ string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil // symlinks and other files
		}
		mode := fs.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		devs = append(devs, specs.LinuxDevice{
			Path: "/dev" + strings.TrimPrefix(path, dir), Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--privileged: list the host's devices: %w", err)
	}
	return devs, nil
}
