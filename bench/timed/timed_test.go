package timed

import (
	"os/exec"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	out, d, err := Run(exec.Command("sh", "-c", "echo ' hi '; sleep 0.01"), "sh", []string{"-c", "…"})
	if err != nil || out != "hi" || d <= 0 {
		t.Fatalf("Run = %q, %v, %v; want hi, a positive duration, nil", out, d, err)
	}
	_, _, err = Run(exec.Command("sh", "-c", "echo boom >&2; exit 3"), "tool", []string{"sub", "arg"})
	if err == nil || !strings.Contains(err.Error(), "tool sub arg") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failure = %v, want it to name the command and carry its stderr", err)
	}
}
