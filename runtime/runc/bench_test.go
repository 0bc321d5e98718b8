package runc

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkCreateStartDelete is a container's whole life through this
// package: create (pid claimed), start, kill, wait for the exit through the
// reaper, delete.
func BenchmarkCreateStartDelete(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	bundle := e.bundle("bench", false, "sleep", "60")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := e.rt.Create(ctx, "bench", CreateOpts{Bundle: bundle})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.rt.Start(ctx, "bench", StartOpts{InitPid: p.Pid}); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.Kill(ctx, "bench", syscall.SIGKILL, false); err != nil {
			b.Fatal(err)
		}
		<-p.Exited
		if err := e.rt.Delete(ctx, "bench", false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawRuncRunDetached is the baseline: the same bundle with plain
// `runc run -d`, `runc kill` and `runc delete --force`, no log capture, no pid
// claim. (The kill matters: delete --force of a live container polls for its
// death in 100 ms steps, which would swamp everything else.)
func BenchmarkRawRuncRunDetached(b *testing.B) {
	e := newEnv(b)
	bundle := e.bundle("raw", false, "sleep", "60")
	root := e.rt.Root()
	rawRun := func(args ...string) {
		cmd := exec.Command("runc", append([]string{"--root", root}, args...)...)
		if ex, err := testReaper.Run(cmd); err != nil || ex.Status != 0 {
			b.Fatalf("runc %v: %v, status %d", args, err, ex.Status)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rawRun("run", "-d", "--pid-file", filepath.Join(bundle, "raw.pid"), "--bundle", bundle, "raw")
		rawRun("kill", "raw", strconv.Itoa(int(syscall.SIGKILL)))
		rawRun("delete", "--force", "raw")
	}
}

// BenchmarkRawRuncLifecycle is the same five runc invocations as
// BenchmarkCreateStartDelete, raw: it isolates this package's own overhead.
func BenchmarkRawRuncLifecycle(b *testing.B) {
	e := newEnv(b)
	bundle := e.bundle("rawlc", false, "sleep", "60")
	root := e.rt.Root()
	rawRun := func(args ...string) {
		cmd := exec.Command("runc", append([]string{"--root", root}, args...)...)
		if ex, err := testReaper.Run(cmd); err != nil || ex.Status != 0 {
			b.Fatalf("runc %v: %v, status %d", args, err, ex.Status)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rawRun("create", "--pid-file", filepath.Join(bundle, "raw.pid"), "--bundle", bundle, "rawlc")
		rawRun("start", "rawlc")
		rawRun("kill", "rawlc", strconv.Itoa(int(syscall.SIGKILL)))
		rawRun("delete", "--force", "rawlc")
	}
}
