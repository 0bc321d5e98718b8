// Package reaper makes the shim a child subreaper and owns the reaping of
// every child it has: the OCI runtime processes it starts, and the container
// and exec processes that reparent to it when runc exits. One loop waits for
// any child to exit, reaps every exited child with wait4(-1, WNOHANG) and
// hands each exit (pid, status, time) to whoever registered interest in that
// pid.
//
// The loop learns of exits by waiting for them (waitid with WNOWAIT), not
// from SIGCHLD: os/signal's Notify keeps two threads of its own in the
// process, one of them locked to a goroutine that only manages signal masks,
// and a shim serving one sandbox is mostly such fixed costs.
//
// Because the loop reaps every child, nothing else in the process may wait
// for a child: once a Reaper runs, every command must be started with
// Reaper.Start (or os/exec's own Wait will find the child already gone and
// fail with ECHILD). The package never starts processes on its own, never
// signals them, and keeps no global state: main creates one Reaper and passes
// it down.
//
// # The race it closes
//
// A child can exit, and be reaped by the loop, before the code that started it
// has recorded its pid (cmd.Start returned, pid not yet registered; or runc
// exec returned and the pid file is not read yet). The reaper handles this with
// expectation windows: a caller opens a Window *before* the operation that
// creates the pid, and claims the pid through it afterwards. While a window
// is open, exits that nobody has claimed are retained; claiming a pid whose
// exit was retained delivers it at once. Once no window opened before a
// retained exit remains open, nobody can still be about to claim it and it is
// dropped, so unclaimed exits (orphans reparented to the shim, say) are kept
// only as long as some operation that could own them is in flight. A pid is
// recycled by the kernel only after a full turn of the pid space, which cannot
// happen within the lifetime of one window in practice.
package reaper

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is one reaped child.
type Exit struct {
	Pid int
	// Status is the exit code, or 128+signal when the process was killed by
	// a signal (the shell's convention, which containerd reports too).
	Status int
	// Signal is the signal that killed the process, or 0 if it exited.
	Signal syscall.Signal
	// Time is when the reaper collected the exit.
	Time time.Time
}

// Reaper reaps every child of the process and dispatches the exits.
type Reaper struct {
	mu sync.Mutex
	// seq orders windows and exits: an exit is retained while a window
	// with a smaller sequence number is open.
	seq uint64
	// subs holds the channels waiting for a pid's exit.
	subs map[int][]chan Exit
	// windows holds the sequence numbers of the open windows.
	windows map[uint64]struct{}
	// retained holds exits nobody claimed yet, while a window that might
	// claim them is open.
	retained map[int]retainedExit

	// kick wakes the loop when it waits for a first child (see loop).
	kick chan struct{}
	// echildPoll is how often the loop looks for a first child while a
	// window is open: a process started without a claim yet (`runc
	// exec`'s, whose pid comes later) is noticed within it.
	echildPoll time.Duration
	// parked is set while the loop has no child to wait for (tests).
	parked atomic.Bool
	stop   chan struct{}
	// reaping is held while the loop reaps, so that Close can wait for
	// it: after Close, this Reaper takes no exit any more.
	reaping   sync.Mutex
	closeOnce sync.Once
}

type retainedExit struct {
	exit Exit
	seq  uint64
}

// New makes the calling process a child subreaper (so that orphaned
// descendants, container inits among them, reparent to it rather than to PID
// 1) and starts the reap loop. Call Close when done.
func New() (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("reaper: become child subreaper: %w", err)
	}
	r := &Reaper{
		subs:     make(map[int][]chan Exit),
		windows:  make(map[uint64]struct{}),
		retained: make(map[int]retainedExit),
		// One slot is enough: a kick only says "look again".
		kick:       make(chan struct{}, 1),
		echildPoll: time.Millisecond,
		stop:       make(chan struct{}),
	}
	go r.loop()
	return r, nil
}

// Close stops the reap loop: once it returns, no exit is reaped any more.
// Children that exit afterwards stay zombies until the process exits;
// pending subscriptions never fire. The loop's goroutine may stay blocked
// until the next child exits, which it then leaves unreaped.
func (r *Reaper) Close() error {
	r.closeOnce.Do(func() { close(r.stop) })
	// Wait out a reap in progress; a later one sees stop first.
	r.reaping.Lock()
	defer r.reaping.Unlock()
	return nil
}

func (r *Reaper) loop() {
	for {
		// Blocks until some child has exited, and leaves it to reapAll.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil)
		switch {
		case err == nil:
		case errors.Is(err, unix.EINTR):
			continue
		default:
			// ECHILD: no child at all, and none can exit before one is
			// started. Starts happen in windows and end in claims, and
			// both kick; while a window is open the loop also polls.
			var poll <-chan time.Time
			if r.windowsOpen() {
				poll = time.After(r.echildPoll)
			}
			r.parked.Store(true)
			select {
			case <-r.stop:
				return
			case <-r.kick:
			case <-poll:
			}
			r.parked.Store(false)
			continue
		}
		r.reaping.Lock()
		select {
		case <-r.stop:
			r.reaping.Unlock()
			return
		default:
		}
		r.reapAll()
		r.reaping.Unlock()
	}
}

// wake tells a loop waiting for a first child to look again.
func (r *Reaper) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Reaper) windowsOpen() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.windows) > 0
}

// reapAll collects every exited child, then dispatches them together under
// one lock.
func (r *Reaper) reapAll() {
	var exits []Exit
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD (no children) or 0 (children, none exited).
			break
		}
		if !ws.Exited() && !ws.Signaled() {
			continue // stopped or continued: not an exit
		}
		exits = append(exits, exitOf(pid, ws))
	}
	if len(exits) > 0 {
		r.dispatch(exits)
	}
}

func exitOf(pid int, ws unix.WaitStatus) Exit {
	e := Exit{Pid: pid, Time: time.Now()}
	if ws.Signaled() {
		e.Signal = syscall.Signal(ws.Signal())
		e.Status = 128 + int(ws.Signal())
	} else {
		e.Status = ws.ExitStatus()
	}
	return e
}

func (r *Reaper) dispatch(exits []Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range exits {
		r.seq++
		if chans, ok := r.subs[e.Pid]; ok {
			delete(r.subs, e.Pid)
			for _, c := range chans {
				c <- e // buffered, one exit per channel: never blocks
			}
			continue
		}
		if len(r.windows) > 0 {
			r.retained[e.Pid] = retainedExit{exit: e, seq: r.seq}
		}
	}
}

// Window is an open expectation: exits that happen while it is open are kept
// until it is closed, so that Claim never misses an exit that happened before
// the caller learned the pid.
type Window struct {
	r      *Reaper
	seq    uint64
	closed bool
}

// Open opens a window. Open it before the operation that creates the process
// whose pid will be claimed (before cmd.Start, before `runc exec`), and Close
// it once the pid is claimed or the operation failed.
func (r *Reaper) Open() *Window {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	w := &Window{r: r, seq: r.seq}
	r.windows[w.seq] = struct{}{}
	r.wake()
	return w
}

// Claim returns a channel that receives the exit of pid exactly once, even if
// the process was reaped after the window opened but before Claim. A pid has
// one owner: if two callers claim it, only a live process's exit reaches both.
func (w *Window) Claim(pid int) <-chan Exit {
	r := w.r
	c := make(chan Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if re, ok := r.retained[pid]; ok && re.seq > w.seq {
		delete(r.retained, pid)
		c <- re.exit
		return c
	}
	r.subs[pid] = append(r.subs[pid], c)
	r.wake()
	return c
}

// Close closes the window and drops the retained exits that no open window
// can claim any more. It is idempotent.
func (w *Window) Close() {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	delete(r.windows, w.seq)
	oldest := uint64(0)
	for s := range r.windows {
		if oldest == 0 || s < oldest {
			oldest = s
		}
	}
	for pid, re := range r.retained {
		if oldest == 0 || re.seq < oldest {
			delete(r.retained, pid)
		}
	}
}

// Unclaim drops a subscription made with Claim that the caller no longer
// wants (for example when the process turned out not to exist).
func (r *Reaper) Unclaim(pid int, c <-chan Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	chans := r.subs[pid]
	for i, s := range chans {
		if s == c {
			chans = append(chans[:i], chans[i+1:]...)
			break
		}
	}
	if len(chans) == 0 {
		delete(r.subs, pid)
	} else {
		r.subs[pid] = chans
	}
}

// Start starts cmd and returns the channel its exit will arrive on. Use Wait
// (not cmd.Wait) to collect it.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan Exit, error) {
	w := r.Open()
	defer w.Close()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return w.Claim(cmd.Process.Pid), nil
}

// Wait waits for the exit of cmd, started with Start, and then lets os/exec
// finish its own work (copying output into buffers, closing pipes). os/exec's
// own wait would fail with ECHILD because the reaper got there first, and
// keep the process's pidfd open until a garbage collection, which an idle
// shim may never run: one descriptor more per runc command. Releasing the
// process first closes it (and the wait's error is expected and ignored);
// Release's -1 in Pid is undone, so that callers still read which process
// it was.
func (r *Reaper) Wait(cmd *exec.Cmd, ec <-chan Exit) Exit {
	e := <-ec
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	cmd.Process.Pid = pid
	_ = cmd.Wait()
	return e
}

// Run starts cmd and waits for it.
func (r *Reaper) Run(cmd *exec.Cmd) (Exit, error) {
	ec, err := r.Start(cmd)
	if err != nil {
		return Exit{}, err
	}
	return r.Wait(cmd, ec), nil
}
