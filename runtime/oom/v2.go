package oom

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addV2 watches the cgroup's memory.events and reads its oom_kill counter
// as the baseline. The watch comes first so that a kill between the two
// steps still produces an event, read against the baseline. w.mu is held,
// so the loop cannot look the watch up before its baseline is set.
func (w *Watcher) addV2(wt *watch) error {
	p := filepath.Join(wt.dir, "memory.events")
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if _, derr := os.Stat(wt.dir); derr != nil {
			return derr
		}
		return fmt.Errorf("no %s: the memory controller is not enabled for the cgroup", p)
	}
	// IN_MASK_CREATE refuses a file already watched: inotify would return
	// the same descriptor, and two containers cannot share one.
	wd, err := unix.InotifyAddWatch(w.inotify, p, unix.IN_MODIFY|unix.IN_MASK_CREATE)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", p, err)
	}
	wt.key = uint64(wd)
	kills, err := readOOMKills(p)
	if err != nil {
		unix.InotifyRmWatch(w.inotify, uint32(wd))
		return err
	}
	wt.oomKills, wt.killsAtAdd = kills, kills
	return nil
}

// readInotify drains the inotify descriptor and returns the IDs of the
// containers whose oom_kill counter grew.
func (w *Watcher) readInotify() []string {
	var ids []string
	var buf [4096]byte
	for {
		n, err := unix.Read(w.inotify, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				w.log.Warn("read inotify", "error", err)
			}
			return ids
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if id, ok := w.checkV2(uint64(ev.Wd), ev.Mask); ok {
				ids = append(ids, id)
			}
		}
	}
}

// checkV2 rereads the memory.events of the watch wd after a modification.
func (w *Watcher) checkV2(wd uint64, mask uint32) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.byKey[wd]
	if !ok {
		return "", false
	}
	if mask&unix.IN_IGNORED != 0 {
		// The kernel dropped the watch: the cgroup was removed.
		w.log.Debug("cgroup removed, OOM watch ends", "id", wt.id, "cgroup", wt.path)
		w.drop(wt)
		return "", false
	}
	p := filepath.Join(wt.dir, "memory.events")
	kills, err := readOOMKills(p)
	if err != nil {
		// A missing file is a cgroup being removed (IN_IGNORED follows);
		// a missing counter, a file caught while rewritten.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errNoOOMKill) {
			w.log.Warn("read memory.events", "id", wt.id, "cgroup", wt.path, "error", err)
		}
		return "", false
	}
	// memory.events also changes on every "max" and "high" event, which a
	// cgroup at its limit produces often; only a grown oom_kill is a kill.
	grew := kills > wt.oomKills
	wt.oomKills = kills
	return wt.id, grew
}

// errNoOOMKill means memory.events had no oom_kill line (kernels before
// 4.13, or a file read while being rewritten in tests).
var errNoOOMKill = errors.New("no oom_kill counter")

// readOOMKills reads the oom_kill counter of a memory.events file.
func readOOMKills(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := parseOOMKills(string(b))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// parseOOMKills finds "oom_kill N" in memory.events' flat keyed text.
func parseOOMKills(text string) (uint64, error) {
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != "oom_kill" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("oom_kill %q is not a number", v)
		}
		return n, nil
	}
	return 0, errNoOOMKill
}
