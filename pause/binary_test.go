package pause_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/testnode"
)

const (
	testVersion = "test-1.2.3"
	// patience bounds every wait. It is long because the machine is shared
	// and noisy; a healthy pause answers within milliseconds.
	patience = 5 * time.Second
	// notPID1Warning is the line the pause writes once its signals are
	// handled, when it is not PID 1.
	notPID1Warning = "podbox-pause: warning: not PID 1, so orphans in its PID namespace are not reparented to it\n"
	// maxBinarySize is the target for the stripped binary.
	maxBinarySize = 1_500_000
)

// buildPause builds cmd/podbox-pause into a temporary directory with the
// Makefile's flags (and the build tags tags) and returns the binary's path.
func buildPause(tb testing.TB, version string, tags ...string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "podbox-pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version,
		"-tags", strings.Join(tags, ","), "-o", bin, "github.com/podbox/podbox/cmd/podbox-pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build podbox-pause: %v\n%s", err, out)
	}
	return bin
}

// pauseProc is a running podbox-pause.
type pauseProc struct {
	cmd    *exec.Cmd
	stderr *os.File      // read end of the pause's stderr
	exited chan struct{} // closed once cmd.Wait has returned
}

// startPause starts bin with env (nil: the test's own environment) and attr
// (nil: a parent-death signal only). A cleanup kills it if the test has not
// stopped it.
func startPause(tb testing.TB, bin string, env []string, attr *syscall.SysProcAttr) *pauseProc {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatalf("pipe for podbox-pause stderr: %v", err)
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	// Should the test binary die, the pause must not outlive it.
	attr.Pdeathsig = syscall.SIGKILL
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = w // an *os.File: handed to the child as is, so no copying goroutine holds it
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		tb.Fatalf("start %s: %v", bin, err)
	}
	w.Close()
	p := &pauseProc{cmd: cmd, stderr: r, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		r.Close()
	})
	return p
}

func (p *pauseProc) pid() int { return p.cmd.Process.Pid }

// awaitReady reads the first line of the pause's stderr, the not-PID-1
// warning, which it writes only once SIGTERM and SIGINT are handled.
func (p *pauseProc) awaitReady(tb testing.TB) {
	tb.Helper()
	p.stderr.SetReadDeadline(time.Now().Add(patience))
	var line []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(line, []byte("\n")) {
		if _, err := p.stderr.Read(b); err != nil {
			tb.Fatalf("podbox-pause (pid %d) stderr after %q: %v; want the line %q", p.pid(), line, err, notPID1Warning)
		}
		line = append(line, b[0])
	}
	if string(line) != notPID1Warning {
		tb.Fatalf("podbox-pause (pid %d) wrote %q on stderr, want %q", p.pid(), line, notPID1Warning)
	}
}

// signal sends sig to the pause.
func (p *pauseProc) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("send %v to podbox-pause (pid %d): %v", sig, p.pid(), err)
	}
}

// running reports whether the pause has not exited yet.
func (p *pauseProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// awaitExit waits, within patience, for the pause to exit, and returns how.
func (p *pauseProc) awaitExit(tb testing.TB) *os.ProcessState {
	tb.Helper()
	select {
	case <-p.exited:
	case <-time.After(patience):
		tb.Fatalf("podbox-pause (pid %d) still running %v after it was told to stop", p.pid(), patience)
	}
	if p.cmd.ProcessState == nil {
		tb.Fatalf("podbox-pause (pid %d): no exit status", p.pid())
	}
	return p.cmd.ProcessState
}

// stop sends sig and requires exit status 0 and nothing more on stderr.
func (p *pauseProc) stop(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	p.signal(tb, sig)
	if st := p.awaitExit(tb); st.ExitCode() != 0 {
		tb.Fatalf("sent %v: podbox-pause (pid %d) ended with %v, want exit status 0", sig, p.pid(), st)
	}
	p.stderr.SetReadDeadline(time.Now().Add(patience))
	if rest, err := readAll(p.stderr); err != nil || len(rest) != 0 {
		tb.Errorf("podbox-pause (pid %d) wrote %q on stderr after start (read error: %v), want nothing", p.pid(), rest, err)
	}
}

// readAll reads f to EOF.
func readAll(f *os.File) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}

func TestBinary(t *testing.T) {
	bin := buildPause(t, testVersion)

	t.Run("static, stripped and small", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("open %s as ELF: %v", bin, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: it is dynamically linked, want static", bin)
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s has a .symtab section: not stripped", bin)
		}
		fi, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxBinarySize {
			t.Errorf("%s is %d bytes, want at most %d", bin, fi.Size(), maxBinarySize)
		}
	})

	t.Run("-v prints the version", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "-v")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s -v: %v (stderr %q)", bin, err, stderr.String())
		}
		if want := "podbox-pause " + testVersion + "\n"; stdout.String() != want || stderr.Len() != 0 {
			t.Errorf("%s -v: stdout %q, stderr %q; want stdout %q and no stderr", bin, stdout.String(), stderr.String(), want)
		}
	})

	t.Run("unknown argument is a usage error", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "--version")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("%s --version: %v, want exit status 2", bin, err)
		}
		if stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), "usage: podbox-pause [-v]\n") {
			t.Errorf("%s --version: stdout %q, stderr %q; want only the usage on stderr", bin, stdout.String(), stderr.String())
		}
	})

	// Each stop signal gives exit status 0, promptly; the readiness line
	// checked on the way is the not-PID-1 warning.
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}} {
		t.Run(tt.name+" exits 0", func(t *testing.T) {
			p := startPause(t, bin, nil, nil)
			p.awaitReady(t)
			p.stop(t, tt.sig)
		})
	}

	t.Run("SIGHUP and SIGUSR1 do not stop it", func(t *testing.T) {
		p := startPause(t, bin, nil, nil)
		p.awaitReady(t)
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1} {
			p.signal(t, sig)
			awaitSettled(t, p.pid(), sig)
			if !p.running() {
				t.Fatalf("podbox-pause (pid %d) exited on %v: %v", p.pid(), sig, p.cmd.ProcessState)
			}
		}
		// Had either signal killed it, the exit status would now name it.
		p.stop(t, syscall.SIGTERM)
	})

	t.Run("a stderr nobody reads does not kill it", func(t *testing.T) {
		p := startPause(t, bin, nil, nil)
		p.stderr.Close() // so that the warning meets a broken pipe
		// The pause ignores SIGPIPE after arming SIGTERM and just before
		// it warns.
		p.awaitIgnored(t, syscall.SIGPIPE)
		p.signal(t, syscall.SIGTERM)
		if st := p.awaitExit(t); st.ExitCode() != 0 {
			t.Fatalf("podbox-pause (pid %d) with a broken stderr pipe ended with %v, want exit status 0 on SIGTERM", p.pid(), st)
		}
	})

	t.Run("runs with one P", func(t *testing.T) {
		// Without GOMAXPROCS the pause re-execs itself with GOMAXPROCS=1
		// in front of its environment, unless the runtime already chose
		// one P (one CPU); with any other value it overrides it; with
		// GOMAXPROCS=1 it does not re-exec.
		reexec := func(env string) string { return "GOMAXPROCS=1\x00" + env }
		noGOMAXPROCS := "PATH=/usr/bin:/bin\x00"
		wantNone := reexec(noGOMAXPROCS)
		if runtime.NumCPU() == 1 {
			wantNone = noGOMAXPROCS
		}
		tests := []struct {
			name, env, want string
		}{
			{"unset", noGOMAXPROCS, wantNone},
			{"set to 4", "GOMAXPROCS=4\x00" + noGOMAXPROCS, reexec("GOMAXPROCS=4\x00" + noGOMAXPROCS)},
			{"set to 1", "GOMAXPROCS=1\x00" + noGOMAXPROCS, "GOMAXPROCS=1\x00" + noGOMAXPROCS},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := startPause(t, bin, strings.Split(strings.TrimSuffix(tt.env, "\x00"), "\x00"), nil)
				p.awaitReady(t)
				environ, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/environ")
				if err != nil {
					t.Fatal(err)
				}
				if string(environ) != tt.want {
					t.Errorf("podbox-pause (pid %d) environment %q, want %q", p.pid(), environ, tt.want)
				}
				// The re-exec must keep the process's name.
				comm, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/comm")
				if err != nil {
					t.Fatal(err)
				}
				if string(comm) != "podbox-pause\n" {
					t.Errorf("podbox-pause (pid %d) is named %q, want %q", p.pid(), comm, "podbox-pause\n")
				}
				p.stop(t, syscall.SIGTERM)
			})
		}
	})

	t.Run("reaps orphans as PID 1", func(t *testing.T) {
		testnode.RequirePrivileged(t)
		nsenter := testnode.RequireBinary(t, "nsenter")
		sh := testnode.RequireBinary(t, "sh")
		p := startPause(t, bin, nil, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
		pid := p.pid()

		// The shell starts two sleeps in the pause's PID namespace and
		// exits at once, so the kernel reparents them to the init of that
		// namespace: the pause. (Their output goes to /dev/null so that
		// they do not hold this test's pipe open.)
		script := "sleep 1000 </dev/null >/dev/null 2>&1 & sleep 1000 </dev/null >/dev/null 2>&1 & exit 0"
		out, err := exec.Command(nsenter, "--target", strconv.Itoa(pid), "--pid", "--", sh, "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("start orphans in the PID namespace of podbox-pause (pid %d): %v\n%s", pid, err, out)
		}
		var orphans []proc
		deadline := time.Now().Add(patience)
		for len(orphans) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("the two sleeps never became children of podbox-pause (pid %d); its children: %v", pid, childrenOf(t, pid))
			}
			time.Sleep(10 * time.Millisecond)
			orphans = nil
			for _, c := range childrenOf(t, pid) {
				if c.name == "sleep" {
					orphans = append(orphans, c)
				}
			}
		}

		// Their exit makes them zombies until their parent, the pause,
		// reaps them.
		for _, o := range orphans {
			if err := syscall.Kill(o.pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill orphan %d: %v", o.pid, err)
			}
		}
		deadline = time.Now().Add(patience)
		for left := childrenOf(t, pid); len(left) > 0; left = childrenOf(t, pid) {
			if time.Now().After(deadline) {
				t.Fatalf("podbox-pause (pid %d) has not reaped its children within %v: %v", pid, patience, left)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// All of it under the seccomp filter.
		awaitFiltered(t, pid)
		// As PID 1 it does not warn: stop checks that stderr stays empty.
		p.stop(t, syscall.SIGTERM)
	})
}

// The architecture allows the pause nothing beyond the standard library and
// golang.org/x/sys.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/podbox/podbox/cmd/podbox-pause").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps cmd/podbox-pause: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == "github.com/podbox/podbox/cmd/podbox-pause", pkg == "github.com/podbox/podbox/pause":
		case strings.HasPrefix(pkg, "golang.org/x/sys/"):
		default:
			t.Errorf("podbox-pause depends on %s; only the standard library and golang.org/x/sys are allowed", pkg)
		}
	}
}

// proc is one process as /proc/PID/status describes it.
type proc struct {
	pid   int
	name  string
	state string // the letter: R, S, Z, ...
}

func (p proc) String() string { return strconv.Itoa(p.pid) + " " + p.name + " " + p.state }

// childrenOf lists the processes whose parent is ppid, zombies included.
func childrenOf(tb testing.TB, ppid int) []proc {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatalf("list /proc: %v", err)
	}
	var children []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := procStatus("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone meanwhile
		}
		if status["PPid"] == strconv.Itoa(ppid) {
			state, _, _ := strings.Cut(status["State"], " ")
			children = append(children, proc{pid: pid, name: status["Name"], state: state})
		}
	}
	return children
}

// procStatus reads a /proc status file (/proc/PID/status or
// /proc/PID/task/TID/status) into a map from field name to value.
func procStatus(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := make(map[string]string)
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}

// awaitSettled waits until sig, sent to pid, is no longer pending (it was
// discarded or handled), or is blocked by every thread (it cannot act at
// all), so that a check that the process survived it means something.
func awaitSettled(tb testing.TB, pid int, sig syscall.Signal) {
	tb.Helper()
	bit := uint64(1) << (sig - 1)
	deadline := time.Now().Add(patience)
	for {
		tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
		if err != nil || len(tasks) == 0 {
			tb.Fatalf("podbox-pause (pid %d) threads: %v", pid, err)
		}
		pending, blockedByAll := false, true
		for _, task := range tasks {
			st, err := procStatus(task)
			if err != nil {
				continue // thread gone meanwhile
			}
			for _, field := range []string{"SigPnd", "ShdPnd"} {
				if v, _ := strconv.ParseUint(st[field], 16, 64); v&bit != 0 {
					pending = true
				}
			}
			if v, _ := strconv.ParseUint(st["SigBlk"], 16, 64); v&bit == 0 {
				blockedByAll = false
			}
		}
		if !pending || blockedByAll {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%v to podbox-pause (pid %d) still pending after %v", sig, pid, patience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitIgnored waits until the pause ignores sig (SIG_IGN).
func (p *pauseProc) awaitIgnored(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	bit := uint64(1) << (sig - 1)
	path := "/proc/" + strconv.Itoa(p.pid()) + "/status"
	deadline := time.Now().Add(patience)
	for {
		st, err := procStatus(path)
		if !p.running() {
			tb.Fatalf("podbox-pause (pid %d) ended with %v before it ignored %v", p.pid(), p.cmd.ProcessState, sig)
		}
		if err != nil {
			tb.Fatalf("podbox-pause (pid %d): %v", p.pid(), err)
		}
		if v, _ := strconv.ParseUint(st["SigIgn"], 16, 64); v&bit != 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("podbox-pause (pid %d) does not ignore %v after %v", p.pid(), sig, patience)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
