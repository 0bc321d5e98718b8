package integration

import (
	"strings"
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
