//go:build podbox_probe

package pause

import (
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ProbeEnv names the calls probe makes.
const ProbeEnv = "PODBOX_PAUSE_PROBE"

// probe makes the calls that the environment variable ProbeEnv names, once
// the seccomp filter is on. It exists only in a test build (go build -tags
// podbox_probe), which is how the tests check the filter from inside the
// real binary: a call the filter forbids never returns, the kernel kills
// the pause with SIGSYS; one it allows returns, and the pause goes on to
// wait as ever.
func probe() {
	switch os.Getenv(ProbeEnv) {
	case "":
	case "runtime":
		// What the runtime may do under the wait loop: start and end a
		// thread (a goroutine that ends locked takes its thread along),
		// grow the heap, collect garbage and give pages back, and start
		// its poller with a timer.
		time.Sleep(time.Millisecond)
		done := make(chan []byte)
		go func() {
			runtime.LockOSThread()
			done <- make([]byte, 8<<20)
		}()
		big := <-done
		big[len(big)-1] = 1
		runtime.GC()
		debug.FreeOSMemory()
	case "getppid":
		syscall.Getppid()
	case "openat":
		syscall.Open("/", syscall.O_RDONLY, 0)
	case "socket":
		syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	case "unshare":
		syscall.Unshare(syscall.CLONE_NEWNET)
	case "execve":
		syscall.Exec("/nonexistent", []string{"probe"}, nil)
	case "fork":
		// clone as fork(2) makes it: a new process, not a thread.
		if pid, _, _ := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0); pid == 0 {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0) // the child, had the filter let it be
		}
	case "thread in a new namespace":
		// Refused by clone itself (EINVAL: a thread cannot have a network
		// namespace of its own), but only after the filter has judged it,
		// so the call never runs a thread without a stack.
		flags := unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
			unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_NEWNET
		syscall.RawSyscall(syscall.SYS_CLONE, uintptr(flags), 0, 0)
	case "x32 getpid":
		// amd64's x32 ABI numbers its calls as the 64-bit ones with bit
		// 30 set: the filter must not take this for getpid.
		syscall.RawSyscall(0x40000000|syscall.SYS_GETPID, 0, 0, 0)
	default:
		os.Stderr.WriteString("podbox-pause: unknown probe\n")
	}
}
