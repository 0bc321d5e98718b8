// Package metrics reads the cgroup statistics of a container or of a whole
// sandbox and returns them in the protobuf types containerd decodes for
// `ctr task metrics` and CRI stats: cgroups' v1 Metrics
// ("io.containerd.cgroups.v1.Metrics") on hosts with v1 controllers (hybrid
// hosts included), v2 Metrics ("io.containerd.cgroups.v2.Metrics") on pure
// cgroup v2 hosts.
//
// It owns reading and parsing the cgroup files. It never creates, changes or
// removes a cgroup (package sandbox and the OCI runtime do), and it imports
// only the cgroups stats types, not the cgroups managers with their eBPF and
// systemd dependencies.
package metrics

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	types "github.com/podbox/podbox/runtime/apitypes"
	"github.com/podbox/podbox/sandbox"
)

// Read returns the statistics of the cgroup at cgroupPath, the path below
// each hierarchy's root ("podbox/SANDBOX/CONTAINER", as in a spec's
// cgroupsPath and sandbox.Cgroup's Path). The result is a
// *cgroup1/stats.Metrics when v1 controllers are mounted (v1 and hybrid
// hosts) and a *cgroup2/stats.Metrics on a pure v2 host. A cgroup that does
// not exist is an error wrapping os.ErrNotExist.
func Read(cgroupPath string) (proto.Message, error) {
	return ReadCgroup(sandbox.CgroupPaths{Path: cgroupPath})
}

// ReadCgroup is Read of a cgroup whose path may differ from hierarchy to
// hierarchy: a container's, as sandbox.ProcessCgroups finds it from its
// init.
func ReadCgroup(cg sandbox.CgroupPaths) (proto.Message, error) {
	ms, err := sandbox.HostCgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: metrics: %w", cg.Path, err)
	}
	h, err := mountedHierarchies(ms)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: metrics: %w", cg.Path, err)
	}
	return h.read(cg)
}

// ToMetric wraps m (a result of Read) as containerd's types.Metric for the
// task or sandbox id, the form Task.Stats (its Any) and
// Sandbox.SandboxMetrics answer with. The Any's type URL is typeurl's, by
// which containerd decodes it.
func ToMetric(id string, m proto.Message) (*types.Metric, error) {
	if m == nil {
		return nil, fmt.Errorf("metrics of %q: no metrics", id)
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("metrics of %q: %w", id, err)
	}
	return &types.Metric{Timestamp: timestamppb.Now(), ID: id, Data: a}, nil
}

// hierarchies says where the cgroup trees this package reads are mounted.
type hierarchies struct {
	// v1 maps a v1 controller (memory, cpu, cpuacct, pids, blkio) to its
	// mount point; empty on a pure v2 host.
	v1 map[string]string
	// v2 is the unified tree's mount point, if any.
	v2 string
	// partitions is /proc/partitions, for naming block devices as
	// containerd's cgroups library does.
	partitions string
}

// mountedHierarchies sorts the cgroup mounts ms (sandbox.CgroupMounts). As soon as
// any v1 controller is mounted the host is read as v1: on hybrid hosts the
// controllers live there, and the unified mount holds none of them.
func mountedHierarchies(ms []sandbox.CgroupMount) (hierarchies, error) {
	h := hierarchies{v1: map[string]string{}, partitions: "/proc/partitions"}
	for _, m := range ms {
		if m.V2 {
			// Prefer the conventional mount if a tree is mounted twice.
			if h.v2 == "" || m.Path == "/sys/fs/cgroup" {
				h.v2 = m.Path
			}
			continue
		}
		for _, c := range m.Controllers {
			if slices.Contains(v1Controllers(), c) && h.v1[c] == "" {
				h.v1[c] = m.Path
			}
		}
	}
	if !h.isV1() && h.v2 == "" {
		return hierarchies{}, errors.New("no cgroup hierarchy mounted")
	}
	return h, nil
}

func (h hierarchies) isV1() bool {
	for _, c := range v1Controllers() {
		if h.v1[c] != "" {
			return true
		}
	}
	return false
}

func (h hierarchies) read(cg sandbox.CgroupPaths) (proto.Message, error) {
	if h.isV1() {
		return h.readV1(cg)
	}
	return h.readV2(rel(cg.Path), cg.Path)
}

// rel is a cgroup path below a hierarchy's root; a leading slash (as in
// /proc/PID/cgroup) means the same as none.
func rel(cgroupPath string) string { return filepath.Clean("/" + cgroupPath) }
