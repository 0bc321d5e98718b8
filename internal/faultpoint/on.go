//go:build podbox_faults

package faultpoint

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env names the step at which a test build kills itself: STEP or STEP:N.
const Env = "PODBOX_FAULT"

// EnvHold, set to a directory, makes the step hold the process there
// instead of killing it: the goroutine that got there writes its PID to
// DIR/held and waits until that file is gone, then goes on. A test uses it
// to kill another process (containerd, the pause) at that moment. It is
// not SIGSTOP: a stopped process whose child dies is sent SIGHUP by the
// kernel (its process group is orphaned), which would end the shim.
const EnvHold = "PODBOX_FAULT_HOLD"

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
	if dir := os.Getenv(EnvHold); dir != "" {
		hold(filepath.Join(dir, "held"))
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// SIGKILL is delivered before the system call returns to a thread of
	// the process; nothing after it runs. Block in case of a kernel that
	// delivers it a moment later.
	select {}
}

// hold writes the PID to path and waits for the file to go.
func hold(path string) {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return // nobody could release a hold they cannot see
	}
	for {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
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
