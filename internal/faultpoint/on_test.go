//go:build podbox_faults

package faultpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		step string
		nth  int
		ok   bool
	}{
		{"", "", 0, false},
		{"create.record", "create.record", 1, true},
		{"run.start:3", "run.start", 3, true},
		{"run.start:0", "", 0, false},
		{"run.start:x", "", 0, false},
	} {
		step, nth, ok := parse(tt.in)
		if step != tt.step || nth != tt.nth || ok != tt.ok {
			t.Errorf("parse(%q) = %q, %d, %v; want %q, %d, %v", tt.in, step, nth, ok, tt.step, tt.nth, tt.ok)
		}
	}
}

// A point that names another step, or the right step before its Nth hit,
// lets the process live.
func TestPointSpares(t *testing.T) {
	t.Setenv(Env, "some.step:2")
	Point("other.step")
	Point("some.step") // the first hit of two
}

// The Nth hit of the named step kills the process with SIGKILL, and
// nothing after it runs.
func TestPointKills(t *testing.T) {
	if os.Getenv("FAULTPOINT_CHILD") == "1" {
		Point("step")
		fmt.Println("after the first hit")
		Point("step")
		fmt.Println("after the second hit")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPointKills$")
	cmd.Env = append(os.Environ(), "FAULTPOINT_CHILD=1", Env+"=step:2")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the child was not killed: %v, output %q", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v, want SIGKILL", err)
	}
	if !strings.Contains(string(out), "after the first hit") || strings.Contains(string(out), "after the second hit") {
		t.Fatalf("the child printed %q: want it to die at the second hit, not the first", out)
	}
}
