package oom

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// addV1 registers an eventfd for the cgroup's memory.oom_control, the
// classic v1 interface runc and containerd's v1 shims use: the kernel
// signals the eventfd whenever the cgroup runs out of memory, and once more
// when the cgroup is removed. w.mu is held.
func (w *Watcher) addV1(wt *watch) error {
	ctl, err := os.Open(filepath.Join(wt.dir, "memory.oom_control"))
	if err != nil {
		return err
	}
	// The kernel keeps what it needs of memory.oom_control once
	// registered; the file is only the registration's argument.
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	p := filepath.Join(wt.dir, "cgroup.event_control")
	if err := os.WriteFile(p, []byte(reg), 0o600); err != nil {
		unix.Close(efd)
		return fmt.Errorf("register for OOM notifications: %w", err)
	}
	tok := w.nextToken
	if err := w.epollAdd(efd, tok); err != nil {
		unix.Close(efd)
		return err
	}
	w.nextToken++
	wt.efd, wt.key = efd, tok
	// The baseline of Killed; a kernel without the counter (before 4.13)
	// leaves it 0, and Killed says it cannot tell.
	wt.killsAtAdd, _ = readOOMKills(ctl.Name())
	return nil
}

// readEventfd handles a signalled eventfd: an OOM in the cgroup, unless the
// cgroup is gone (the kernel signals its removal the same way). It returns
// the container's ID, or nothing.
func (w *Watcher) readEventfd(tok uint64) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.byKey[tok]
	if !ok {
		// Removed while this event was in the loop's batch.
		return nil
	}
	var buf [8]byte
	if _, err := unix.Read(wt.efd, buf[:]); err != nil {
		if !errors.Is(err, unix.EAGAIN) {
			w.log.Warn("read OOM eventfd", "id", wt.id, "cgroup", wt.path, "error", err)
		}
		return nil
	}
	if cgroupGone(wt.dir) {
		// Its container is gone; release the eventfd now rather than
		// at Remove. Remove of the id is then a no-op.
		w.log.Debug("cgroup removed, OOM watch ends", "id", wt.id, "cgroup", wt.path)
		w.drop(wt)
		return nil
	}
	return []string{wt.id}
}
