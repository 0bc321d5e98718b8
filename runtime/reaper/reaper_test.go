package reaper

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newReaper(t *testing.T) *Reaper {
	t.Helper()
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Many concurrent short commands all get their own exit status: none is lost
// to the reap loop, none sees ECHILD.
func TestConcurrentCommands(t *testing.T) {
	r := newReaper(t)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out bytes.Buffer
			cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i%7))
			cmd.Stdout = &out
			e, err := r.Run(cmd)
			if err != nil {
				errs <- fmt.Errorf("command %d: start: %v", i, err)
				return
			}
			if e.Status != i%7 || e.Pid != cmd.Process.Pid || e.Signal != 0 {
				errs <- fmt.Errorf("command %d: exit %+v, want status %d pid %d", i, e, i%7, cmd.Process.Pid)
			}
			// Output copying finished before Wait returned.
			if got := strings.TrimSpace(out.String()); got != strconv.Itoa(i) {
				errs <- fmt.Errorf("command %d: output %q", i, got)
			}
		}(i)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("exits lost: some commands never got their exit status")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The first child of a reaper with no child at all is reaped because its
// claim wakes the loop, not because the loop polls: a command the shim runs
// (runc create, mostly) is collected as soon as it exits.
func TestFirstChildWakesLoop(t *testing.T) {
	r := newReaper(t)
	r.echildPoll = time.Hour
	done := make(chan Exit, 1)
	go func() {
		e, err := r.Run(exec.Command("/bin/sh", "-c", "exit 3"))
		if err != nil {
			t.Error(err)
		}
		done <- e
	}()
	select {
	case e := <-done:
		if e.Status != 3 {
			t.Fatalf("exit %+v, want status 3", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first child's exit was never reaped")
	}
}

// A process killed by a signal reports the signal and 128+signal.
func TestSignaledExit(t *testing.T) {
	r := newReaper(t)
	cmd := exec.Command("/bin/sleep", "60")
	ec, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := r.Wait(cmd, ec)
	if e.Signal != syscall.SIGKILL || e.Status != 128+9 {
		t.Fatalf("exit %+v, want SIGKILL/137", e)
	}
}

// An exit reaped before the pid was claimed reaches the claimer, as long as a
// window was open before the process started; it is dropped once no window
// could claim it any more.
func TestClaimAfterExit(t *testing.T) {
	r := newReaper(t)
	// With no child and no window the loop waits for a kick alone: the
	// window's opening must make it look for children again.
	waitParked(t, r)
	w := r.Open()
	defer w.Close()
	// Bypass Start: this is what happens with `runc exec`, whose process
	// pid we learn only after it may already have exited.
	cmd := exec.Command("/bin/sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitRetained(t, r, pid)
	select {
	case e := <-w.Claim(pid):
		if e.Status != 3 {
			t.Fatalf("exit %+v, want status 3", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("retained exit of %d not delivered", pid)
	}
	r.mu.Lock()
	n := len(r.retained)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("claimed exit still retained")
	}
}

// Unclaimed exits are not kept after the last window that could claim them
// closes, and without a window nothing is kept at all.
func TestRetainedExitsDropped(t *testing.T) {
	r := newReaper(t)
	w := r.Open()
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitRetained(t, r, cmd.Process.Pid)
	later := r.Open() // opened after the exit: cannot claim it
	w.Close()
	r.mu.Lock()
	n := len(r.retained)
	r.mu.Unlock()
	later.Close()
	if n != 0 {
		t.Fatalf("%d exits retained after the only window that predates them closed", n)
	}
}

// A grandchild orphaned by its parent reparents to the subreaper, and its exit
// is claimable by pid.
func TestOrphanReparents(t *testing.T) {
	r := newReaper(t)
	w := r.Open()
	defer w.Close()
	var out bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2 & echo $!")
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if _, err := r.Run(cmd); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", out.String(), err)
	}
	select {
	case e := <-w.Claim(pid):
		if e.Status != 0 || e.Pid != pid {
			t.Fatalf("orphan exit %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("orphan %d's exit never reached the subreaper", pid)
	}
}

func waitParked(t *testing.T, r *Reaper) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !r.parked.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reap loop never waited for a first child")
		}
	}
}

func waitRetained(t *testing.T, r *Reaper, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		_, ok := r.retained[pid]
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("exit of %d never retained", pid)
}

// A command run through the reaper leaves no descriptor behind in the
// caller, also when no garbage collection comes to finalize its process: a
// shim that runs a runc command per exec would otherwise grow by one per
// exec.
func TestNoDescriptorLeftPerCommand(t *testing.T) {
	r := newReaper(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	count := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(fds)
	}
	run := func() {
		var out bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", "echo x")
		cmd.Stdout = &out
		if e, err := r.Run(cmd); err != nil || e.Status != 0 || out.String() != "x\n" {
			t.Fatalf("run: %+v %v %q", e, err, out.String())
		}
	}
	run() // the first start opens what os/exec keeps for good
	before := count()
	const n = 20
	for range n {
		run()
	}
	if after := count(); after > before+2 {
		t.Errorf("%d descriptors before %d commands, %d after", before, n, after)
	}
}
