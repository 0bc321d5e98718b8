package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// staticELF is a minimal static x86-64 ELF header: what pause-image checks
// of a pause binary, without building one.
func staticELF() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1 // ELFCLASS64, little-endian, EV_CURRENT
	h[16], h[18], h[20] = 2, 62, 1
	h[52], h[54], h[58] = 64, 56, 64
	return h
}

// runImage runs podbox with args as if installed at exe, and returns the
// exit code, stdout and stderr.
func runImage(t *testing.T, exe string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := &App{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }, Executable: exe,
		Now: time.Now, Version: "1.2.3+dirty",
	}
	code := app.Run(context.Background(), append([]string{"--root", t.TempDir()}, args...))
	return code, out.String(), errb.String()
}

// indexRef reads the archive's index.json and returns the image name
// containerd will give it.
func indexRef(t *testing.T, archive []byte) string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("archive has no index.json")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		return idx.Manifests[0].Annotations["io.containerd.image.name"]
	}
}

func TestPauseImageCommand(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "podbox")
	if err := os.WriteFile(filepath.Join(dir, PauseBinary), staticELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pause.tar")

	// Defaults: the pause beside podbox, ref localhost/podbox/pause:<version>
	// with the version made a valid tag.
	code, stdout, stderr := runImage(t, exe, "pause-image", "-o", out)
	if code != 0 {
		t.Fatalf("pause-image: exit %d: %s", code, stderr)
	}
	const ref = "localhost/podbox/pause:1.2.3_dirty"
	if !strings.HasPrefix(stdout, out+": "+ref+" sha256:") {
		t.Errorf("stdout %q, want %q followed by the digest", stdout, out+": "+ref)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := indexRef(t, file); got != ref {
		t.Errorf("archive names %q, want %q", got, ref)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".pause.tar.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %q", left)
	}

	// To standard output: the same bytes, and the report on stderr.
	code, stdout, stderr = runImage(t, exe, "pause-image")
	if code != 0 || stdout != string(file) {
		t.Errorf("pause-image to stdout: exit %d, same archive as -o: %v (stderr %q)", code, stdout == string(file), stderr)
	}
	if !strings.HasPrefix(stderr, ref+" sha256:") {
		t.Errorf("stderr %q, want the reference and digest", stderr)
	}

	// --ref and --pause.
	other := filepath.Join(t.TempDir(), "my-pause")
	os.WriteFile(other, append(staticELF(), 1), 0o755)
	code, _, stderr = runImage(t, "/nonexistent/podbox", "pause-image", "-o", out, "--ref", "example.com/p:1", "--pause", other)
	if code != 0 {
		t.Fatalf("pause-image --ref --pause: exit %d: %s", code, stderr)
	}
	file2, _ := os.ReadFile(out)
	if got := indexRef(t, file2); got != "example.com/p:1" {
		t.Errorf("archive names %q, want example.com/p:1", got)
	}
}

func TestPauseImageCommandFailures(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	t.Setenv("PATH", dir) // no podbox-pause on PATH either
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no pause binary", nil, "podbox-pause is neither beside /nonexistent/podbox nor on PATH"},
		{"not ELF", []string{"--pause", script}, `pause image "localhost/podbox/pause:1.2.3_dirty": pause binary ` + script + ": not an ELF executable"},
		{"missing output dir", []string{"--pause", script, "-o", filepath.Join(dir, "no", "x.tar")}, "create " + filepath.Join(dir, "no", "x.tar")},
		{"operand", []string{"x"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.tar")
			args := append([]string{"pause-image"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "-o") {
				args = append(args, "-o", out)
			}
			code, _, stderr := runImage(t, "/nonexistent/podbox", args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed pause-image left %s", out)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*")); len(left) != 0 {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "dev",
		"dev":                    "dev",
		"v1.2.3":                 "v1.2.3",
		"931efec-dirty":          "931efec-dirty",
		"1.0+build":              "1.0_build",
		".hidden":                "_hidden",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		if got := imageTag(in); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
}
