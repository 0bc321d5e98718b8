package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/bench/report"
	"github.com/podbox/podbox/integration/containerd"
	"github.com/podbox/podbox/integration/testnode"
)

func TestMain(m *testing.M) { testnode.Main(m) }

// TestSmoke runs the whole harness, shrunk (5 runs, 20 sandboxes, two
// rounds of 8 parallel creates, memory at N = 1 and 3, micro-benchmarks
// once), as `make
// bench` runs it: a real podbox, a real containerd, crictl and runc in a
// node namespace of the harness's own. It proves every phase produces its
// figures and that nothing of the run is left behind. No timing is
// asserted: the targets are judged by the full run, not by tests.
func TestSmoke(t *testing.T) {
	testnode.RequirePrivileged(t)
	for _, b := range []string{"runc", "containerd", "containerd-shim-runc-v2", "ctr", "nsenter", "go"} {
		testnode.RequireBinary(t, b)
	}
	containerd.CrictlBinary(t)
	repo := repoRoot(t)
	binDir := podboxBinaries(t, repo)
	benchBin := filepath.Join(t.TempDir(), "bench")
	build(t, repo, benchBin, "./bench")

	out, tmp := t.TempDir(), t.TempDir()
	// Every phase, containerd 2's CRI run included, on a shared 2-core
	// machine: about 2 to 4 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, benchBin, "-runs", "5", "-warmup", "1", "-scale", "20", "-burst", "8", "-burst-rounds", "2", "-mem", "1,3", "-cri-pods", "2", "-cri-polls", "3", "-pull-mib", "1,1,2",
		"-micro-benchtime", "1x", "-idle-window", "100ms", "-bin", binDir, "-out", out, "-repo", repo)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	t.Logf("bench ran %s:\n%s", time.Since(start).Round(time.Millisecond), b)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}

	r, err := report.ReadJSON(filepath.Join(out, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		report.FigReady:     {report.Podbox, report.Peer, report.Floor},
		report.FigTeardown:  {report.Podbox, report.Peer, report.Floor},
		report.FigJoin:      {report.Podbox, report.Peer, report.Floor},
		report.FigBurst:     {report.Podbox, report.Peer},
		report.FigBurstWall: {report.Podbox, report.Peer},
		report.FigBurstCPU:  {report.Podbox, report.Peer},
		report.FigMemory(1): {report.Podbox, report.Peer},
		report.FigMemory(3): {report.Podbox, report.Peer},
		report.FigPausePSS:  {report.Podbox, report.Peer},
		report.FigPauseAnon: {report.Podbox, report.Peer},
		report.FigShimAnon:  {report.Podbox, report.Peer},
		report.FigJoinImage: {report.Podbox, report.PodboxRootfs, report.Peer},
		report.FigPull:      {report.Podbox, report.Peer},
		// The peer's pods there have a port mapping and portmap.
		report.FigPorts:         {report.Podbox, report.PodboxPorts, report.Peer},
		report.FigPortsTeardown: {report.Podbox, report.PodboxPorts, report.Peer},
		report.FigPlay:          {report.Podbox, report.Peer},
		report.FigCRIReady:      {report.Podbox, report.Peer},
		report.FigCRIMemory:     {report.Podbox, report.Peer},
		report.FigCRI2Ready:     {report.Podbox, report.Peer},
		report.FigCRI2Memory:    {report.Podbox, report.Peer},
		report.FigCRIPolled:     {report.Podbox, report.Peer},
		report.FigCRI2Polled:    {report.Podbox, report.Peer},
	}
	wantN := map[string]int{report.FigReady: 5, report.FigTeardown: 5, report.FigJoin: 5, report.FigJoinImage: 5, report.FigPull: 5,
		report.FigPorts: 5, report.FigPortsTeardown: 5, report.FigPlay: 5, report.FigCRIReady: 5, report.FigCRI2Ready: 5, report.FigCRIMemory: 2, report.FigCRI2Memory: 2, report.FigCRIPolled: 2, report.FigCRI2Polled: 2, report.FigBurst: 16,
		report.FigBurstWall: 2, report.FigBurstCPU: 2, report.FigMemory(1): 1, report.FigMemory(3): 3, report.FigPausePSS: 1, report.FigPauseAnon: 1, report.FigShimAnon: 1}
	for id, series := range want {
		f := r.Figure(id)
		if f == nil {
			t.Errorf("latest.json lacks figure %s", id)
			continue
		}
		for _, s := range series {
			if got := f.Series[s]; got.N != wantN[id] || got.Min <= 0 || got.P50 < got.Min || got.Max < got.P99 {
				t.Errorf("figure %s, series %s: %+v, want %d positive samples", id, s, got, wantN[id])
			}
		}
	}
	if c := r.Scale.Checkpoints; len(c) == 0 || c[len(c)-1].PSSKiB <= 0 || c[len(c)-1].IdleCPUPercent < 0 {
		t.Errorf("scale checkpoints: %+v", c)
	}
	if s := r.Scale; s.Reached != 20 || len(s.CreateMs) != 20 || len(s.Checkpoints) != 20 || s.Teardown.N != 20 || s.Failure != "" {
		t.Errorf("scale: reached %d, %d creates, %d checkpoints, %d removals, failure %q", s.Reached, len(s.CreateMs), len(s.Checkpoints), s.Teardown.N, s.Failure)
	}
	var pkgs []string
	for _, m := range r.Micro {
		if m.Iter > 0 && m.Metrics["ns/op"] > 0 && !slices.Contains(pkgs, m.Package) {
			pkgs = append(pkgs, m.Package)
		}
	}
	slices.Sort(pkgs)
	if !slices.Equal(pkgs, []string{"netsetup", "netsetup/ipam"}) {
		t.Errorf("micro-benchmarks of packages %v, want netsetup and netsetup/ipam: %+v", pkgs, r.Micro)
	}
	if r.Machine.Cores < 1 || r.Machine.Runc == "" || r.Machine.Containerd == "" || r.Machine.Podbox == "" || len(r.Errors) > 0 {
		t.Errorf("machine %+v, errors %q", r.Machine, r.Errors)
	}
	for _, row := range r.Table {
		if row.Met == report.NotMeasured {
			t.Errorf("table row %q not measured", row.Figure)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "latest.md"))
	if err != nil || !strings.Contains(string(md), "| sandbox ready, p50 |") {
		t.Errorf("latest.md (%v):\n%s", err, md)
	}
	if fi, err := os.Stat(filepath.Join(out, "scale.png")); err != nil || fi.Size() == 0 {
		t.Errorf("scale.png: %v", err)
	}
	checkNothingLeft(t, string(b), tmp)
}

// checkNothingLeft checks that the run removed its work directory, and
// that no process, mount or cgroup of it remains.
func checkNothingLeft(t *testing.T, output, tmp string) {
	t.Helper()
	m := regexp.MustCompile(`work directory (\S+),`).FindStringSubmatch(output)
	if m == nil {
		t.Fatal("bench did not name its work directory")
	}
	work := m[1]
	if !strings.HasPrefix(work, tmp) {
		t.Fatalf("work directory %s is not under TMPDIR %s", work, tmp)
	}
	r := regexp.MustCompile(`podbox state root (\S+)`).FindStringSubmatch(output)
	if r == nil {
		t.Fatal("bench did not name podbox's state root")
	}
	for _, dir := range []string{work, r[1]} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("directory %s left behind (%v)", dir, err)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), dir) {
				t.Errorf("process left: %s: %s", p, strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("mounts left under %s", dir)
		}
	}
	tag := filepath.Base(work)
	for _, pattern := range []string{"/sys/fs/cgroup/*/" + tag + "*", "/sys/fs/cgroup/" + tag + "*"} {
		if left, _ := filepath.Glob(pattern); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		t.Fatalf("find the podbox module: %v", err)
	}
	return filepath.Dir(mod)
}

// podboxBinaries returns the directory of podbox's three binaries:
// PODBOX_BIN_DIR (make test), or a fresh build.
func podboxBinaries(t *testing.T, repo string) string {
	t.Helper()
	if dir := os.Getenv("PODBOX_BIN_DIR"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	for _, b := range []string{"podbox", "podbox-image", "podbox-kube", "containerd-shim-podbox-v1", "podbox-pause"} {
		build(t, repo, filepath.Join(dir, b), "./cmd/"+b)
	}
	return dir
}

func build(t *testing.T, repo, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
}
