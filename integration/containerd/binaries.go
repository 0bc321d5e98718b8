package containerd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/testnode"
)

// CrictlBinary returns crictl's path: from PATH, else from where `make deps`
// installs it (GOBIN, or GOPATH/bin), so a plain `go test` finds it too.
// Missing, it skips the test (fails it in CI).
func CrictlBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		// One line each, GOBIN's empty when unset.
		lines := strings.Split(string(out), "\n")
		if len(lines) >= 2 {
			if gobin := strings.TrimSpace(lines[0]); gobin != "" {
				dirs = append(dirs, gobin)
			}
			if gopath := filepath.SplitList(strings.TrimSpace(lines[1])); len(gopath) > 0 && gopath[0] != "" {
				dirs = append(dirs, filepath.Join(gopath[0], "bin")) // go install uses the first
			}
		}
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, "crictl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testnode.Skip(t, "crictl not found on PATH nor in %v (run `make deps`)", dirs)
	return ""
}

// V2Binary returns containerd 2.x: $PODBOX_BIN_DIR/containerd2 (`make
// containerd2`), else bin/containerd2 of the podbox checkout. If neither
// exists it builds integration/containerd2 into that place (about a minute
// on a cold module cache); a failed build fails the test — there is no
// skipping containerd 2.
func V2Binary(t testing.TB) string {
	t.Helper()
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	repo := filepath.Dir(strings.TrimSpace(string(mod)))
	if err != nil || repo == "." || repo == "" {
		t.Fatalf("containerd 2: find the podbox module (go env GOMOD): %v", err)
	}
	binDir := os.Getenv("PODBOX_BIN_DIR")
	if binDir == "" {
		binDir = filepath.Join(repo, "bin")
	}
	out := filepath.Join(binDir, "containerd2")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatalf("containerd 2: %v", err)
	}
	// Build beside the target and rename, so a concurrent test never runs
	// a half-written binary.
	tmp, err := os.CreateTemp(binDir, ".containerd2-*")
	if err != nil {
		t.Fatalf("containerd 2: %v", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp.Name(), ".")
	cmd.Dir = filepath.Join(repo, "integration", "containerd2")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("containerd 2: build %s: %v\n%s", cmd.Dir, err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		t.Fatalf("containerd 2: %v", err)
	}
	t.Logf("built %s in %s", out, time.Since(start).Round(time.Second))
	return out
}
