package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CgroupPaths says where one cgroup is in each mounted hierarchy: the paths
// below each hierarchy's root, as /proc/PID/cgroup gives them. A cgroup
// podbox makes (Cgroup) has one path everywhere. A container's need not:
// runc puts a container whose spec's cgroupsPath is relative (containerd's
// CRI writes "SLICE:cri-containerd:ID" for a pod whose cgroup parent is a
// systemd slice, and "PARENT/ID" for a parent without a leading slash)
// below its own cgroup in each hierarchy, and the shim, runc's parent, may
// be in a different cgroup in each of them.
type CgroupPaths struct {
	// Path is the cgroup's path in the unified (v2) tree, and in every v1
	// hierarchy ByController does not name.
	Path string
	// ByController is the cgroup's path in the v1 hierarchy of each
	// controller ("memory", "cpu", …); nil for a cgroup with one path.
	ByController map[string]string
}

// In is the cgroup's path in the hierarchy of the v1 controller ctrl; on a
// pure v2 host, where no v1 controller is listed, it is Path.
func (p CgroupPaths) In(ctrl string) string {
	if v, ok := p.ByController[ctrl]; ok {
		return v
	}
	return p.Path
}

// IsZero reports whether p names no cgroup at all.
func (p CgroupPaths) IsZero() bool { return p.Path == "" && len(p.ByController) == 0 }

// ProcessCgroups reads where process pid is in each hierarchy, from
// /proc/PID/cgroup: how containerd's runc shim finds a container's cgroup
// (from its init's PID), whatever cgroupsPath its spec gave runc.
func ProcessCgroups(pid int) (CgroupPaths, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	b, err := os.ReadFile(p)
	if err != nil {
		return CgroupPaths{}, fmt.Errorf("cgroup of process %d: %w", pid, err)
	}
	cg, err := parseProcCgroup(string(b))
	if err != nil {
		return CgroupPaths{}, fmt.Errorf("cgroup of process %d: %s: %w", pid, p, err)
	}
	return cg, nil
}

// parseProcCgroup reads a /proc/PID/cgroup file: one
// "ID:CONTROLLERS:PATH" line per hierarchy, "0::PATH" for the v2 tree.
// Named v1 hierarchies ("name=systemd") hold no controller and are left
// out.
func parseProcCgroup(text string) (CgroupPaths, error) {
	var cg CgroupPaths
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[2] == "" {
			return CgroupPaths{}, fmt.Errorf("malformed line %q", line)
		}
		if f[0] == "0" && f[1] == "" {
			cg.Path = f[2]
			continue
		}
		for c := range strings.SplitSeq(f[1], ",") {
			if c == "" || strings.HasPrefix(c, "name=") {
				continue
			}
			if cg.ByController == nil {
				cg.ByController = map[string]string{}
			}
			cg.ByController[c] = f[2]
		}
	}
	if cg.IsZero() {
		return CgroupPaths{}, fmt.Errorf("no hierarchy listed")
	}
	return cg, nil
}
