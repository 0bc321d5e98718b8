package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/internal/faultpoint"
)

// PauseUID and PauseGID are the pause's user and group: 65535, as Kubernetes
// runs its pause, so the pause owns nothing on the host.
const (
	PauseUID = 65535
	PauseGID = 65535
)

// PauseSpec says how to launch a sandbox's pause process.
type PauseSpec struct {
	// RootDir is a directory holding only the pause binary, named "pause".
	// It becomes the pause's read-only root (see PrepareRootDir).
	RootDir string
	// NetNSPath is the network namespace the pause joins.
	NetNSPath string
	// Hostname is set in the pause's new UTS namespace, which the sandbox's
	// containers join (not with Host.UTS).
	Hostname string
	// Host are the node's namespaces the pause keeps.
	Host HostNamespaces
	// MountNS, if set, is the mount namespace of a live pause of the same
	// RootDir, which this pause joins instead of getting one of its own (see
	// Node.pauseMountNS).
	MountNS *os.File
	// CgroupFD, if >= 0, is an open cgroup v2 directory the pause is started
	// in (CLONE_INTO_CGROUP), so it is accounted from its first instruction.
	CgroupFD int
	// CgroupTasks are the `tasks` files of the pause's cgroup in each cgroup
	// v1 hierarchy, which CLONE_INTO_CGROUP cannot reach: the thread that
	// forks the pause joins them first, so the pause is born there too.
	CgroupTasks []string
}

// PrepareRootDir makes dir a root filesystem holding only a copy of the pause
// binary at /pause, if it does not hold one yet. It is shared by every sandbox
// of a state root; the pause only ever sees it read-only.
func PrepareRootDir(dir, pauseBinary string) error {
	dst := filepath.Join(dir, "pause")
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	// The state root is root's; the pause root itself is the pause's /,
	// which it searches as uid 65535.
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("pause root %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pause root %s: %w", dir, err)
	}
	src, err := os.Open(pauseBinary)
	if err != nil {
		return fmt.Errorf("pause root %s: read pause binary: %w", dir, err)
	}
	defer src.Close()
	// An unnamed file, linked into place once complete: a process killed
	// while it copies leaves nothing behind.
	if err := installUnnamed(dir, dst, src); !errors.Is(err, errNoTmpfile) {
		if err != nil {
			return fmt.Errorf("pause root %s: install pause binary: %w", dir, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(dir, ".pause.*")
	if err != nil {
		return fmt.Errorf("pause root %s: %w", dir, err)
	}
	// Copied file to file (copy_file_range), not through a buffer: a shim
	// that read the 1.4 MB binary into its heap would keep those pages
	// until a garbage collection, which an idle shim may never run.
	_, err = io.Copy(tmp, src)
	faultpoint.Point("create.pause-binary")
	if err == nil {
		err = tmp.Chmod(0o555)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Rename, so that concurrent preparers never expose a partial file.
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pause root %s: install pause binary: %w", dir, err)
	}
	return nil
}

// errNoTmpfile: the file system of the directory cannot make unnamed
// files (O_TMPFILE).
var errNoTmpfile = errors.New("no O_TMPFILE")

// installUnnamed copies src into an unnamed file in dir and links it at dst,
// read-only and executable. A dst that exists already (another preparer
// won) is as good.
func installUnnamed(dir, dst string, src *os.File) error {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o555)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		return errNoTmpfile
	}
	if err != nil {
		return err
	}
	tmp := os.NewFile(uintptr(fd), dir+"/(unnamed)")
	defer tmp.Close()
	// Copied file to file (copy_file_range), not through a buffer: a shim
	// that read the 1.4 MB binary into its heap would keep those pages
	// until a garbage collection, which an idle shim may never run.
	if _, err := io.Copy(tmp, src); err != nil {
		return err
	}
	faultpoint.Point("create.pause-binary")
	if err := tmp.Chmod(0o555); err != nil {
		return err
	}
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// StartPause launches the pause process of a sandbox: in the network
// namespace at spec.NetNSPath, in new IPC, UTS, mount and PID namespaces (it
// is PID 1 of its PID namespace), with a read-only root holding only the pause
// binary, as uid/gid 65535 with no capabilities and no_new_privs. The pause
// then puts itself under its own seccomp filter (package pause): Go's
// fork/exec has no step between the two where this side could install one.
// It returns the pause's PID; the caller is its parent and must reap it.
//
// Go's fork/exec cannot join an existing namespace or pivot the root in the
// child, so the namespaces are prepared on a dedicated, locked OS thread that
// then forks the pause: the child inherits that thread's namespaces, root and
// security bits. The thread is never unlocked, so the Go runtime discards it
// when the goroutine ends; nothing else ever runs on it.
//
// Pivoting (instead of chroot) matters: the new mount namespace starts as a
// copy of the host's, netns pins of every other sandbox included. Detaching
// the old root leaves the pause's namespace holding one mount, so it never
// keeps another sandbox's namespace alive after that sandbox is removed.
// With spec.MountNS the pause joins such a namespace of another pause
// instead, and nothing is copied or pivoted.
func StartPause(spec PauseSpec) (int, error) {
	netns, err := os.Open(spec.NetNSPath)
	if err != nil {
		return 0, fmt.Errorf("pause: open netns: %w", err)
	}
	defer netns.Close()
	// Opened before the pivot: /dev/null does not exist in the pause root.
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("pause: %w", err)
	}
	defer null.Close()

	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: see the function comment.
		pid, err := forkPause(spec, int(netns.Fd()), null)
		done <- result{pid, err}
	}()
	r := <-done
	if r.err != nil {
		return 0, fmt.Errorf("pause: %w", r.err)
	}
	return r.pid, nil
}

// forkPause runs on a locked thread that it leaves unusable for anything else.
func forkPause(spec PauseSpec, netnsFD int, null *os.File) (int, error) {
	// First, while /sys/fs/cgroup is still in view: the thread joins the
	// pause's v1 cgroups, so that the pause is born in them. Writing "0"
	// moves the writing thread alone, for which current kernels skip
	// the global cgroup_threadgroup_rwsem (measured here, 6.18); moving the pause's PID
	// after the fork takes it, and waits for an RCU grace period for it in
	// the first hierarchy: 1 to 15 ms here, the largest single cost of a
	// sandbox create. The thread dies with this goroutine.
	for _, tasks := range spec.CgroupTasks {
		if err := os.WriteFile(tasks, []byte("0"), 0o644); err != nil {
			return 0, fmt.Errorf("join cgroup %s: %w", filepath.Dir(tasks), err)
		}
	}
	if spec.MountNS != nil {
		// The kernel lets a thread into another mount namespace only if
		// it shares its root and working directory with no other thread,
		// and Go's threads share them: unshare them first. Joining puts
		// the thread at the namespace's root, the pause root.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return 0, fmt.Errorf("unshare fs: %w", err)
		}
		if err := unix.Setns(int(spec.MountNS.Fd()), unix.CLONE_NEWNS); err != nil {
			return 0, fmt.Errorf("join the pauses' mount namespace: %w", err)
		}
	}
	flags := 0
	if spec.MountNS == nil {
		flags |= unix.CLONE_NEWNS
	}
	if !spec.Host.IPC {
		flags |= unix.CLONE_NEWIPC
	}
	if !spec.Host.UTS {
		flags |= unix.CLONE_NEWUTS
	}
	if err := unix.Unshare(flags); err != nil {
		return 0, fmt.Errorf("unshare mount/ipc/uts: %w", err)
	}
	if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
		return 0, fmt.Errorf("join netns %s: %w", spec.NetNSPath, err)
	}
	if spec.Hostname != "" && !spec.Host.UTS {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return 0, fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.MountNS == nil {
		if err := pivotToPauseRoot(spec.RootDir); err != nil {
			return 0, err
		}
	}
	return execPause(spec, null)
}

// pivotToPauseRoot makes the calling thread's new mount namespace hold one
// mount, rootDir, read-only, as its root.
func pivotToPauseRoot(rootDir string) error {
	// Private first, so nothing below propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount(rootDir, rootDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind pause root %s: %w", rootDir, err)
	}
	if err := unix.Chdir(rootDir); err != nil {
		return fmt.Errorf("enter pause root %s: %w", rootDir, err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one, and
	// the detach below removes it: no directory for the old root is needed
	// in a root that must hold only the pause binary.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot into pause root %s: %w", rootDir, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter pause root: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make pause root read-only: %w", err)
	}
	return nil
}

// execPause forks the pause from the prepared thread, with no privileges.
func execPause(spec PauseSpec, null *os.File) (int, error) {
	// no_new_privs and the empty bounding set are inherited by the child;
	// its switch to uid 65535 then clears every other capability set.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("set no_new_privs: %w", err)
	}
	for c := 0; c <= lastCap(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return 0, fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	attr := &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: PauseUID, Gid: PauseGID, Groups: []uint32{}},
		// Its own session: a signal to the shim's process group (a ^C in the
		// terminal that started the CLI) must not reach the sandbox.
		Setsid: true,
	}
	if !spec.Host.PID {
		attr.Cloneflags = syscall.CLONE_NEWPID
	}
	if spec.CgroupFD >= 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = spec.CgroupFD
	}
	// syscall.ForkExec rather than os/exec: the latter's first start in a
	// process first probes pidfd support with a throwaway child, a quarter
	// of a millisecond on every sandbox create.
	// argv[0] is the path, as when the pause image's entrypoint runs it:
	// a pod's ps shows the same process under either runtime.
	pid, err := syscall.ForkExec("/pause", []string{"/pause"}, &syscall.ProcAttr{
		// One P is all the pause needs; set here, it spares the pause the
		// re-exec it would otherwise do to get it (see package pause).
		Env:   []string{"GOMAXPROCS=1"},
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd()},
		Sys:   attr,
	})
	if err != nil {
		return 0, fmt.Errorf("start /pause: %w", err)
	}
	return pid, nil
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return 63 // PR_CAPBSET_DROP answers EINVAL past the last one
}

// ProcessStart returns pid's start time in clock ticks since boot, which
// together with the PID names one process for good (PIDs are reused).
func ProcessStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; fields
	// after the last ')' are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("process %d: malformed stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// Alive reports whether the process pid started at start still runs (and is
// not a zombie).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	got, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && (start == 0 || got == start)
}
