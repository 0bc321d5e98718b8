package sandbox

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The namespaces of the pause a sysctl can belong to.
const (
	SysctlNet = "net"
	SysctlIPC = "ipc"
	SysctlUTS = "uts"
)

// SysctlNamespace says which of a sandbox's namespaces the sysctl key
// belongs to (SysctlNet, SysctlIPC or SysctlUTS), by Kubernetes' rule:
// net.* is the network namespace's; kernel.shm*, kernel.msg*, kernel.sem
// and fs.mqueue.* the IPC namespace's; kernel.domainname the UTS
// namespace's. Any other sysctl is the node's, and refused, as runc
// refuses it: setting it for a sandbox would set it for every process of
// the node. kernel.hostname is refused too: the sandbox's hostname is set
// as such, and /etc/hostname says it. Keys may use "/" as the separator,
// which leaves a "." to a name's own component (net/ipv4/conf/eth0.100/…).
func SysctlNamespace(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	k := strings.ReplaceAll(p, "/", ".")
	switch {
	case strings.HasPrefix(k, "net."):
		return SysctlNet, nil
	case strings.HasPrefix(k, "kernel.shm"), strings.HasPrefix(k, "kernel.msg"), k == "kernel.sem",
		strings.HasPrefix(k, "fs.mqueue."):
		return SysctlIPC, nil
	case k == "kernel.domainname":
		return SysctlUTS, nil
	case k == "kernel.hostname":
		return "", fmt.Errorf("sysctl %q: set the sandbox's hostname instead", key)
	}
	return "", fmt.Errorf("sysctl %q is not in a namespace of the sandbox (network: net.*; IPC: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*; UTS: kernel.domainname): it would change the node", key)
}

// sysctlPath is key's file below /proc/sys: dots become slashes unless
// the key uses slashes already.
func sysctlPath(key string) (string, error) {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	if p == "" || strings.ContainsAny(p, "\x00 \t\n") || path.Clean("/"+p) != "/"+p || slices.Contains(strings.Split(p, "/"), "..") {
		return "", fmt.Errorf("sysctl %q: not a sysctl name", key)
	}
	return p, nil
}

// validateSysctls checks that every sysctl of o is in a namespace the
// sandbox owns: for a network namespace given by the caller, that it is
// not the shim's own (the node's, for a CRI pod on the host network).
func validateSysctls(o Options) error {
	if len(o.Sysctls) == 0 {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(o.Sysctls)) {
		ns, err := SysctlNamespace(k)
		if err != nil {
			return err
		}
		if strings.ContainsAny(o.Sysctls[k], "\x00\n") {
			return fmt.Errorf("sysctl %q: value %q holds a newline or NUL", k, o.Sysctls[k])
		}
		if ns == SysctlNet && o.Network == NetworkExternal && sameNamespace(o.NetNSPath, "/proc/self/ns/net") {
			return fmt.Errorf("sysctl %q: the sandbox shares the node's network namespace", k)
		}
	}
	return nil
}

// sameNamespace reports whether the namespace files a and b name one
// namespace.
func sameNamespace(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// applySysctls sets sb's sysctls in the namespaces of its pause, which
// its containers join: from a thread of the shim that enters those
// namespaces, since the pause itself has no privileges, and writes
// /proc/sys, whose files are those of the writing thread's namespaces.
// The thread is never unlocked, so the Go runtime discards it when the
// goroutine ends: nothing else ever runs in the sandbox's namespaces.
func applySysctls(sb *Sandbox) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- writeSysctls(sb)
	}()
	return <-done
}

// writeSysctls runs on a locked thread that it leaves in sb's namespaces.
func writeSysctls(sb *Sandbox) error {
	joined := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(sb.Sysctls)) {
		ns, err := SysctlNamespace(k)
		if err != nil {
			return err
		}
		if !joined[ns] {
			if err := joinPauseNamespace(sb.PausePID, ns); err != nil {
				return fmt.Errorf("sysctl %q: %w", k, err)
			}
			joined[ns] = true
		}
		p, _ := sysctlPath(k)
		if err := writeSysctl("/proc/sys/"+p, sb.Sysctls[k]); err != nil {
			return fmt.Errorf("sysctl %s=%q: %w", k, sb.Sysctls[k], err)
		}
	}
	return nil
}

// joinPauseNamespace moves the calling thread into the namespace ns of
// the pause pid.
func joinPauseNamespace(pid int, ns string) error {
	flag := map[string]int{SysctlNet: unix.CLONE_NEWNET, SysctlIPC: unix.CLONE_NEWIPC, SysctlUTS: unix.CLONE_NEWUTS}[ns]
	p := "/proc/" + strconv.Itoa(pid) + "/ns/" + ns
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("the pause's %s namespace: %w", ns, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), flag); err != nil {
		return fmt.Errorf("join %s: %w", p, err)
	}
	return nil
}

// writeSysctl writes value to the sysctl file p, which must exist.
func writeSysctl(p, value string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no such sysctl in the sandbox's namespace (%s)", p)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
