package containerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/podbox/podbox/sandbox"
)

// daemonCgroupDirs are the directories of cgroup path in the hierarchies
// Options.Cgroup places containerd in: every v1 hierarchy but cpuset's. A
// new cpuset cgroup has no CPUs until given some, and the unified tree is
// left alone: on a pure v2 host a cgroup holding containerd could not give
// controllers to the containers runc would place below it.
func daemonCgroupDirs(path string) ([]string, error) {
	ms, err := sandbox.CgroupMounts(sandbox.MountInfo)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range ms {
		if m.V2 || slices.Contains(m.Controllers, "cpuset") {
			continue
		}
		dirs = append(dirs, filepath.Join(m.Path, path))
	}
	return dirs, nil
}

// moveToCgroup moves process pid into cgroup path (see daemonCgroupDirs),
// making it where it does not exist.
func moveToCgroup(path string, pid int) error {
	dirs, err := daemonCgroupDirs(path)
	if err != nil {
		return fmt.Errorf("containerd cgroup %s: %w", path, err)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("containerd cgroup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("containerd cgroup: move %d into %s: %w", pid, dir, err)
		}
	}
	return nil
}

// removeDaemonCgroup removes cgroup path once containerd and everything it
// started are gone. A cgroup that stays busy (a process, or a container's
// cgroup runc left below it) is an error naming it.
func removeDaemonCgroup(path string) error {
	dirs, err := daemonCgroupDirs(path)
	if err != nil {
		return fmt.Errorf("containerd cgroup %s: %w", path, err)
	}
	var errs []error
	for _, dir := range dirs {
		// Killed processes leave their cgroup a moment after they die.
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("containerd cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}
