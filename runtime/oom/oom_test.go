package oom

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

const (
	// limit is the memory limit of the test cgroups: far below what hog
	// asks for, far above what calm does.
	limit = "8388608" // 8 MiB
	// hog builds a 64 MB shell variable: the command substitution's output
	// is read into the shell's own memory. It waits for a line first, so
	// that it is in its cgroup before it allocates.
	hog = `read go; x=$(head -c 64000000 /dev/zero | tr '\0' a); echo survived`
	// calm builds a 1 MB one.
	calm = `read go; x=$(head -c 1000000 /dev/zero | tr '\0' a); echo fine`
)

// TestOOMKillInRealCgroup makes cgroups with an 8 MiB limit in every
// hierarchy, as package sandbox does for containers, and has the kernel's
// OOM killer act in one of them.
func TestOOMKillInRealCgroup(t *testing.T) {
	testnode.RequirePrivileged(t)
	parent := testCgroupParent(t)
	var w *Watcher
	checkNoLeaks(t, func() {
		var err error
		if w, err = New(nil); err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		t.Logf("memory hierarchy %+v", w.mem)
		hogCg := limitedCgroup(t, w.mem, parent, "hog")
		calmCg := limitedCgroup(t, w.mem, parent, "calm")
		for id, cg := range map[string]sandbox.Cgroup{"hog": hogCg, "calm": calmCg} {
			if err := w.Add(id, cg.Path); err != nil {
				t.Fatal(err)
			}
		}
		ev := w.Events()

		// Under the limit: nothing to report.
		if out, err := runIn(t, calmCg, calm); err != nil || out != "fine\n" {
			t.Fatalf("calm process: %q, %v", out, err)
		}
		expectNone(t, ev, time.Second)

		// Over the limit: the OOM killer acts, and the watcher says where.
		before := oomKills(t, w.mem, hogCg)
		out, err := runIn(t, hogCg, hog)
		t.Logf("hog process: %q, %v", out, err)
		if after := oomKills(t, w.mem, hogCg); after <= before {
			t.Fatalf("no OOM kill happened in %s (oom_kill %d → %d)", hogCg.Path, before, after)
		}
		expectID(t, ev, "hog", 5*time.Second)
		if killed, err := w.Killed("hog"); err != nil || !killed {
			t.Errorf("Killed(hog) after the kill = %v, %v", killed, err)
		}
		if killed, err := w.Killed("calm"); err != nil || killed {
			t.Errorf("Killed(calm) = %v, %v", killed, err)
		}
		// One kill can take several rounds of the OOM path in v1; any
		// further report must still be about hog.
		drain(t, ev, "hog", 500*time.Millisecond)

		// After Remove, a kill in that cgroup is not reported.
		w.Remove("hog")
		before = oomKills(t, w.mem, hogCg)
		runIn(t, hogCg, hog)
		if after := oomKills(t, w.mem, hogCg); after <= before {
			t.Fatalf("no OOM kill happened in %s after Remove (oom_kill %d → %d)", hogCg.Path, before, after)
		}
		expectNone(t, ev, time.Second)

		// A cgroup removed while watched ends its watch without a report
		// (v1 signals the eventfd on removal too).
		if err := calmCg.Remove(); err != nil {
			t.Fatal(err)
		}
		expectNone(t, ev, time.Second)
		deadline := time.Now().Add(2 * time.Second)
		for watched(w, "calm") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if watched(w, "calm") {
			t.Error("the watch of a removed cgroup was kept")
		}

		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, open := <-ev; open {
			t.Error("Events still open after Close")
		}
	})
}

// testCgroupParent makes "podbox-test-RANDOM" in every hierarchy and removes
// it (with anything left inside) when the test ends.
func testCgroupParent(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	parent := "podbox-test-" + hex.EncodeToString(b)
	if err := (sandbox.Cgroup{Path: parent}).Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := (sandbox.Cgroup{Path: parent}).Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return parent
}

// limitedCgroup makes parent/name with a memory limit that swap cannot
// soften.
func limitedCgroup(t *testing.T, mem memoryHierarchy, parent, name string) sandbox.Cgroup {
	t.Helper()
	cg := sandbox.Cgroup{Path: parent + "/" + name}
	if mem.v2 {
		// A v2 cgroup has memory files only if its parent delegates the
		// controller.
		ctl := filepath.Join(mem.mount, parent, "cgroup.subtree_control")
		if err := os.WriteFile(ctl, []byte("+memory"), 0o644); err != nil {
			t.Fatalf("enable memory in %s: %v", ctl, err)
		}
	}
	if err := cg.Create(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mem.mount, cg.Path)
	limits := []struct {
		file     string
		optional bool
	}{{"memory.limit_in_bytes", false}, {"memory.memsw.limit_in_bytes", true}}
	if mem.v2 {
		limits = []struct {
			file     string
			optional bool
		}{{"memory.max", false}, {"memory.swap.max", true}}
	}
	for _, l := range limits {
		v := limit
		if l.file == "memory.swap.max" {
			v = "0"
		}
		p := filepath.Join(dir, l.file)
		err := os.WriteFile(p, []byte(v), 0o644)
		if l.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("set %s: %v", p, err)
		}
	}
	return cg
}

// oomKills reads the cgroup's oom_kill counter (memory.oom_control on v1,
// memory.events on v2), the kernel's own record that a kill happened.
func oomKills(t *testing.T, mem memoryHierarchy, cg sandbox.Cgroup) uint64 {
	t.Helper()
	file := "memory.oom_control"
	if mem.v2 {
		file = "memory.events"
	}
	n, err := readOOMKills(filepath.Join(mem.mount, cg.Path, file))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runIn runs the shell script in cg and returns its output and how it
// ended. The process is killed if it outlives the test's patience.
func runIn(t *testing.T, cg sandbox.Cgroup, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sh := exec.CommandContext(ctx, "sh", "-c", script)
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Add(sh.Process.Pid); err != nil {
		sh.Process.Kill()
		sh.Wait()
		t.Fatal(err)
	}
	stdin.Write([]byte("go\n"))
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	err = sh.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%q in %s did not end within 30s", script, cg.Path)
	}
	return out.String(), err
}

// drain reads events for d, failing on any for an ID other than id.
func drain(t *testing.T, ch <-chan string, id string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case got := <-ch:
			if got != id {
				t.Fatalf("OOM event for %q, want only %q", got, id)
			}
			t.Logf("another OOM event for %q", got)
		case <-timeout:
			return
		}
	}
}

func watched(w *Watcher, id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.byID[id]
	return ok
}
