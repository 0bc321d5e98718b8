package oom

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/sandbox"
)

func TestFindMemoryHierarchy(t *testing.T) {
	const (
		sys    = "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
		tmpfs  = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
		v1cpu  = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
		v1mem  = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
		named  = "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
		hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
		pure   = "26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
		other  = "90 26 0:24 / /mnt/other\\040cg rw - cgroup2 cgroup2 rw\n"
	)
	for _, c := range []struct {
		name, mountinfo string
		want            memoryHierarchy
		err             bool
	}{
		{"debian 12 hybrid", sys + tmpfs + v1cpu + v1mem + named + hybrid, memoryHierarchy{mount: "/sys/fs/cgroup/memory"}, false},
		{"pure v2", sys + pure, memoryHierarchy{mount: "/sys/fs/cgroup", v2: true}, false},
		{"pure v2 mounted twice, other first", sys + other + pure, memoryHierarchy{mount: "/sys/fs/cgroup", v2: true}, false},
		{"escaped mount point", sys + other, memoryHierarchy{mount: "/mnt/other cg", v2: true}, false},
		{"v1 without memory controller", sys + tmpfs + v1cpu + hybrid, memoryHierarchy{mount: "/sys/fs/cgroup/unified", v2: true}, false},
		{"no cgroups", sys, memoryHierarchy{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(p, []byte(c.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			ms, err := sandbox.CgroupMounts(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := findMemoryHierarchy(ms)
			if (err != nil) != c.err || got != c.want {
				t.Errorf("got %+v, %v; want %+v, error %v", got, err, c.want, c.err)
			}
		})
	}
}

func TestParseOOMKills(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       uint64
		err        error
	}{
		{"v2 memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n", 2, nil},
		{"v1 memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", 7, nil},
		{"no counter", "low 0\nhigh 0\n", 0, errNoOOMKill},
		{"empty (file being rewritten)", "", 0, errNoOOMKill},
	} {
		got, err := parseOOMKills(c.text)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: got %d, %v; want %d, %v", c.name, got, err, c.want, c.err)
		}
	}
	if _, err := parseOOMKills("oom_kill x\n"); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("garbage counter: %v", err)
	}
}

// fakeV2 is a pure v2 tree in a temporary directory, with memory.events
// files the test rewrites as the kernel would.
type fakeV2 struct {
	t    *testing.T
	root string
}

func newFakeV2(t *testing.T, cgroups ...string) fakeV2 {
	f := fakeV2{t: t, root: t.TempDir()}
	for _, cg := range cgroups {
		if err := os.MkdirAll(filepath.Join(f.root, cg), 0o755); err != nil {
			t.Fatal(err)
		}
		f.set(cg, 0, 0)
	}
	return f
}

// set rewrites cg's memory.events in place (truncate and write, like a
// changing kernel file: renaming would replace the watched inode).
func (f fakeV2) set(cg string, max, oomKill int) {
	f.t.Helper()
	text := fmt.Sprintf("low 0\nhigh 0\nmax %d\noom %d\noom_kill %d\noom_group_kill 0\n", max, oomKill, oomKill)
	if err := os.WriteFile(filepath.Join(f.root, cg, "memory.events"), []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f fakeV2) watcher(buffer int) *Watcher {
	f.t.Helper()
	w, err := newWatcher(nil, memoryHierarchy{mount: f.root, v2: true}, buffer)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { w.Close() })
	return w
}

// expectID waits for id on ch.
func expectID(t *testing.T, ch <-chan string, id string, within time.Duration) {
	t.Helper()
	select {
	case got, ok := <-ch:
		if !ok || got != id {
			t.Fatalf("event %q (open %v), want %q", got, ok, id)
		}
	case <-time.After(within):
		t.Fatalf("no OOM event for %q within %s", id, within)
	}
}

// expectNone checks that nothing arrives on ch for d.
func expectNone(t *testing.T, ch <-chan string, d time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("unexpected OOM event %q", got)
	case <-time.After(d):
	}
}

func TestWatcherV2ReportsOOMKillGrowth(t *testing.T) {
	f := newFakeV2(t, "podbox/sb/a", "podbox/sb/b", "podbox/sb/nomem")
	f.set("podbox/sb/a", 4, 3) // kills before Add are the baseline, not news
	os.Remove(filepath.Join(f.root, "podbox/sb/nomem", "memory.events"))
	w := f.watcher(eventBuffer)
	ev := w.Events()

	if err := w.Add("a", "podbox/sb/a"); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("b", "/podbox/sb/b"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, path, want string }{
		{"a", "podbox/sb/x", "already watched"},
		{"c", "podbox/sb/a", `already watched for "a"`},
		{"c", "podbox/sb/gone", "no such file"},
		{"c", "podbox/sb/nomem", "memory controller is not enabled"},
	} {
		err := w.Add(c.id, c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), `"`+c.id+`"`) {
			t.Errorf("Add(%q, %q) = %v; want an error naming both and saying %q", c.id, c.path, err, c.want)
		}
	}
	if err := w.Add("c", "podbox/sb/gone"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cgroup: %v, want os.ErrNotExist", err)
	}

	f.set("podbox/sb/a", 9, 3) // a "max" event is not a kill
	expectNone(t, ev, 300*time.Millisecond)
	f.set("podbox/sb/a", 9, 4)
	expectID(t, ev, "a", 2*time.Second)
	f.set("podbox/sb/b", 0, 1)
	expectID(t, ev, "b", 2*time.Second)

	w.Remove("a")
	w.Remove("a") // unknown ids are ignored
	f.set("podbox/sb/a", 9, 5)
	expectNone(t, ev, 300*time.Millisecond)
	f.set("podbox/sb/b", 0, 2)
	expectID(t, ev, "b", 2*time.Second)

	// A removed container may be watched again, from its current count.
	if err := w.Add("a", "podbox/sb/a"); err != nil {
		t.Fatal(err)
	}
	f.set("podbox/sb/a", 9, 6)
	expectID(t, ev, "a", 2*time.Second)

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-ev; open {
		t.Error("Events still open after Close")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Add("d", "podbox/sb/b"); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
}

// TestCloseWithUnreadEvents: a consumer that stopped reading must not keep
// Close (or the goroutine) waiting.
func TestCloseWithUnreadEvents(t *testing.T) {
	f := newFakeV2(t, "a")
	w := f.watcher(0)
	if err := w.Add("a", "a"); err != nil {
		t.Fatal(err)
	}
	f.set("a", 0, 1)
	time.Sleep(200 * time.Millisecond) // the loop is now blocked sending
	done := make(chan error)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked by an unread event")
	}
}

func TestCloseLeavesNothingBehindV2(t *testing.T) {
	f := newFakeV2(t, "a", "b")
	checkNoLeaks(t, func() {
		w, err := newWatcher(nil, memoryHierarchy{mount: f.root, v2: true}, eventBuffer)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			if err := w.Add(id, id); err != nil {
				t.Fatal(err)
			}
		}
		w.Remove("b")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// checkNoLeaks runs fn and fails if it left goroutines or open descriptors.
// Goroutines are polled for a while: one that was told to stop may take a
// moment to be gone from the count.
func checkNoLeaks(t *testing.T, fn func()) {
	t.Helper()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	fn()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after Close:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
	if after := openFDs(t); len(after) != len(fds) {
		t.Errorf("open descriptors: %d before, %d after Close: %v → %v", len(fds), len(after), fds, after)
	}
}

// openFDs lists this process's open descriptors and what they are.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out = append(out, e.Name()+"="+target)
	}
	return out
}

// TestWatcherWaitsInPoller: an idle watcher's goroutine is parked in Go's
// network poller ("IO wait"), not blocked in epoll_wait ("syscall"), which
// would hold an OS thread of every idle shim for good.
func TestWatcherWaitsInPoller(t *testing.T) {
	f := newFakeV2(t, "a")
	w := f.watcher(eventBuffer)
	if err := w.Add("a", "a"); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "oom.(*Watcher).run(") {
				head, _, _ := strings.Cut(g, "\n")
				return head
			}
		}
		return "no watcher goroutine"
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(state(), "[IO wait") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := state(); !strings.Contains(s, "[IO wait") {
		t.Fatalf("idle watcher goroutine: %s, want it parked in the poller ([IO wait])", s)
	}
	// And it still wakes up for a kill.
	f.set("a", 0, 1)
	expectID(t, w.Events(), "a", 2*time.Second)
}
