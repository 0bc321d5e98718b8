package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// handlerWait bounds how long SignalPause waits for the pause to install its
// SIGTERM handler. The pause's Go runtime starts in about a millisecond; a
// pause that has not got there in this long is stuck, and the caller's
// SIGKILL fallback deals with it.
const handlerWait = 2 * time.Second

// SignalPause sends sig to the pause process pid, first waiting (up to a
// bound) until the pause answers it when sig is one it handles (SIGTERM,
// SIGINT).
//
// Why wait: a sandbox is ready as soon as its pause is exec'd, before the
// pause's Go code has asked for SIGTERM. The pause is the init of its PID
// namespace, and the kernel discards a signal sent to such an init while the
// signal's disposition is still the default: a SIGTERM in that window is lost
// and the pause never exits. A little later, once the Go runtime has installed
// its own handlers but before the pause has asked for SIGTERM, the runtime
// tries to die of the signal, cannot, and exits 2 instead of 0. The pause
// ignores SIGPIPE only after it has asked for SIGTERM (package pause), so
// SIGTERM caught and SIGPIPE ignored means it is listening. Waiting costs
// nothing once the pause is up, which is every stop but one that follows
// create at once.
func SignalPause(pid int, sig syscall.Signal) error {
	if sig == syscall.SIGTERM || sig == syscall.SIGINT {
		waitListening(pid, handlerWait)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("pause %d: send %v: %w", pid, sig, err)
	}
	return nil
}

// waitListening polls until the pause pid answers SIGTERM, is gone, or d has
// passed. It reports whether the pause was seen listening.
func waitListening(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	pause := 50 * time.Microsecond
	for {
		ok, err := listening(pid)
		if ok || err != nil {
			return ok
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// listening reports whether the pause pid has reached its wait loop: SIGTERM
// caught and SIGPIPE ignored, read from /proc/PID/status.
func listening(pid int) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, fmt.Errorf("pause %d: read status: %w", pid, err)
	}
	// A pause that has exited (a zombie until reaped) will never listen:
	// don't wait for it.
	if strings.Contains(string(b), "\nState:\tZ") || strings.Contains(string(b), "\nState:\tX") {
		return false, fmt.Errorf("pause %d: exited", pid)
	}
	caught, cerr := sigMask(string(b), "SigCgt:")
	ignored, ierr := sigMask(string(b), "SigIgn:")
	if cerr != nil || ierr != nil {
		return false, fmt.Errorf("pause %d: %w", pid, errors.Join(cerr, ierr))
	}
	return has(caught, syscall.SIGTERM) && has(ignored, syscall.SIGPIPE), nil
}

// sigMask parses the hexadecimal signal mask on the status line named key.
func sigMask(status, key string) (uint64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		if mask, ok := strings.CutPrefix(line, key); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %q: %w", key, mask, err)
			}
			return m, nil
		}
	}
	return 0, fmt.Errorf("no %s line in status", key)
}

func has(mask uint64, sig syscall.Signal) bool { return mask&(1<<(uint(sig)-1)) != 0 }
