package runc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/runtime/stdio"
)

// Errors name the container and carry the runtime's own message from its
// JSON log; no runc or root needed: a fake runtime stands in.
func TestErrorCarriesRuntimeMessage(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fake-runc")
	script := "#!/bin/sh\n" +
		`echo '{"level":"info","msg":"starting"}' >&3` + "\n" +
		`echo '{"level":"error","msg":"container does not exist"}' >&3` + "\n" +
		"exit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rt := New(testReaper, fake, t.TempDir())
	ctx := context.Background()
	_, err := rt.State(ctx, "web")
	if err == nil || !strings.Contains(err.Error(), `container "web": runc state: container does not exist (exit status 1)`) {
		t.Fatalf("error %v does not name the container and runtime message", err)
	}
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("error %v is not ErrNotExist", err)
	}
	if err := rt.Delete(ctx, "web", false); err != nil {
		t.Fatalf("delete of a missing container: %v", err)
	}
	if err := rt.Kill(ctx, "web", syscall.SIGTERM, false); !errors.Is(err, ErrNotExist) {
		t.Fatalf("kill of a missing container: %v", err)
	}
}

// The lifecycle with pipes: exit status via the reaper, both streams in the log
// with the right tag, stdout to a FIFO client.
func TestCreateStartExitStatus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := "c-" + randHex()
	bundle := e.bundle(id, false, "sh", "-c", "echo out; echo err >&2; exit 7")

	fifoPath := filepath.Join(e.dir, "stdout.fifo")
	if err := unix.Mkfifo(fifoPath, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		f, err := os.Open(fifoPath)
		if err != nil {
			got <- err.Error()
			return
		}
		defer f.Close()
		var b bytes.Buffer
		b.ReadFrom(f)
		got <- b.String()
	}()

	logPath := filepath.Join(e.dir, "log", id+".log")
	io, err := stdio.NewPipes(ctx, stdio.Config{LogPath: logPath, Stdout: fifoPath})
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	in, out, errw := io.Child()
	p, err := e.rt.Create(ctx, id, CreateOpts{Bundle: bundle, Stdio: Stdio{Stdin: in, Stdout: out, Stderr: errw}})
	io.CloseChild()
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.rt.State(ctx, id)
	if err != nil || st.Status != "created" || st.Pid != p.Pid || st.ID != id {
		t.Fatalf("state after create: %+v, %v (init pid %d)", st, err, p.Pid)
	}
	if err := e.rt.Start(ctx, id, StartOpts{InitPid: p.Pid}); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, p)
	if ex.Status != 7 || ex.Pid != p.Pid {
		t.Fatalf("exit %+v, want status 7 of pid %d", ex, p.Pid)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := io.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	var so, se bytes.Buffer
	lf, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := stdio.ReadLog(lf, &so, &se); err != nil {
		t.Fatal(err)
	}
	if so.String() != "out\n" || se.String() != "err\n" {
		t.Fatalf("log: stdout %q stderr %q", so.String(), se.String())
	}
	select {
	case s := <-got:
		if s != "out\n" {
			t.Fatalf("fifo client got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fifo client got no EOF")
	}
	st, err = e.rt.State(ctx, id)
	if err != nil || st.Status != "stopped" {
		t.Fatalf("state after exit: %+v, %v", st, err)
	}
	if err := e.rt.Kill(ctx, id, syscall.SIGTERM, false); !errors.Is(err, ErrNotRunning) || errors.Is(err, ErrNotExist) {
		t.Fatalf("kill of a stopped container: %v, want ErrNotRunning", err)
	}
	if err := e.rt.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Delete(ctx, id, false); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := e.rt.State(ctx, id); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), id) {
		t.Fatalf("state of deleted container: %v", err)
	}
}

// startSleeper creates and starts a container running args, output discarded.
func (e *env) startSleeper(ctx context.Context, id string, args ...string) Process {
	e.t.Helper()
	bundle := e.bundle(id, false, args...)
	p, err := e.rt.Create(ctx, id, CreateOpts{Bundle: bundle})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.rt.Start(ctx, id, StartOpts{InitPid: p.Pid}); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// Start works both ways, in-process through runc's exec FIFO and by running
// `runc start` (kept for specs with poststart hooks): afterwards runc itself
// reports the container running, and its process runs.
func TestStartByFifoAndByRunc(t *testing.T) {
	for _, hooks := range []bool{false, true} {
		t.Run(fmt.Sprintf("poststartHooks=%v", hooks), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			id := "s-" + randHex()
			p, err := e.rt.Create(ctx, id, CreateOpts{Bundle: e.bundle(id, false, "sleep", "60")})
			if err != nil {
				t.Fatal(err)
			}
			defer e.rt.Delete(ctx, id, true)
			fifo := filepath.Join(e.rt.Root(), id, execFifo)
			if _, err := os.Stat(fifo); err != nil {
				t.Fatalf("created container has no exec FIFO: %v", err)
			}
			if err := e.rt.Start(ctx, id, StartOpts{InitPid: p.Pid, PoststartHooks: hooks}); err != nil {
				t.Fatal(err)
			}
			st, err := e.rt.State(ctx, id)
			if err != nil || st.Status != "running" {
				t.Fatalf("state after start: %+v, %v", st, err)
			}
			if _, err := os.Stat(fifo); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("exec FIFO after start: %v, want gone", err)
			}
			// Start returns once the init is released; its exec of the
			// command follows a moment later, on a busy node a few ms.
			var comm []byte
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if comm, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid)); strings.TrimSpace(string(comm)) == "sleep" {
					break
				}
			}
			if strings.TrimSpace(string(comm)) != "sleep" {
				t.Errorf("init %d runs %q 2 s after start, want sleep", p.Pid, comm)
			}
			if err := e.rt.Start(ctx, id, StartOpts{InitPid: p.Pid}); err == nil {
				t.Error("a second start succeeded")
			}
			e.rt.Kill(ctx, id, syscall.SIGKILL, false)
			waitExit(t, p)
		})
	}
}

// A start whose init died after create fails instead of waiting forever.
func TestStartAfterInitDied(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := "d-" + randHex()
	p, err := e.rt.Create(ctx, id, CreateOpts{Bundle: e.bundle(id, false, "sleep", "60")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.rt.Delete(ctx, id, true)
	if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.rt.Start(sctx, id, StartOpts{InitPid: p.Pid}); err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("start of a container whose init died: %v, want an error naming it", err)
	} else if sctx.Err() != nil {
		t.Fatalf("start waited for the timeout: %v", err)
	}
}

// Exec into a running container: exit code and output come back; state, ps,
// pause/resume and update work on the running container; kill --all takes
// the exec'd process down with the init.
func TestExecStatePsPauseKill(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := "c-" + randHex()
	init := e.startSleeper(ctx, id, "sh", "-c", "while true; do date +%s%N >> /tmp/"+id+"; sleep 0.05; done")

	// exec with output
	logPath := filepath.Join(e.dir, "exec.log")
	io, err := stdio.NewPipes(ctx, stdio.Config{LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	_, out, errw := io.Child()
	ps := specs.Process{Args: []string{"sh", "-c", "echo hello from exec; hostname >&2; exit 5"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	xp, err := e.rt.Exec(ctx, id, ps, ExecOpts{PidFile: filepath.Join(e.dir, "exec.pid"), Stdio: Stdio{Stdout: out, Stderr: errw}})
	io.CloseChild()
	if err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, xp); ex.Status != 5 {
		t.Fatalf("exec exit %+v, want 5", ex)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := io.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	var so, se bytes.Buffer
	lf, _ := os.ReadFile(logPath)
	stdio.ReadLog(bytes.NewReader(lf), &so, &se)
	if so.String() != "hello from exec\n" || se.String() != "podbox-test\n" {
		t.Fatalf("exec output: stdout %q stderr %q", so.String(), se.String())
	}

	// an exec that fails names the container and says why
	_, err = e.rt.Exec(ctx, id, specs.Process{Args: []string{"/no/such/binary"}, Cwd: "/"}, ExecOpts{PidFile: filepath.Join(e.dir, "bad.pid")})
	if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("exec of a missing binary: %v", err)
	}

	// a long-running exec, to be killed with --all
	sleeper, err := e.rt.Exec(ctx, id, specs.Process{Args: []string{"sleep", "60"}, Env: []string{"PATH=/bin"}, Cwd: "/"}, ExecOpts{PidFile: filepath.Join(e.dir, "sleep.pid")})
	if err != nil {
		t.Fatal(err)
	}

	st, err := e.rt.State(ctx, id)
	if err != nil || st.Status != "running" || st.Pid != init.Pid {
		t.Fatalf("state: %+v, %v; want running with pid %d", st, err, init.Pid)
	}
	pids, err := e.rt.Ps(ctx, id)
	if err != nil || !slices.Contains(pids, init.Pid) || !slices.Contains(pids, sleeper.Pid) {
		t.Fatalf("ps: %v, %v; want %d and %d among them", pids, err, init.Pid, sleeper.Pid)
	}

	// pause: the loop stops writing; resume: it writes again
	ticks := filepath.Join(testRootfs, "tmp", id)
	t.Cleanup(func() { os.Remove(ticks) })
	if err := e.rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != "paused" {
		t.Fatalf("state after pause: %+v, %v", st, err)
	}
	before := fileSize(ticks)
	time.Sleep(300 * time.Millisecond)
	if after := fileSize(ticks); after != before {
		t.Fatalf("paused container kept writing: %d -> %d bytes", before, after)
	}
	if err := e.rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if fileSize(ticks) == before {
		t.Fatal("resumed container does not run")
	}

	shares := uint64(512)
	if err := e.rt.Update(ctx, id, &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}); err != nil {
		t.Fatal(err)
	}

	if err := e.rt.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, init); ex.Signal != syscall.SIGKILL {
		t.Fatalf("init exit %+v, want SIGKILL", ex)
	}
	if ex := waitExit(t, sleeper); ex.Signal != syscall.SIGKILL {
		t.Fatalf("exec'd sleep exit %+v, want SIGKILL", ex)
	}
	if err := e.rt.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// SIGTERM reaches a shell that traps it; delete --force of a running container
// kills and removes it; kill of a deleted container says it does not exist.
func TestKillTermAndForceDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := "c-" + randHex()
	p := e.startSleeper(ctx, id, "sh", "-c", `trap "exit 3" TERM; while true; do sleep 0.1; done`)
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	if err := e.rt.Kill(ctx, id, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, p); ex.Status != 3 {
		t.Fatalf("exit %+v, want 3 from the TERM trap", ex)
	}
	if err := e.rt.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}

	id2 := "c-" + randHex()
	p2 := e.startSleeper(ctx, id2, "sleep", "60")
	if err := e.rt.Delete(ctx, id2, true); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, p2); ex.Signal != syscall.SIGKILL {
		t.Fatalf("exit after delete --force: %+v", ex)
	}
	if err := e.rt.Kill(ctx, id2, syscall.SIGKILL, false); !errors.Is(err, ErrNotExist) {
		t.Fatalf("kill of a deleted container: %v", err)
	}
	if err := e.rt.Delete(ctx, "never-existed-"+randHex(), false); err != nil {
		t.Fatalf("delete of a missing container: %v", err)
	}
}

// A terminal process sees a tty, gets the size it was resized to, and its
// output arrives through the pty master into the log as stdout.
func TestTerminal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := "c-" + randHex()
	bundle := e.bundle(id, true, "sh", "-c", "test -t 0 && test -t 1 && echo isatty; stty size")
	sock, err := stdio.NewConsoleSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	p, err := e.rt.Create(ctx, id, CreateOpts{Bundle: bundle, ConsoleSocket: sock.Path()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	master, err := sock.ReceiveMaster(rctx)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(e.dir, "tty.log")
	io, err := stdio.NewTerminal(ctx, stdio.Config{LogPath: logPath}, master)
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	if err := io.Resize(100, 40); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, id, StartOpts{InitPid: p.Pid}); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, p); ex.Status != 0 {
		t.Fatalf("exit %+v", ex)
	}
	if err := io.Wait(rctx); err != nil {
		t.Fatal(err)
	}
	var so, se bytes.Buffer
	lf, _ := os.ReadFile(logPath)
	stdio.ReadLog(bytes.NewReader(lf), &so, &se)
	if got := strings.ReplaceAll(so.String(), "\r\n", "\n"); got != "isatty\n40 100\n" || se.Len() != 0 {
		t.Fatalf("terminal output %q (stderr %q), want isatty and 40 100", so.String(), se.String())
	}
	if err := e.rt.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
}

// Many runtime commands at once all get their exit status through the reaper.
func TestConcurrentRuntimeCommands(t *testing.T) {
	rt := New(testReaper, "", t.TempDir())
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		rt = New(testReaper, "/bin/true", t.TempDir())
	}
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		go func() {
			_, err := rt.Version(context.Background())
			errs <- err
		}()
	}
	for i := 0; i < 50; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("runtime commands lost their exits")
		}
	}
}
