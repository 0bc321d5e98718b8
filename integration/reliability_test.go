package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Several containers that ignore SIGTERM (a sleep as PID 1 does): the stop
// escalates to SIGKILL for every one of them after the timeout, instead of
// waiting for the second one forever.
func TestSandboxStopEscalatesForEveryContainer(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "stubborn")
	for _, name := range []string{"one", "two", "three"} {
		n.mustRun("run", "-d", "--sandbox", "stubborn", "--name", name, "--rootfs", fs, "--", "sleep", "1000")
	}
	start := time.Now()
	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		code, _, stderr = n.run("sandbox", "stop", "--timeout", "1", "stubborn")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("sandbox stop --timeout 1 of three containers ignoring SIGTERM still runs after 60 s")
	}
	if code != 0 {
		t.Fatalf("sandbox stop: exit %d: %s", code, stderr)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if st := n.inspect("stubborn")["state"]; st != "stopped" {
		t.Errorf("state after stop: %v", st)
	}
	if out := n.mustRun("ps", "--sandbox", "stubborn", "-q"); out != "" {
		t.Errorf("containers still running after the stop: %s", out)
	}
	if out := n.mustRun("ps", "-a", "--sandbox", "stubborn", "-q"); strings.Count(out, "\n") != 3 {
		t.Errorf("ps -a after the stop lists %q, want the three stopped containers", out)
	}
	n.mustRun("sandbox", "rm", "stubborn")
}

// An unreadable sandbox record (empty, as a full disk can leave it) hides
// no other sandbox from ls, and rm -f removes what is left of it: through
// its shim while that runs, or without it (pause by the cgroup, veth by
// name, lease, port rules, pin, directory) after it was killed. The leak
// check proves nothing is left.
func TestBrokenSandboxRecord(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	for _, shimKilled := range []bool{false, true} {
		good := n.sandbox("--name", "good")
		broken := n.sandbox("--name", "broken", "-p", "8093:80")
		n.mustRun("run", "-d", "--sandbox", "broken", "--name", "inside", "--rootfs", fs, "--", "sleep", "1000")
		if shimKilled {
			if err := syscall.Kill(int(n.inspect("broken")["shimPid"].(float64)), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(n.root, "sandboxes", broken, "sandbox.json"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		var listed []struct{ ID, Name, State, Problem string }
		if err := json.Unmarshal([]byte(n.mustRun("sandbox", "ls", "-o", "json")), &listed); err != nil {
			t.Fatal(err)
		}
		if len(listed) != 2 {
			t.Fatalf("sandbox ls with one broken record lists %+v", listed)
		}
		for _, sb := range listed {
			switch sb.ID {
			case good:
				if sb.State != "ready" {
					t.Errorf("the good sandbox is %s", sb.State)
				}
			case broken:
				if sb.State != "broken" || sb.Name != "broken" || !strings.Contains(sb.Problem, "unreadable") {
					t.Errorf("the broken sandbox is listed as %+v", sb)
				}
			}
		}
		if table := n.mustRun("sandbox", "ls"); !strings.Contains(table, "broken") {
			t.Errorf("sandbox ls table:\n%s", table)
		}
		code, _, stderr := n.run("sandbox", "rm", "broken")
		assertOneLineError(t, code, stderr, `sandbox "broken"`, "unreadable", "-f")
		n.mustRun("sandbox", "rm", "-f", "broken")
		if table := nftTable(t, n.node); strings.Contains(table, "8093") {
			t.Errorf("shim killed %v: the port rule outlives the broken sandbox:\n%s", shimKilled, table)
		}
		if out := n.mustRun("sandbox", "ls", "-q"); out != good+"\n" {
			t.Errorf("shim killed %v: after rm -f of the broken sandbox, ls -q says %q", shimKilled, out)
		}
		n.mustRun("sandbox", "rm", "-f", "good")
	}
}
