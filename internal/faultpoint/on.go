//go:build podbox_faults

package faultpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Env names the step at which a test build kills itself: STEP or STEP:N.
const Env = "PODBOX_FAULT"

// EnvStop, when set to 1, makes the step stop the process (SIGSTOP)
// instead: it goes on from there when it gets SIGCONT. A test uses it to
// crash or restart another process (containerd) at that moment.
const EnvStop = "PODBOX_FAULT_STOP"

// hits counts, per process, how often each point was reached, for STEP:N.
// It is global because a point may be reached from any goroutine of any
// package, and only test builds have it.
var hits = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// Point kills the calling process with SIGKILL if PODBOX_FAULT names this
// step (and, with :N, this is its Nth hit).
func Point(name string) {
	step, nth, ok := parse(os.Getenv(Env))
	if !ok || step != name {
		return
	}
	hits.Lock()
	hits.n[name]++
	n := hits.n[name]
	hits.Unlock()
	if n != nth {
		return
	}
	if os.Getenv(EnvStop) == "1" {
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// SIGKILL is delivered before the system call returns to a thread of
	// the process; nothing after it runs. Block in case of a kernel that
	// delivers it a moment later.
	select {}
}

// parse splits STEP[:N]; N defaults to 1.
func parse(v string) (step string, nth int, ok bool) {
	if v == "" {
		return "", 0, false
	}
	step, count, found := strings.Cut(v, ":")
	if !found {
		return step, 1, true
	}
	nth, err := strconv.Atoi(count)
	if err != nil || nth < 1 {
		return "", 0, false
	}
	return step, nth, true
}
