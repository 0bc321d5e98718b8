package sandbox

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MinMemory is the smallest memory limit a sandbox or container may have:
// Docker's, below which a container's runtime cannot even start it.
const MinMemory = 6 << 20

// MinCPUs is the smallest CPU limit: a quota of 1 ms per CFS period, the
// kernel's minimum.
const MinCPUs = 0.01

// CPUPeriod is the CFS period, in microseconds, of every CPU limit podbox
// sets: the kernel's default, and Docker's and Kubernetes'.
const CPUPeriod = 100000

// Resources are cgroup limits, as a user asked for them: a sandbox's (its
// memory and CPUs, shared by all its containers) or a container's.
type Resources struct {
	// Memory is the limit in bytes, swap included; 0 is none.
	Memory int64 `json:"memory,omitempty"`
	// CPUs is CPU time per CPUPeriod, in CPUs: 0.5 is half of one; 0 is
	// none.
	CPUs float64 `json:"cpus,omitempty"`
	// PidsLimit is the most tasks (processes and threads) at once; 0 is
	// none. Containers only.
	PidsLimit int64 `json:"pidsLimit,omitempty"`
}

// IsZero reports whether r limits nothing.
func (r Resources) IsZero() bool { return r == Resources{} }

// Validate checks r against the kernel's and podbox's bounds.
func (r Resources) Validate() error {
	switch {
	case r.Memory < 0 || r.Memory > 0 && r.Memory < MinMemory:
		return fmt.Errorf("memory limit %d bytes: want at least 6 MiB", r.Memory)
	case r.CPUs != 0 && !(r.CPUs >= MinCPUs && r.CPUs <= math.MaxInt32):
		return fmt.Errorf("CPU limit %v: want at least %v", r.CPUs, MinCPUs)
	case r.PidsLimit < 0:
		return fmt.Errorf("pids limit %d: want a positive number", r.PidsLimit)
	}
	return nil
}

// CPUQuota is the CFS quota, in microseconds per CPUPeriod, of r.CPUs.
func (r Resources) CPUQuota() int64 { return int64(math.Round(r.CPUs * CPUPeriod)) }

// ContainerConfig is what `podbox run` was asked for beyond the process,
// kept in the container's record so that inspect shows it; the bundle's
// spec holds what the OCI runtime got.
type ContainerConfig struct {
	Mounts         []Mount    `json:"mounts,omitempty"`
	Resources      *Resources `json:"resources,omitempty"`
	ReadOnlyRootfs bool       `json:"readOnlyRootfs,omitempty"`
	// CapAdd and CapDrop are normalized: CAP_NAME, or ALL.
	CapAdd  []string `json:"capAdd,omitempty"`
	CapDrop []string `json:"capDrop,omitempty"`
	// Seccomp is "unconfined" or a profile file's absolute path; empty
	// for the default profile.
	Seccomp    string `json:"seccomp,omitempty"`
	Privileged bool   `json:"privileged,omitempty"`
}

// Mount types of a ContainerConfig's mounts.
const (
	MountBind   = "bind"   // a host path
	MountVolume = "volume" // a named volume (package volume)
	MountTmpfs  = "tmpfs"  // a tmpfs of the container's own
)

// Mount is one mount a user asked for.
type Mount struct {
	Type string `json:"type"`
	// Source is the host path of a bind, the name of a volume; empty for
	// a tmpfs.
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	// Options are the mount options the user chose besides ro, as the
	// kernel and runc name them: "rbind" or "bind" and a propagation
	// ("rprivate") for binds and volumes, "size=BYTES" and "mode=OCTAL"
	// for a tmpfs.
	Options []string `json:"options,omitempty"`
}

// UsesVolume reports whether c's container mounts the named volume.
func (c *ContainerConfig) UsesVolume(name string) bool {
	if c == nil {
		return false
	}
	return slices.ContainsFunc(c.Mounts, func(m Mount) bool { return m.Type == MountVolume && m.Source == name })
}

// setLimits writes r's memory and CPU limits into the cgroup c, made in the
// hierarchies hs, before anything runs in it: the sandbox's cgroup, whose
// limits then bound the sum of the pause's and the containers' cgroups
// below it, as a pod's cgroup does in Kubernetes. A limit that no
// hierarchy of the host can enforce is an error, not a silent no-op.
func (c Cgroup) setLimits(hs []hierarchy, r Resources) error {
	if r.Memory == 0 && r.CPUs == 0 {
		return nil
	}
	fail := func(err error) error { return fmt.Errorf("cgroup %s: set limits: %w", c.Path, err) }
	memDone, cpuDone := r.Memory == 0, r.CPUs == 0
	mem := strconv.FormatInt(r.Memory, 10)
	quota := strconv.FormatInt(r.CPUQuota(), 10)
	for _, h := range hs {
		dir := filepath.Join(h.mount, c.Path)
		if h.v2 {
			avail, err := v2Controllers(h.mount)
			if err != nil {
				return fail(err)
			}
			var enable []string
			if !memDone && slices.Contains(avail, "memory") {
				enable = append(enable, "memory")
			}
			if !cpuDone && slices.Contains(avail, "cpu") {
				enable = append(enable, "cpu")
			}
			if len(enable) == 0 {
				continue // a hybrid host's unified tree, without controllers
			}
			if err := enableControllers(h.mount, c.Path, enable); err != nil {
				return fail(err)
			}
			if slices.Contains(enable, "memory") {
				// No swap beyond the limit, as Kubernetes: the pod's
				// memory is its RAM. A kernel without swap accounting
				// has no swap.max, and nothing to limit.
				err := writeCgroupFile(dir, "memory.max", mem)
				if err == nil {
					if err = writeCgroupFile(dir, "memory.swap.max", "0"); errors.Is(err, os.ErrNotExist) {
						err = nil
					}
				}
				if err != nil {
					return fail(err)
				}
				memDone = true
			}
			if slices.Contains(enable, "cpu") {
				if err := writeCgroupFile(dir, "cpu.max", quota+" "+strconv.Itoa(CPUPeriod)); err != nil {
					return fail(err)
				}
				cpuDone = true
			}
			continue
		}
		if !memDone && slices.Contains(h.controllers, "memory") {
			// memsw is RAM plus swap; it must not be set below the RAM
			// limit, so it comes second. Without swap accounting it does
			// not exist.
			err := writeCgroupFile(dir, "memory.limit_in_bytes", mem)
			if err == nil {
				if err = writeCgroupFile(dir, "memory.memsw.limit_in_bytes", mem); errors.Is(err, os.ErrNotExist) {
					err = nil
				}
			}
			if err != nil {
				return fail(err)
			}
			memDone = true
		}
		if !cpuDone && slices.Contains(h.controllers, "cpu") {
			err := writeCgroupFile(dir, "cpu.cfs_period_us", strconv.Itoa(CPUPeriod))
			if err == nil {
				err = writeCgroupFile(dir, "cpu.cfs_quota_us", quota)
			}
			if err != nil {
				return fail(err)
			}
			cpuDone = true
		}
	}
	switch {
	case !memDone:
		return fail(errors.New("no cgroup hierarchy of this host has the memory controller"))
	case !cpuDone:
		return fail(errors.New("no cgroup hierarchy of this host has the cpu controller"))
	}
	return nil
}

// writeCgroupFile writes v to the cgroup file dir/name, which must exist:
// cgroupfs makes every file of a controller with the cgroup, so a missing
// one is a missing controller, never a file to create.
func writeCgroupFile(dir, name, v string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", v, filepath.Join(dir, name), err)
	}
	return nil
}

// v2Controllers lists the controllers a cgroup v2 tree mounted at mount
// has: none on a hybrid host, whose controllers are all in v1 hierarchies.
func v2Controllers(mount string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// enableControllers turns the controllers on for path in a cgroup v2 tree:
// each of its ancestors must have them in cgroup.subtree_control for path
// to get their files. None of the ancestors podbox makes holds a process,
// which v2 requires of a cgroup that hands controllers down.
func enableControllers(mount, path string, ctrls []string) error {
	var b strings.Builder
	for i, c := range ctrls {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("+" + c)
	}
	if err := writeCgroupFile(mount, "cgroup.subtree_control", b.String()); err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(path))
	if parent == "." {
		return nil
	}
	dir := mount
	for part := range strings.SplitSeq(parent, "/") {
		dir = filepath.Join(dir, part)
		if err := writeCgroupFile(dir, "cgroup.subtree_control", b.String()); err != nil {
			return err
		}
	}
	return nil
}

// SwapLimited reports whether a container's memory limit can cover swap on
// this host: always with cgroup v2 (runc leaves it alone where the kernel
// has no swap.max), and with v1 only where the kernel accounts swap
// (memory.memsw.*), without which runc fails on a swap limit.
func SwapLimited() bool {
	hs, err := hierarchies()
	if err != nil {
		return false
	}
	for _, h := range hs {
		if !h.v2 && slices.Contains(h.controllers, "memory") {
			_, err := os.Stat(filepath.Join(h.mount, "memory.memsw.limit_in_bytes"))
			return err == nil
		}
	}
	return len(hs) == 1 && hs[0].v2
}
