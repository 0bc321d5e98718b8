package oom

import (
	"errors"
	"slices"

	"github.com/podbox/podbox/sandbox"
)

// memoryHierarchy is the tree whose memory controller the watcher listens
// to.
type memoryHierarchy struct {
	mount string
	// v2 is true when the memory controller is the unified tree's (pure v2
	// hosts), false when it is a v1 hierarchy (v1 and hybrid hosts).
	v2 bool
}

// findMemoryHierarchy picks it from the cgroup mounts ms: a
// mounted v1 memory controller wins, since on hybrid hosts the unified mount
// holds no controllers; otherwise the unified tree is used.
func findMemoryHierarchy(ms []sandbox.CgroupMount) (memoryHierarchy, error) {
	var v2 string
	for _, m := range ms {
		switch {
		case !m.V2 && slices.Contains(m.Controllers, "memory"):
			return memoryHierarchy{mount: m.Path}, nil
		case m.V2 && (v2 == "" || m.Path == "/sys/fs/cgroup"):
			// Prefer the conventional mount if the tree is mounted twice.
			v2 = m.Path
		}
	}
	if v2 != "" {
		return memoryHierarchy{mount: v2, v2: true}, nil
	}
	return memoryHierarchy{}, errors.New("no memory cgroup hierarchy mounted")
}
