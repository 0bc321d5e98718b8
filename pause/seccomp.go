//go:build amd64 || arm64

package pause

import (
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// filterSupported reports whether this architecture has an allow-list.
const filterSupported = true

// allowedSyscalls are the system calls the pause may make once its seccomp
// filter is on; any other kills it. After start-up the pause only waits for
// signals and reaps, so these are its wait loop's calls and those the Go
// runtime makes under it, found by tracing (strace -f) everything after the
// filter's installation: of the pause started as podbox starts it, and with
// a non-blocking stderr, each through SIGCHLD, SIGHUP, SIGUSR1, reaped
// orphans, the runtime's forced garbage collections (every two minutes) and
// SIGTERM; and of a test build that makes the runtime start and end a
// thread, grow the heap, collect, scavenge and set a timer (probe.go). A
// call marked "margin" was in none of the traces: the runtime makes it on a
// path they did not take, and the pause would die there without it. clone
// is allowed apart, for threads only (filterProgram).
var allowedSyscalls = [...]uint32{
	unix.SYS_WAIT4,          // reapChildren
	unix.SYS_FUTEX,          // the runtime's sleeps and wake-ups: how a signal reaches the loop
	unix.SYS_RT_SIGRETURN,   // the end of every signal handler
	unix.SYS_RT_SIGPROCMASK, // around a new runtime thread, and in it
	unix.SYS_SIGALTSTACK,    // a new runtime thread's signal stack
	unix.SYS_GETTID,         // a new runtime thread learns its ID
	unix.SYS_EXIT,           // a runtime thread ending
	unix.SYS_NANOSLEEP,      // the runtime's monitor thread (sysmon) sleeping
	unix.SYS_SCHED_YIELD,    // the runtime's spinning locks
	unix.SYS_GETPID,         // with tgkill: the runtime preempts a goroutine with a signal
	unix.SYS_TGKILL,
	unix.SYS_MMAP,       // heap growth
	unix.SYS_MADVISE,    // the scavenger returning free pages to the kernel
	unix.SYS_EXIT_GROUP, // exit 0 on SIGTERM
	// The runtime's poller: it is started when the pause inherits a
	// non-blocking descriptor as stdio (podbox hands it /dev/null), or by
	// the runtime's first timer, such as the scavenger's after a garbage
	// collection.
	unix.SYS_EPOLL_CREATE1,
	unix.SYS_EVENTFD2, // the poller's wake-up event
	unix.SYS_EPOLL_CTL,
	unix.SYS_EPOLL_PWAIT,
	unix.SYS_READ,            // margin: the poller's wake-up event
	unix.SYS_WRITE,           // margin: the poller's wake-up event, and a fatal runtime error's message to stderr
	unix.SYS_MUNMAP,          // margin: the runtime returning a mapping
	unix.SYS_CLOCK_GETTIME,   // margin: the runtime reads clocks through the vDSO, this call without one
	unix.SYS_RESTART_SYSCALL, // margin: how the kernel resumes a sleep that a signal interrupted
}

// cloneNamespaces are clone's flags that make new namespaces. (A new time
// namespace needs clone3, which the filter does not allow at all: in
// clone's flags its bit is part of the exit signal.)
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// Offsets into struct seccomp_data, the input of a seccomp filter: the
// system call's number, its architecture, and the lower half of its first
// argument (on a little-endian machine, as amd64 and arm64 are).
const (
	offNr      = 0
	offArch    = 4
	offArg0Low = 16
)

// filterProgram is the pause's seccomp filter, in classic BPF: a call of
// another architecture (a 32-bit one on a 64-bit kernel, whose numbers mean
// other calls) kills the pause, a call of allowedSyscalls passes, clone
// passes only when it makes a thread of the pause without new namespaces
// (the runtime's threads; never a new process), and anything else kills the
// pause. On amd64 an x32 call has the same architecture but its number has
// bit 30 set, so it matches none of the list.
func filterProgram() []unix.SockFilter {
	n := len(allowedSyscalls)
	// Jumps only go forward, so the two verdicts come last:
	//   0      load arch; 1  arch? else kill
	//   2      load nr;   3… nr == allowedSyscalls[i]? allow
	//   3+n    clone? else kill
	//   4+n    load clone's flags; 5+n  CLONE_THREAD? else kill
	//   6+n    a namespace flag? kill; else allow
	//   7+n    allow
	//   8+n    kill
	allow, kill := n+7, n+8
	prog := make([]unix.SockFilter, 0, n+9)
	load := func(off uint32) {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
	}
	// jump's targets are absolute; the instruction holds them relative to
	// the instruction after it.
	jump := func(op uint16, k uint32, ifTrue, ifFalse int) {
		next := len(prog) + 1
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k,
			Jt: uint8(ifTrue - next), Jf: uint8(ifFalse - next)})
	}
	ret := func(k uint32) { prog = append(prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}) }

	load(offArch)
	jump(unix.BPF_JEQ, auditArch, len(prog)+1, kill)
	load(offNr)
	for _, nr := range allowedSyscalls {
		jump(unix.BPF_JEQ, nr, allow, len(prog)+1)
	}
	jump(unix.BPF_JEQ, unix.SYS_CLONE, len(prog)+1, kill)
	// The kernel reads only the lower 32 bits of clone's flags.
	load(offArg0Low)
	jump(unix.BPF_JSET, unix.CLONE_THREAD, len(prog)+1, kill)
	jump(unix.BPF_JSET, cloneNamespaces, kill, allow)
	ret(unix.SECCOMP_RET_ALLOW)
	ret(unix.SECCOMP_RET_KILL_PROCESS)
	return prog
}

// installFilter puts the pause, all its threads and any it makes later
// under filterProgram, for good. no_new_privs is set first, as the kernel
// requires of a process without CAP_SYS_ADMIN (podbox starts the pause with
// it set already; under another runtime it may not be). TSYNC puts every
// thread of the runtime under the filter, not only the calling one.
func installFilter() error {
	prog := filterProgram()
	// no_new_privs is a thread's: it must be set on the thread that then
	// installs the filter, which TSYNC copies it from to the others.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return &seccompError{"set no_new_privs", err}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	tid, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return &seccompError{"install filter", errno}
	}
	if tid != 0 {
		// TSYNC names the thread it could not put under the filter.
		return &seccompError{"install filter", threadError(tid)}
	}
	return nil
}

// threadError is TSYNC's failure: a thread already under a filter that is
// not an ancestor of the new one.
type threadError int

func (t threadError) Error() string {
	return "thread " + strconv.Itoa(int(t)) + " has a seccomp filter of its own"
}

// seccompError is a failed step of installFilter.
type seccompError struct {
	op  string
	err error
}

func (e *seccompError) Error() string { return e.op + ": " + e.err.Error() }
func (e *seccompError) Unwrap() error { return e.err }
