// Package pause is the podbox-pause program: the process that holds a
// sandbox's network, IPC and UTS namespaces open for as long as the sandbox
// lives. It waits, doing nothing, until SIGTERM or SIGINT and then exits 0.
// Meanwhile it reaps every child that exits, because it is PID 1 when the
// sandbox shares its PID namespace and the sandbox's orphans are reparented
// to it. It is modelled on Kubernetes' pause.c.
//
// It never reads or writes a file or socket after start, never logs after
// start, never starts a goroutine, and imports nothing beyond the standard
// library and golang.org/x/sys. The last step of its start puts it under a
// seccomp filter that allows only the system calls of its wait loop and of
// the Go runtime under it (seccomp.go); any other call kills it. One runs
// per sandbox for the sandbox's whole life, so every page it keeps counts:
// BenchmarkPauseFootprint measures them.
package pause

import (
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

const usage = `usage: podbox-pause [-v]
Holds a sandbox's namespaces: waits until SIGTERM or SIGINT, then exits 0,
reaping every child that exits meanwhile. -v prints the version.
`

// notPID1Warning is written once, at start, when the pause is not the init
// of its PID namespace.
const notPID1Warning = "podbox-pause: warning: not PID 1, so orphans in its PID namespace are not reparented to it\n"

// Run is the whole pause program; it returns the exit code. argv is the full
// command line, program name first (os.Args). stdout gets the version, stderr
// the usage or the not-PID-1 warning; nothing is written after that.
func Run(argv []string, version string, stdout, stderr io.Writer) int {
	var args []string
	if len(argv) > 0 {
		args = argv[1:]
	}
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0] == "-v":
		if _, err := io.WriteString(stdout, "podbox-pause "+version+"\n"); err != nil {
			return 1
		}
		return 0
	default:
		io.WriteString(stderr, usage)
		return 2
	}
	reexecWithOneP(argv)
	return waitForStop(stderr)
}

// reexecWithOneP replaces the process image with a fresh copy of itself that
// runs with GOMAXPROCS=1, unless it already runs with one P.
//
// Why: the runtime allocates and touches memory for every P it starts, and
// keeps it for the life of the process: about 15 KiB each, measured; with 64
// Ps (a 64-CPU node) the pause held 1.5 MiB of anonymous memory, with one P
// about 0.56 MiB. The pause
// never needs a second P, but the P count is fixed before any Go code runs,
// and shrinking it later with runtime.GOMAXPROCS(1) frees nothing (it measured
// worse). So the only way is to exec again with the variable set.
//
// GOMAXPROCS=1 goes first in the environment because the runtime uses the
// first GOMAXPROCS= entry it finds: the new image therefore always runs with
// one P and never execs again, whatever the caller had set. exec keeps the PID
// (PID 1 stays PID 1), the children, and the ignored signals.
//
// If the exec cannot happen (no /proc to find the executable, a seccomp
// filter) the pause simply runs with more Ps: nothing else depends on it.
func reexecWithOneP(argv []string) {
	if runtime.GOMAXPROCS(0) == 1 {
		return
	}
	// The real path, not /proc/self/exe, so that the process keeps its
	// name (comm) in ps and top.
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, argv, append([]string{"GOMAXPROCS=1"}, os.Environ()...))
}

// waitForStop is pause.c's main loop: it reaps children on SIGCHLD and returns
// 0 on SIGTERM or SIGINT.
func waitForStop(stderr io.Writer) int {
	// Two channels because os/signal drops a signal when its channel is full:
	// a burst of SIGCHLD must never crowd out the SIGTERM. One slot each is
	// enough: one pending SIGTERM is as good as many, and one pending SIGCHLD
	// already promises a reap pass that collects every exited child.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	// The runtime's default for SIGHUP is to die, but a sandbox must outlive
	// the terminal or session that started it. A stderr that nobody reads
	// must not kill it over the warning below either (SIGPIPE).
	//
	// This comes after the Notify calls on purpose: an ignored SIGPIPE
	// (SigIgn in /proc/PID/status) is how the pause's parent learns that
	// SIGTERM is now answered (sandbox.SignalPause waits for it), since the
	// runtime catches every signal from its start, long before Notify.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	// Warn only now that the signals are handled, so that a reader of stderr
	// also learns that SIGTERM will now be answered with exit 0.
	if os.Getpid() != 1 {
		io.WriteString(stderr, notPID1Warning)
	}
	// Last, so that the filter holds only what the loop below needs. A
	// pause that cannot be filtered on an architecture the filter knows
	// does not run unfiltered: something is wrong with its host.
	if !filterSupported {
		io.WriteString(stderr, "podbox-pause: warning: no seccomp filter on "+runtime.GOARCH+"\n")
	} else if err := installFilter(); err != nil {
		io.WriteString(stderr, "podbox-pause: seccomp: "+err.Error()+"\n")
		return 1
	}
	probe()
	for {
		// Reap before the first wait too: the runtime discarded the
		// SIGCHLD of any child that exited before Notify (and children
		// survive the re-exec).
		reapChildren()
		select {
		case <-stop:
			return 0
		case <-child:
		}
	}
}

// reapChildren collects every child that has exited, so that none stays a
// zombie. It loops because one SIGCHLD can stand for many exits.
func reapChildren() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		// ECHILD: no children at all; 0: none has exited yet.
		if err != nil || pid <= 0 {
			return
		}
	}
}
