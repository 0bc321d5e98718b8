package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// As a user other than root, a command that touches podbox's state is
// refused with one line before anything is made; help and version answer.
func TestNonRootIsRefused(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		a := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Version: "test",
			Getenv: func(k string) string { return map[string]string{"PODBOX_ROOT": root}[k] }, Geteuid: func() int { return 1000 }}
		return a.Run(context.Background(), args), out.String(), errb.String()
	}
	for _, args := range [][]string{{"sandbox", "create"}, {"sandbox", "ls"}, {"volume", "create", "v"}, {"ps"}, {"play", "--dry-run", "x.yaml"}} {
		code, out, stderr := run(args...)
		want := "podbox must run as root: sandboxes need namespaces, mounts, cgroups and network devices, and the state root " + root + " is root's (running as uid 1000; try sudo)\n"
		if code != 1 || out != "" || stderr != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1, %q", args, code, out, stderr, want)
		}
	}
	for _, args := range [][]string{{"version"}, {"--help"}, {"help", "ps"}, {"sandbox", "create", "--help"}} {
		if code, out, stderr := run(args...); code != 0 || out == "" || stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want its text", args, code, out, stderr)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("the refused commands made the state root: %v", err)
	}
}
