package pause_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// probeEnv names the calls a pause built with the podbox_probe tag makes
// once its filter is on (pause/probe.go).
const probeEnv = "PODBOX_PAUSE_PROBE"

// awaitFiltered waits until every thread of pid is under one seccomp
// filter with no_new_privs: the pause installs it last in its start-up,
// after the warning that awaitReady reads.
func awaitFiltered(tb testing.TB, pid int) {
	tb.Helper()
	want := map[string]string{"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1"}
	deadline := time.Now().Add(patience)
	for {
		tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
		if err != nil || len(tasks) == 0 {
			tb.Fatalf("podbox-pause (pid %d) threads: %v", pid, err)
		}
		var wrong string
		for _, task := range tasks {
			st, err := procStatus(task)
			if err != nil {
				continue // thread gone meanwhile
			}
			for k, v := range want {
				if st[k] != v {
					wrong = task + ": " + k + " " + st[k] + ", want " + v
				}
			}
		}
		if wrong == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("podbox-pause (pid %d) not under its seccomp filter after %v: %s", pid, patience, wrong)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSeccomp(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("the pause has no seccomp filter on %s", runtime.GOARCH)
	}
	bin := buildPause(t, testVersion)
	probeBin := buildPause(t, testVersion, "podbox_probe")

	t.Run("every thread filtered, SIGTERM exits 0", func(t *testing.T) {
		p := startPause(t, bin, nil, nil)
		p.awaitReady(t)
		awaitFiltered(t, p.pid())
		p.stop(t, syscall.SIGTERM)
	})

	// The runtime's poller exists only when the pause inherits a
	// non-blocking descriptor as stdio, which os/exec never hands over
	// (it makes the child's ends blocking), so this starts it by hand.
	t.Run("with a non-blocking stderr", func(t *testing.T) {
		var fds [2]int
		if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
			t.Fatal(err)
		}
		r := os.NewFile(uintptr(fds[0]), "stderr-read")
		defer r.Close()
		pid, err := syscall.ForkExec(bin, []string{"podbox-pause"}, &syscall.ProcAttr{
			Env:   []string{"PATH=/usr/bin:/bin"},
			Files: []uintptr{^uintptr(0), ^uintptr(0), uintptr(fds[1])},
			Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
		})
		syscall.Close(fds[1])
		if err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan syscall.WaitStatus, 1)
		go func() {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			exited <- ws
		}()
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		awaitFiltered(t, pid)
		// Signals wake the runtime, whose monitor then polls.
		for _, sig := range []syscall.Signal{syscall.SIGCHLD, syscall.SIGUSR1, syscall.SIGCHLD} {
			syscall.Kill(pid, sig)
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case ws := <-exited:
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("podbox-pause (pid %d) with a non-blocking stderr ended with %v (signal %v), want exit status 0 on SIGTERM", pid, ws, ws.Signal())
			}
		case <-time.After(patience):
			t.Fatalf("podbox-pause (pid %d) still running %v after SIGTERM", pid, patience)
		}
	})

	// A test build of the pause makes calls of its own under the filter:
	// the runtime's pass (and the pause then waits and exits 0 as ever),
	// every other kills it with SIGSYS.
	probes := []struct {
		name    string
		allowed bool
	}{
		{"runtime", true},
		{"getppid", false},
		{"openat", false},
		{"socket", false},
		{"unshare", false},
		{"execve", false},
		{"fork", false},
		{"thread in a new namespace", false},
	}
	if runtime.GOARCH == "amd64" {
		probes = append(probes, struct {
			name    string
			allowed bool
		}{"x32 getpid", false})
	}
	for _, tt := range probes {
		t.Run("probe "+tt.name, func(t *testing.T) {
			p := startPause(t, probeBin, append(os.Environ(), probeEnv+"="+tt.name), nil)
			p.awaitReady(t)
			if tt.allowed {
				awaitFiltered(t, p.pid())
				p.stop(t, syscall.SIGTERM)
				return
			}
			st := p.awaitExit(t)
			if ws := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
				t.Fatalf("podbox-pause (pid %d) calling %s under its filter ended with %v, want it killed by SIGSYS", p.pid(), tt.name, st)
			}
		})
	}
}
