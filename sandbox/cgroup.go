package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup tree: a v1 controller (or named) hierarchy,
// or the v2 unified tree.
type hierarchy struct {
	mount string
	v2    bool
	// cpuset hierarchies need cpus and mems copied into a new child before a
	// task may join it.
	cpuset bool
	// controllers are a v1 hierarchy's ("cpu", "memory", …).
	controllers []string
}

// hierarchies lists the cgroup trees mounted on this host, so the same code
// serves v1, hybrid (v1 plus a unified mount) and pure v2 hosts.
func hierarchies() ([]hierarchy, error) {
	ms, err := HostCgroupMounts()
	if err != nil {
		return nil, err
	}
	hs := make([]hierarchy, 0, len(ms))
	for _, m := range ms {
		hs = append(hs, hierarchy{mount: m.Path, v2: m.V2, cpuset: slices.Contains(m.Controllers, "cpuset"), controllers: m.Controllers})
	}
	if len(hs) == 0 {
		return nil, errors.New("cgroups: no cgroup hierarchy mounted")
	}
	return hs, nil
}

// Cgroup is one cgroup path (like "podbox/ID/pause") across every mounted
// hierarchy.
type Cgroup struct {
	Path string
}

// Create makes the cgroup in every hierarchy, parents included.
func (c Cgroup) Create() error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	return c.create(hs)
}

// create is Create in the hierarchies hs, for a caller that reads them once
// for several steps.
func (c Cgroup) create(hs []hierarchy) error {
	for _, h := range hs {
		if h.cpuset {
			if err := ensureCpuset(h.mount, c.Path); err != nil {
				return fmt.Errorf("cgroup %s: %w", c.Path, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Join(h.mount, c.Path), 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", c.Path, err)
		}
	}
	return nil
}

// ensureCpuset creates each level of path under a v1 cpuset mount. The
// kernel refuses tasks in a cpuset without cpus and mems, and a new one has
// none unless its parent has cgroup.clone_children set: then the kernel
// copies the parent's into it at mkdir. So the two levels above the leaf
// (for a pause, PARENT/ID/pause, the node's cgroup parent and the sandbox's
// cgroup, whose children are all ours) get that flag, and a level made
// without it gets its parent's values written. The write is what to avoid:
// setting cpuset.cpus makes the kernel rebuild its scheduling domains, a
// walk over every cpuset on the host, of which a node has two per sandbox.
// Levels further up may be someone else's, and keep their flag.
func ensureCpuset(mount, path string) error {
	parent := mount
	parts := strings.Split(filepath.Clean(path), "/")
	for i, part := range parts {
		dir := filepath.Join(parent, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, _ := os.ReadFile(filepath.Join(dir, f))
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			v, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
			}
		}
		if i < len(parts)-1 && i >= len(parts)-3 {
			if err := cloneChildren(dir); err != nil {
				return err
			}
		}
		parent = dir
	}
	return nil
}

// cloneChildren sets cgroup.clone_children on the cpuset dir, unless set
// already (inherited from its parent, as it is below the first level).
func cloneChildren(dir string) error {
	f := filepath.Join(dir, "cgroup.clone_children")
	cur, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	return nil
}

// V2Dir returns the cgroup's directory in a pure cgroup v2 host's tree, or
// "" on a v1 or hybrid host (where a process must be placed in every
// hierarchy, and CLONE_INTO_CGROUP cannot do that).
func (c Cgroup) V2Dir() string {
	hs, err := hierarchies()
	if err != nil || len(hs) != 1 || !hs[0].v2 {
		return ""
	}
	return filepath.Join(hs[0].mount, c.Path)
}

// Add moves pid into the cgroup in every hierarchy.
func (c Cgroup) Add(pid int) error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		p := filepath.Join(h.mount, c.Path, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("cgroup %s: add process %d: %w", c.Path, pid, err)
		}
	}
	return nil
}

// Remove deletes the cgroup and everything below it in every hierarchy,
// killing any process still inside (a crashed shim's leftovers). A missing
// cgroup is success.
func (c Cgroup) Remove() error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hs {
		if err := removeTree(filepath.Join(h.mount, c.Path)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cgroup %s: remove: %w", c.Path, err)
	}
	return nil
}

func removeTree(dir string) error {
	// Most cgroups removed here are empty leaves: try that first and list
	// children only if the kernel refuses.
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	// rmdir fails with EBUSY while tasks remain. A task that has just
	// exited still counts until its parent reaps it, which takes well
	// under a millisecond, so retry soon first; anything else is a
	// leftover of a dead shim: kill it and wait for the kernel to let go.
	deadline := time.Now().Add(5 * time.Second)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		killAll(dir)
		time.Sleep(wait)
	}
}

func killAll(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
