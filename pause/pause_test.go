package pause

import (
	"strings"
	"testing"
)

// Every command line except the empty one returns at once, so Run can be
// called in-process for these; the waiting itself is tested on the built
// binary (binary_test.go), where signals cannot hit the test process.
func TestRunArgs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrHead string
	}{
		{name: "version", args: []string{"-v"}, code: 0, stdout: "podbox-pause 1.2.3\n"},
		{name: "unknown flag", args: []string{"-x"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
		{name: "help is not a flag", args: []string{"-h"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
		{name: "long version is not a flag", args: []string{"--version"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
		{name: "operand", args: []string{"sleep"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
		{name: "version twice", args: []string{"-v", "-v"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
		{name: "version with operand", args: []string{"-v", "x"}, code: 2, stderrHead: "usage: podbox-pause [-v]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Run(append([]string{"podbox-pause"}, tt.args...), "1.2.3", &stdout, &stderr)
			if code != tt.code {
				t.Errorf("Run(%q) = %d, want %d", tt.args, code, tt.code)
			}
			if stdout.String() != tt.stdout {
				t.Errorf("Run(%q) stdout = %q, want %q", tt.args, stdout.String(), tt.stdout)
			}
			if tt.stderrHead == "" && stderr.Len() != 0 || !strings.HasPrefix(stderr.String(), tt.stderrHead) {
				t.Errorf("Run(%q) stderr = %q, want it to start with %q", tt.args, stderr.String(), tt.stderrHead)
			}
		})
	}
}
