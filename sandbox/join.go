package sandbox

import (
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotation keys that group a container with its sandbox: CRI's, set by
// containerd, and podbox's own (ctr and the CLI).
const (
	AnnotationCRISandboxID = "io.kubernetes.cri.sandbox-id"
	AnnotationSandbox      = "io.podbox.sandbox"
)

// Join rewrites an OCI spec so the container joins the sandbox: it shares the
// pause's network, IPC and UTS namespaces (and PID namespace with SharePID),
// gets the sandbox's hosts, hostname, resolv.conf and /dev/shm, and runs in
// a cgroup below the sandbox's. Other namespaces (mount, and PID without SharePID) stay
// the container's own.
func (n Node) Join(spec *specs.Spec, sb *Sandbox, containerID string) error {
	if sb.State != StateReady {
		return fmt.Errorf("sandbox %q is %s, not ready: cannot join a container", sb.Name, sb.State)
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	proc := "/proc/" + strconv.Itoa(sb.PausePID) + "/ns/"
	join := map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: sb.NetNSPath,
		specs.IPCNamespace:     proc + "ipc",
		specs.UTSNamespace:     proc + "uts",
	}
	if sb.SharePID {
		join[specs.PIDNamespace] = proc + "pid"
	}
	var nss []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if _, ok := join[ns.Type]; !ok {
			nss = append(nss, ns)
		}
	}
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace} {
		if p, ok := join[t]; ok {
			nss = append(nss, specs.LinuxNamespace{Type: t, Path: p})
		}
	}
	spec.Linux.Namespaces = nss
	// The hostname lives in the shared UTS namespace, set once by the
	// pause; runc refuses to set one in a namespace it did not create.
	spec.Hostname = ""
	spec.Linux.CgroupsPath = n.ContainerCgroupsPath(sb.ID, containerID)

	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		if !isEtcFile(m.Destination) {
			mounts = append(mounts, m)
		}
	}
	spec.Mounts = mounts
	n.EnsureEtcMounts(spec, sb)
	n.ShareShm(spec, sb)
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	spec.Annotations[AnnotationSandbox] = sb.ID
	return nil
}

var etcFiles = []string{"hosts", "hostname", "resolv.conf"}

func isEtcFile(dest string) bool {
	for _, f := range etcFiles {
		if dest == "/etc/"+f {
			return true
		}
	}
	return false
}

// EnsureEtcMounts gives a container podbox joins (CLI, ctr) the sandbox's
// hosts, hostname and resolv.conf, read-only, where its spec brings none of
// its own.
func (n Node) EnsureEtcMounts(spec *specs.Spec, sb *Sandbox) {
	n.ensureEtcMounts(spec, sb, []string{"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"})
}

// EnsureCRIEtcMounts gives a CRI container the sandbox's hosts, hostname
// and resolv.conf where its spec brings none, mounted as containerd's CRI
// mounts its own: writable unless the container's root is read-only. CRI
// brings its own when it runs the sandbox as a container, but not when it
// drives the shim's Sandbox API (containerd 2.x, sandboxer "shim"), and a
// container without /etc/hosts cannot even resolve localhost.
func (n Node) EnsureCRIEtcMounts(spec *specs.Spec, sb *Sandbox) {
	mode := "rw"
	if spec.Root != nil && spec.Root.Readonly {
		mode = "ro"
	}
	n.ensureEtcMounts(spec, sb, []string{"rbind", "rprivate", mode})
}

func (n Node) ensureEtcMounts(spec *specs.Spec, sb *Sandbox, options []string) {
	for _, name := range etcFiles {
		dest := "/etc/" + name
		have := false
		for _, m := range spec.Mounts {
			have = have || m.Destination == dest
		}
		if !have {
			spec.Mounts = append(spec.Mounts, specs.Mount{
				Destination: dest, Type: "bind", Source: n.EtcFile(sb, name), Options: options,
			})
		}
	}
}
