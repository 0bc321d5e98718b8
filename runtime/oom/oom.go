// Package oom owns noticing that the kernel's OOM killer acted in a
// container's cgroup: a Watcher is told which cgroups belong to which
// containers and reports a container's ID on Events each time it notices an
// OOM kill there. The shim turns those IDs into /tasks/oom events, as
// containerd's runc shim does.
//
// It never kills anything, never changes a cgroup's limits and never
// publishes an event itself; it only watches. On hosts with the v1 memory
// controller (v1 and hybrid hosts) it registers memory.oom_control with
// cgroup.event_control and an eventfd per cgroup; on pure cgroup v2 hosts it
// watches each cgroup's memory.events with inotify and reports when its
// oom_kill counter grows. Either way one goroutine and one epoll instance
// serve every cgroup of the shim, and the goroutine waits in Go's network
// poller, not in epoll_wait: a goroutine blocked in a system call holds an OS
// thread for as long as it blocks, which for an idle shim is forever.
package oom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/sandbox"
)

// eventBuffer is how many noticed OOM kills may wait for the consumer before
// the watcher's goroutine waits for it. OOM kills are rare; the buffer only
// absorbs a burst (a pod whose containers all hit their limits at once) so
// that noticing the next one is not delayed by a slow consumer.
const eventBuffer = 64

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("oom watcher closed")

// Epoll tokens. The epoll data word carries a token rather than a file
// descriptor: a descriptor closed by Remove can be reused at once by Add, and
// an event still in the loop's batch for the old one must not be taken for
// the new one. Tokens are never reused.
const (
	tokenWake    uint64 = iota // the eventfd Close signals to stop the loop
	tokenInotify               // v2: the inotify descriptor
	firstToken                 // v1: the first per-cgroup eventfd token
)

// Watcher notices OOM kills in the cgroups added to it. It is safe for
// concurrent use. Events are delivered by a single goroutine started by New
// and ended by Close.
type Watcher struct {
	log *slog.Logger
	mem memoryHierarchy

	epfd int
	// ep owns epfd once New succeeds, registered with Go's network poller
	// (an epoll descriptor is readable while it has events to report): the
	// loop parks in the poller instead of in epoll_wait.
	ep      *os.File
	wake    int // eventfd: Close writes to it so that the loop wakes up
	inotify int // v2 only; -1 on v1

	events  chan string
	closing chan struct{} // closed by Close: the loop must stop sending
	done    chan struct{} // closed when the loop goroutine has returned

	mu     sync.Mutex
	closed bool
	byID   map[string]*watch
	// byKey finds a watch from what the kernel reports: the epoll token of
	// its eventfd on v1, its inotify watch descriptor on v2.
	byKey     map[uint64]*watch
	nextToken uint64 // v1
}

// watch is one container's registration.
type watch struct {
	id   string
	path string // as given to Add, for messages
	dir  string // the cgroup's directory in the memory hierarchy
	key  uint64 // see Watcher.byKey
	efd  int    // v1: the eventfd the kernel signals; -1 on v2
	// oomKills is the last oom_kill count read from memory.events (v2).
	oomKills uint64
	// killsAtAdd is the cgroup's oom_kill count when Add began watching
	// it, the baseline of Killed.
	killsAtAdd uint64
}

// New finds the host's memory cgroup hierarchy and starts the watcher's
// goroutine. log may be nil.
func New(log *slog.Logger) (*Watcher, error) {
	ms, err := sandbox.HostCgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("oom watcher: %w", err)
	}
	mem, err := findMemoryHierarchy(ms)
	if err != nil {
		return nil, fmt.Errorf("oom watcher: %w", err)
	}
	return newWatcher(log, mem, eventBuffer)
}

// newWatcher is New with the hierarchy and buffer given, so that tests can
// point it at a fake v2 tree.
func newWatcher(log *slog.Logger, mem memoryHierarchy, buffer int) (_ *Watcher, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		log:       log.With("component", "oom"),
		mem:       mem,
		epfd:      -1,
		wake:      -1,
		inotify:   -1,
		events:    make(chan string, buffer),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		byID:      map[string]*watch{},
		byKey:     map[uint64]*watch{},
		nextToken: firstToken,
	}
	defer func() {
		if err != nil {
			w.closeFDs()
		}
	}()
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("oom watcher: epoll_create1: %w", err)
	}
	if w.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("oom watcher: eventfd: %w", err)
	}
	if err := w.epollAdd(w.wake, tokenWake); err != nil {
		return nil, fmt.Errorf("oom watcher: %w", err)
	}
	if mem.v2 {
		if w.inotify, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
			return nil, fmt.Errorf("oom watcher: inotify_init1: %w", err)
		}
		if err := w.epollAdd(w.inotify, tokenInotify); err != nil {
			return nil, fmt.Errorf("oom watcher: %w", err)
		}
	}
	// Non-blocking, so that os.NewFile registers it with the poller.
	if err := unix.SetNonblock(w.epfd, true); err != nil {
		return nil, fmt.Errorf("oom watcher: epoll descriptor: %w", err)
	}
	w.ep = os.NewFile(uintptr(w.epfd), "oom-epoll")
	rc, err := w.ep.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("oom watcher: epoll descriptor: %w", err)
	}
	go w.run(rc)
	return w, nil
}

// Events returns the channel on which the ID of a container is sent each time
// an OOM kill in its cgroup is noticed. Kills that happen close together may
// be noticed, and so reported, once; on v1 the kernel signals every round of
// its OOM handling, so one kill may be reported more than once, as by
// containerd's runc shim. Consumers should treat a report as "this container
// saw an OOM kill", not count them. The channel is closed by Close.
func (w *Watcher) Events() <-chan string { return w.events }

// Add starts watching the cgroup at cgroupPath (below the hierarchy roots,
// "podbox/SANDBOX/CONTAINER", as in runtime/metrics.Read) for the container
// id. The cgroup must exist. Watching one id or one cgroup twice is an error.
func (w *Watcher) Add(id, cgroupPath string) error {
	// A leading slash (as in /proc/PID/cgroup) means the same path.
	dir := filepath.Join(w.mem.mount, filepath.Clean("/"+cgroupPath))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("oom watch of %q (cgroup %s): %w", id, cgroupPath, ErrClosed)
	}
	if _, ok := w.byID[id]; ok {
		return fmt.Errorf("oom watch of %q (cgroup %s): container already watched", id, cgroupPath)
	}
	for _, o := range w.byID {
		if o.dir == dir {
			return fmt.Errorf("oom watch of %q (cgroup %s): cgroup already watched for %q", id, cgroupPath, o.id)
		}
	}
	wt := &watch{id: id, path: cgroupPath, dir: dir, efd: -1}
	var err error
	if w.mem.v2 {
		err = w.addV2(wt)
	} else {
		err = w.addV1(wt)
	}
	if err != nil {
		return fmt.Errorf("oom watch of %q (cgroup %s): %w", id, cgroupPath, err)
	}
	w.byID[id] = wt
	w.byKey[wt.key] = wt
	w.log.Debug("watching for OOM kills", "id", id, "cgroup", cgroupPath)
	return nil
}

// Killed reports whether the kernel's OOM killer killed a process in the
// cgroup of container id since Add: whether the cgroup's oom_kill counter
// (memory.events on v2, memory.oom_control on v1) grew. It reads the
// counter itself, so it knows of a kill before the kill's event has been
// noticed. It fails for an id not watched (never added, removed, or its
// cgroup gone) and where the kernel keeps no counter (before 4.13).
func (w *Watcher) Killed(id string) (bool, error) {
	w.mu.Lock()
	wt, ok := w.byID[id]
	w.mu.Unlock()
	if !ok {
		return false, fmt.Errorf("oom kills of %q: container not watched", id)
	}
	kills, err := readOOMKills(filepath.Join(wt.dir, w.counterFile()))
	if err != nil {
		return false, fmt.Errorf("oom kills of %q (cgroup %s): %w", id, wt.path, err)
	}
	return kills > wt.killsAtAdd, nil
}

// counterFile is the file of a memory cgroup that holds its oom_kill
// counter.
func (w *Watcher) counterFile() string {
	if w.mem.v2 {
		return "memory.events"
	}
	return "memory.oom_control"
}

// Remove stops watching the container id; an unknown id is ignored. A kill
// the watcher noticed just before Remove may still be sent on Events; none
// that happens after Remove returns is.
func (w *Watcher) Remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt, ok := w.byID[id]; ok {
		w.drop(wt)
		w.log.Debug("stopped watching for OOM kills", "id", id, "cgroup", wt.path)
	}
}

// drop forgets wt and releases what the kernel holds for it. w.mu is held.
func (w *Watcher) drop(wt *watch) {
	delete(w.byID, wt.id)
	delete(w.byKey, wt.key)
	if w.mem.v2 {
		// EINVAL means the kernel already removed the watch (the cgroup
		// was deleted): nothing left to release.
		if _, err := unix.InotifyRmWatch(w.inotify, uint32(wt.key)); err != nil && !errors.Is(err, unix.EINVAL) {
			w.log.Warn("inotify_rm_watch", "id", wt.id, "cgroup", wt.path, "error", err)
		}
		return
	}
	// Closing the eventfd also ends the kernel's registration with
	// cgroup.event_control, which watches for the eventfd's release.
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, wt.efd, nil)
	unix.Close(wt.efd)
	wt.efd = -1
}

// Close stops the watcher's goroutine, releases every registration and
// descriptor, and closes the Events channel. Kills noticed but not yet
// received are dropped. Close is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.closing)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, werr := unix.Write(w.wake, one[:])
	w.mu.Unlock()
	if werr != nil {
		// The loop cannot be woken; leaving it blocked would leak it and
		// keep the descriptors open, so there is nothing better than
		// saying so. An eventfd write fails only if its counter is at
		// its maximum, which one write per Close cannot reach.
		return fmt.Errorf("close oom watcher: wake its goroutine: %w", werr)
	}
	<-w.done

	w.mu.Lock()
	for _, wt := range w.byID {
		w.drop(wt)
	}
	w.mu.Unlock()
	w.closeFDs()
	close(w.events)
	return nil
}

func (w *Watcher) closeFDs() {
	if w.ep != nil {
		w.ep.Close() // and with it epfd
		w.ep, w.epfd = nil, -1
	}
	for _, fd := range []*int{&w.inotify, &w.wake, &w.epfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

func (w *Watcher) epollAdd(fd int, token uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

func epollToken(ev unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// run is the watcher's only goroutine: it waits on every registration at
// once and sends the IDs of the containers whose cgroups saw an OOM kill.
// rc is the epoll descriptor as the poller knows it.
func (w *Watcher) run(rc syscall.RawConn) {
	defer close(w.done)
	evs := make([]unix.EpollEvent, 32)
	for {
		var n int
		var err error
		// Read calls the function again each time the poller reports the
		// descriptor readable, until it returns true: epoll_wait with no
		// timeout never blocks the thread.
		rerr := rc.Read(func(fd uintptr) bool {
			for {
				n, err = unix.EpollWait(int(fd), evs, 0)
				if !errors.Is(err, unix.EINTR) {
					return err != nil || n > 0
				}
			}
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			// Only a broken epoll descriptor gets here; OOM kills can no
			// longer be noticed, which must not pass silently.
			w.log.Error("oom watcher stopped: epoll_wait failed", "error", err)
			return
		}
		var oomed []string
		for _, ev := range evs[:n] {
			switch tok := epollToken(ev); tok {
			case tokenWake:
				return
			case tokenInotify:
				oomed = append(oomed, w.readInotify()...)
			default:
				oomed = append(oomed, w.readEventfd(tok)...)
			}
		}
		for _, id := range oomed {
			w.log.Debug("OOM kill noticed", "id", id)
			select {
			case w.events <- id:
			case <-w.closing:
				return
			}
		}
	}
}

// cgroupGone reports whether a watched cgroup's directory was removed.
func cgroupGone(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, os.ErrNotExist)
}
