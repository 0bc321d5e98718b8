package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/image/runspec"
	"github.com/podbox/podbox/sandbox"
)

// AnnotationName carries a container's name in its spec.
const AnnotationName = "io.podbox.name"

// processOptions are the user's choices for a container's or exec's process.
type processOptions struct {
	args     []string
	env      []string // KEY=VALUE, checked by checkFlags
	cwd      string
	user     string // UID[:GID]
	terminal bool
}

// parseUser parses UID[:GID], the form exec takes: names would need the
// container's /etc/passwd. run resolves names (runspec.ResolveUser).
func parseUser(s string) (specs.User, error) {
	if s == "" {
		return specs.User{}, nil
	}
	u, g, hasGID := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return specs.User{}, fmt.Errorf("--user %q: want a numeric UID[:GID]", s)
	}
	gid := uint64(0)
	if hasGID {
		if gid, err = strconv.ParseUint(g, 10, 32); err != nil {
			return specs.User{}, fmt.Errorf("--user %q: want a numeric UID[:GID]", s)
		}
	}
	return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
}

// checkFlags checks what can be checked of o without the container's files;
// later ones of -e override earlier ones and the image's, as in docker run.
func (o processOptions) checkFlags() error {
	if o.cwd != "" && !filepath.IsAbs(o.cwd) {
		return fmt.Errorf("--workdir %q: must be an absolute path", o.cwd)
	}
	_, err := parseKeyValues("--env", o.env)
	return err
}

// validate checks an exec's options: a command and a numeric user.
func (o processOptions) validate() error {
	if len(o.args) == 0 {
		return fmt.Errorf("no command given (put it after --)")
	}
	if _, err := parseUser(o.user); err != nil {
		return err
	}
	return o.checkFlags()
}

// process builds the OCI process for o, for an exec with no container spec
// to start from.
func (o processOptions) process() (*specs.Process, error) {
	user, err := parseUser(o.user)
	if err != nil {
		return nil, err
	}
	cwd := o.cwd
	if cwd == "" {
		cwd = "/"
	}
	return ociProcess(&runspec.Process{
		Args: o.args, Env: runspec.MergeEnv([]string{runspec.DefaultPath}, o.env), Cwd: cwd,
		UID: user.UID, GID: user.GID,
	}, o.terminal), nil
}

// ociProcess is the OCI process that runs p: podbox's defaults for what
// neither the image nor the user decides.
func ociProcess(p *runspec.Process, terminal bool) *specs.Process {
	env := p.Env
	if terminal {
		env = runspec.MergeEnv([]string{"TERM=xterm"}, env)
	}
	caps := defaultCapabilities()
	return &specs.Process{
		Terminal: terminal,
		User:     specs.User{UID: p.UID, GID: p.GID, AdditionalGids: p.AdditionalGIDs},
		Args:     p.Args,
		Env:      env,
		Cwd:      p.Cwd,
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		// runc spec's limit; it must stay below the host's hard limit
		// (20000 on our machines), which a spec cannot raise.
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		NoNewPrivileges: true,
		// OOMScoreAdj stays unset: a negative value makes runc fail on
		// hosts that forbid lowering it, and the container inherits the
		// shim's otherwise.
	}
}

// defaultCapabilities is containerd's and Docker's default set rather than
// runc spec's three: application images expect to chown, setuid and bind
// low ports as root inside their container, and these are what they get
// everywhere else.
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// containerSpec is the OCI spec of a container named name running proc in
// rootfs (absolute) in sandbox sandboxID: runc spec's defaults plus the
// process. The shim rewrites it to join the sandbox (namespaces, /etc
// files, cgroup), so nothing about the sandbox is decided here beyond the
// grouping annotation.
func containerSpec(name, sandboxID, rootfs string, proc *specs.Process) *specs.Spec {
	return &specs.Spec{
		// The version runc 1.1 (Debian 12) writes itself; newer runtimes
		// accept it too.
		Version: "1.0.2",
		Process: proc,
		Root:    &specs.Root{Path: rootfs, Readonly: false},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Annotations: map[string]string{
			AnnotationName:            name,
			sandbox.AnnotationSandbox: sandboxID,
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
				"/proc/scsi",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
}

// checkRootfs requires rootfs to be an existing directory and returns its
// absolute path, which is what the spec needs (a relative root.path is
// relative to the bundle, not to the user's directory).
func checkRootfs(rootfs string) (string, error) {
	if rootfs == "" {
		return "", fmt.Errorf("--rootfs is required")
	}
	abs, err := filepath.Abs(rootfs)
	if err != nil {
		return "", fmt.Errorf("--rootfs %q: %w", rootfs, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("--rootfs %q: %w", rootfs, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("--rootfs %q: not a directory", rootfs)
	}
	return abs, nil
}
