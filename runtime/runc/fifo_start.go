package runc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// execFifo is the name of the FIFO in runc's state directory of a created
// container. runc's init for that container blocks writing one byte to it;
// `runc start` is, at heart, reading that byte and removing the FIFO (runc
// reports a container whose FIFO is gone as running). It has been so since
// runc 1.0.
const execFifo = "exec.fifo"

// startByFifo does what `runc start` does for container id, in-process: it
// opens the container's exec FIFO for reading, which lets the waiting init
// go on to exec the user process, takes the byte the init writes, and removes
// the FIFO. A runc start is a whole runc process (6–8 ms here, most of a
// container start's overhead over `runc run`); this is a read.
//
// It reports false, having done nothing, when the fast path does not apply:
// the runtime is not runc, its state directory is not known, or the FIFO is
// not there (say a runtime that works otherwise); the caller then runs
// `runc start`. initPid is the container's init, watched so that a dead init
// is an error instead of a wait forever.
func (rt *Runtime) startByFifo(ctx context.Context, id string, initPid int) (bool, error) {
	if rt.root == "" || filepath.Base(rt.binary) != "runc" {
		return false, nil
	}
	path := filepath.Join(rt.root, id, execFifo)
	// Non-blocking: a blocking open would wait for a writer forever if the
	// init died; the poll below watches for it instead.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, wrap(id, "start", fmt.Errorf("open %s: %w", path, err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return false, nil // not runc's FIFO after all: let runc start judge
	}
	for {
		var b [1]byte
		n, err := unix.Read(fd, b[:])
		switch {
		case n == 1:
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return true, wrap(id, "start", fmt.Errorf("remove %s: %w", path, err))
			}
			return true, nil
		case err != nil && !errors.Is(err, unix.EAGAIN):
			return true, wrap(id, "start", fmt.Errorf("read %s: %w", path, err))
		}
		// Nothing yet (EAGAIN), or EOF because the init has not opened
		// its end yet, or has closed it by dying. Wait a little, for the
		// byte or for the init's death.
		if err := ctx.Err(); err != nil {
			return true, wrap(id, "start", err)
		}
		if unix.Kill(initPid, 0) != nil || zombie(initPid) {
			return true, wrap(id, "start", fmt.Errorf("container init %d exited before the start", initPid))
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 1); err != nil && !errors.Is(err, unix.EINTR) {
			return true, wrap(id, "start", fmt.Errorf("poll %s: %w", path, err))
		}
		if fds[0].Revents&unix.POLLHUP != 0 && fds[0].Revents&unix.POLLIN == 0 {
			// A FIFO whose writer has not come yet reports HUP at once;
			// don't spin on it.
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// zombie reports whether pid has exited but is not reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	return i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}
