package cli

import (
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/podbox/podbox/sandbox"
	"github.com/podbox/podbox/volume"
)

// hostOptions are run's flags for what a container gets beyond its
// process: mounts, limits, a read-only root, capabilities, seccomp.
type hostOptions struct {
	volumes, mounts []string // -v and --mount, as given
	memory, cpus    string
	pidsLimit       int64
	readOnly        bool
	capAdd, capDrop []string
	securityOpts    []string // --security-opt, as given
	privileged      bool
}

func addHostFlags(cmd *cobra.Command, o *hostOptions) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "mount a host directory or a named volume: /HOST/PATH:/PATH[:ro] or VOLUME:/PATH[:ro] (repeatable)")
	f.StringArrayVar(&o.mounts, "mount", nil, "mount as docker's --mount: type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…] (repeatable)")
	f.StringVar(&o.memory, "memory", "", "memory limit, swap included: 512m, 1g, 512Mi, 1Gi (at least 6m)")
	f.StringVar(&o.cpus, "cpus", "", "CPU limit in CPUs: 0.5 is half of one CPU's time (or 500m)")
	f.Int64Var(&o.pidsLimit, "pids-limit", 0, "most processes and threads at once (-1: no limit)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	f.StringArrayVar(&o.capAdd, "cap-add", nil, "add a Linux capability: NET_ADMIN, CAP_SYS_PTRACE, ALL (repeatable)")
	f.StringArrayVar(&o.capDrop, "cap-drop", nil, "drop a Linux capability, or ALL (repeatable)")
	f.StringArrayVar(&o.securityOpts, "security-opt", nil, "seccomp=unconfined (no seccomp filter) or seccomp=PROFILE.json (docker's format) instead of the default profile")
	f.BoolVar(&o.privileged, "privileged", false, "every capability, no seccomp filter, the host's devices, no masked paths, /sys writable")
}

// runConfig is what the flags of hostOptions ask for, parsed: the record's
// part and what the host must get ready before the container is created.
type runConfig struct {
	cfg *sandbox.ContainerConfig // nil if nothing was asked for
	// mkdirs are -v host paths that do not exist: made, as docker makes
	// them, once everything else about the run has been checked.
	mkdirs []string
	// caps are the container's capabilities; nil for the defaults.
	caps []string
	// seccomp is the container's seccomp filter; nil for none.
	seccomp *specs.LinuxSeccomp
	// devices are the host's, for --privileged.
	devices []specs.LinuxDevice
	// privileged is --privileged.
	privileged bool
}

// parse checks every flag, reading the host only to see which bind
// sources exist, for --cap-add and --privileged its capability bounding
// set, for --privileged its devices, and a seccomp profile's file; it
// changes nothing.
func (o hostOptions) parse() (runConfig, error) {
	var rc runConfig
	ms, err := parseMounts(o.volumes, o.mounts)
	if err != nil {
		return rc, err
	}
	res, err := parseResources(o.memory, o.cpus, o.pidsLimit)
	if err != nil {
		return rc, err
	}
	add, err := normalizeCaps("--cap-add", o.capAdd)
	if err != nil {
		return rc, err
	}
	drop, err := normalizeCaps("--cap-drop", o.capDrop)
	if err != nil {
		return rc, err
	}
	choice, err := parseSecurityOpts(o.securityOpts)
	if err != nil {
		return rc, err
	}
	if o.privileged {
		// Both would be ignored, as docker ignores them: refused
		// instead, since each asks for less than --privileged gives.
		if len(drop) > 0 {
			return rc, errors.New("--privileged and --cap-drop exclude each other: a privileged container has every capability")
		}
		if choice != "" && choice != seccompUnconfined {
			return rc, errors.New("--privileged and --security-opt seccomp=PROFILE exclude each other: a privileged container has no seccomp filter")
		}
		add = []string{capAll}
	}
	if len(add)+len(drop) > 0 {
		var bnd uint64
		if len(add) > 0 {
			if bnd, err = boundingSet(); err != nil {
				return rc, err
			}
			if err := checkBounding(add, bnd); err != nil {
				return rc, err
			}
		}
		rc.caps = capabilities(defaultCapabilities(), add, drop, bnd)
	}
	if o.privileged {
		rc.privileged = true
		if rc.devices, err = hostDevices("/dev"); err != nil {
			return rc, err
		}
	} else {
		caps := rc.caps
		if caps == nil {
			caps = defaultCapabilities()
		}
		if rc.seccomp, err = seccompProfile(choice, caps); err != nil {
			return rc, err
		}
	}
	cfg := &sandbox.ContainerConfig{Resources: res, ReadOnlyRootfs: o.readOnly, CapAdd: add, CapDrop: drop,
		Seccomp: choice, Privileged: o.privileged}
	if o.privileged {
		cfg.CapAdd = nil // ALL came from --privileged, which the record says
	}
	for _, m := range ms {
		if m.mkdir {
			if _, err := os.Stat(m.Source); os.IsNotExist(err) {
				rc.mkdirs = append(rc.mkdirs, m.Source)
			}
		}
		cfg.Mounts = append(cfg.Mounts, m.Mount)
	}
	if len(cfg.Mounts) > 0 || res != nil || o.readOnly || len(add)+len(drop) > 0 || choice != "" || o.privileged {
		rc.cfg = cfg
	}
	return rc, nil
}

// volumeNames are the named volumes cfg mounts.
func (rc runConfig) volumeNames() []string {
	var names []string
	if rc.cfg != nil {
		for _, m := range rc.cfg.Mounts {
			if m.Type == sandbox.MountVolume {
				names = append(names, m.Source)
			}
		}
	}
	return names
}

// prepare makes what the container's mounts need on the host: the missing
// -v host directories, and the named volumes it mounts (made on first use).
// release lets removals of the volumes go ahead: call it once the
// container's record names them.
func (rc runConfig) prepare(st volume.Store) (release func(), err error) {
	for _, d := range rc.mkdirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("-v: create host directory %s: %w", d, err)
		}
	}
	names := rc.volumeNames()
	if len(names) == 0 {
		return func() {}, nil
	}
	_, release, err = st.Use(names)
	return release, err
}

// apply puts cfg into the container's spec: its seccomp filter, mounts
// (volumes from st), limits, read-only root, capabilities and what
// --privileged gives.
func (rc runConfig) apply(spec *specs.Spec, st volume.Store) {
	spec.Linux.Seccomp = rc.seccomp
	if rc.privileged {
		applyPrivileged(spec, rc.devices)
	}
	cfg := rc.cfg
	if cfg == nil {
		return
	}
	specMounts(spec, cfg.Mounts, st.Mountpoint)
	if cfg.Resources != nil {
		swap := cfg.Resources.Memory > 0 && sandbox.SwapLimited()
		spec.Linux.Resources = specResources(cfg.Resources, swap)
	}
	spec.Root.Readonly = cfg.ReadOnlyRootfs
	if rc.caps != nil {
		// Bounding, effective and permitted, as docker sets them;
		// inheritable and ambient stay empty, as in docker since
		// CVE-2022-24769: with inheritable capabilities, a program with
		// file capabilities would gain them even run by a non-root user.
		spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: rc.caps, Effective: rc.caps, Permitted: rc.caps}
	}
}
