package containerd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// The rest of the containerd issue's Task API through containerd: terminals
// (`ctr run -t`, `ctr task exec -t`, `crictl exec -it`, with ResizePty from
// the client's window size and from a SIGWINCH), Pause and Resume, Pids,
// Kill with all, CloseIO and Update, each on a podbox task and leak-checked.

const podboxRuntime = "io.containerd.podbox.v1"

// waitSize is a shell snippet that waits (5 s at most) until the terminal has
// been given a size, since clients resize it only after the process started,
// then prints "size=ROWS COLS". (busybox stty fails on a terminal of size
// 0×0, the size a fresh pty has.)
const waitSize = `i=0; until s=$(stty size 2>/dev/null) && [ -n "$s" ] && [ "$s" != "0 0" ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i+1)); done; echo "size=$s"`

// ptyCmd is a client (ctr, crictl) running inside the node with a fresh
// pseudo-terminal as its stdin, stdout, stderr and controlling terminal, as
// if typed at an interactive shell.
type ptyCmd struct {
	t      *testing.T
	cmd    *exec.Cmd
	master console.Console
	exited chan struct{} // closed once cmd has exited; err is then set
	err    error
	read   chan struct{} // closed once the master reads no more
	mu     sync.Mutex
	out    bytes.Buffer
}

// startPty runs name args in d's node on a terminal of rows×cols.
func startPty(t *testing.T, d *Daemon, rows, cols uint16, name string, args ...string) *ptyCmd {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatalf("new pty: %v", err)
	}
	if err := master.Resize(console.WinSize{Height: rows, Width: cols}); err != nil {
		master.Close()
		t.Fatalf("pty size: %v", err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", slavePath, err)
	}
	defer slave.Close()
	p := &ptyCmd{t: t, master: master, exited: make(chan struct{}), read: make(chan struct{})}
	// Not tied to a context: wait kills it if it overstays.
	p.cmd = d.Node.Command(context.Background(), name, args...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := p.cmd.Start(); err != nil {
		master.Close()
		t.Fatalf("start %s on a pty: %v", name, err)
	}
	go func() {
		defer close(p.read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil { // EIO once no one holds the slave any more
				return
			}
		}
	}()
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		master.Close()
	})
	return p
}

func (p *ptyCmd) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the terminal has shown s.
func (p *ptyCmd) waitFor(s string, limit time.Duration) {
	p.t.Helper()
	for deadline := time.Now().Add(limit); !strings.Contains(p.output(), s); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.exited:
			// Let the reader catch up with what the client wrote last.
			select {
			case <-p.read:
			case <-time.After(time.Second):
			}
			if strings.Contains(p.output(), s) {
				return
			}
			p.t.Fatalf("%s exited (%v) before its terminal showed %q:\n%s", p.cmd.Args, p.err, s, p.output())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: terminal did not show %q within %s:\n%s", p.cmd.Args, s, limit, p.output())
		}
	}
}

// wait waits for the client's exit and returns what its terminal showed and
// the exit error.
func (p *ptyCmd) wait(limit time.Duration) (string, error) {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.exited
		p.t.Fatalf("%s still running after %s; terminal:\n%s", p.cmd.Args, limit, p.output())
	}
	select {
	case <-p.read:
	case <-time.After(5 * time.Second):
	}
	return p.output(), p.err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// ctrPty runs ctr against d on a terminal.
func ctrPty(t *testing.T, d *Daemon, rows, cols uint16, args ...string) *ptyCmd {
	t.Helper()
	return startPty(t, d, rows, cols, "ctr", d.ctrArgs(args)...)
}

// taskStatus returns the STATUS and PID `ctr task ls` reports for id.
func taskStatus(t *testing.T, d *Daemon, id string) (string, int) {
	t.Helper()
	out, err := d.Ctr("task", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return f[2], pid
		}
	}
	t.Fatalf("ctr task ls does not list %s:\n%s", id, out)
	return "", 0
}

// interactive is a shell script for driveInteractive: it shows its terminal,
// waits for its size (33×111) and then for a change of it, echoes a line read
// from the terminal, and exits 5.
const interactive = "tty; " + waitSize + `; i=0; while [ "$(stty size 2>/dev/null)" = "33 111" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; ` +
	`echo "resized=$(stty size)"; read -r line; echo "got=$line"; exit 5`

// driveInteractive plays the user of a client running interactive on a
// 33×111 terminal: it resizes the client's terminal once the process saw
// its first size (the kernel sends the client SIGWINCH, and the client
// resizes the process's terminal through ResizePty), types a line, and
// returns what the terminal showed and the client's exit.
func driveInteractive(t *testing.T, p *ptyCmd) (string, error) {
	t.Helper()
	p.waitFor("size=33 111", 30*time.Second)
	if err := p.master.Resize(console.WinSize{Height: 40, Width: 120}); err != nil {
		t.Fatal(err)
	}
	p.waitFor("resized=40 120", 30*time.Second)
	if _, err := p.master.Write([]byte("typed at the terminal\r")); err != nil {
		t.Fatal(err)
	}
	out, err := p.wait(time.Minute)
	for _, want := range []string{"/dev/pts/", "got=typed at the terminal"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: terminal lacks %q:\n%s", p.cmd.Args, want, out)
		}
	}
	return out, err
}

// TestCtrRunTerminal: `ctr run -t` on podbox gives the process a terminal
// (a /dev/pts device) sized like ctr's own (ResizePty after start), carries
// its output back, and returns its exit status; then `ctr task exec -t`
// gets a terminal too, follows a window change of ctr's terminal
// (SIGWINCH → ResizePty) and reads what is typed at it.
func TestCtrRunTerminal(t *testing.T) {
	e := newPodboxEnv(t, false, false)
	d := e.d

	p := ctrPty(t, d, 33, 111, "run", "-t", "--rm", "--runtime", podboxRuntime, appRef, "tty1",
		"/bin/sh", "-c", "tty; "+waitSize+"; echo done")
	out, err := p.wait(time.Minute)
	if err != nil {
		t.Fatalf("ctr run -t: %v; terminal:\n%s", err, out)
	}
	for _, want := range []string{"/dev/pts/", "size=33 111", "done"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctr run -t: terminal lacks %q:\n%s", want, out)
		}
	}
	t.Logf("ctr run -t:\n%s", out)

	p = ctrPty(t, d, 24, 80, "run", "-t", "--rm", "--runtime", podboxRuntime, appRef, "tty2", "/bin/sh", "-c", "exit 7")
	if out, err := p.wait(time.Minute); exitCode(err) != 7 {
		t.Errorf("ctr run -t … exit 7: %v, want exit status 7; terminal:\n%s", err, out)
	}
	if out, err := d.Ctr("container", "ls", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("containers left after ctr run --rm (%v): %s", err, out)
	}

	// exec -t into a running container.
	if _, err := d.Ctr("run", "-d", "--runtime", podboxRuntime, appRef, "term"); err != nil {
		t.Fatal(err)
	}
	p = ctrPty(t, d, 33, 111, "task", "exec", "-t", "--exec-id", "sh1", "term", "/bin/sh", "-c", interactive)
	out, err = driveInteractive(t, p)
	if exitCode(err) != 5 {
		t.Errorf("ctr task exec -t: %v, want exit status 5; terminal:\n%s", err, out)
	}
	t.Logf("ctr task exec -t:\n%s", out)
	if _, err := d.Ctr("task", "kill", "-s", "SIGKILL", "term"); err != nil {
		t.Fatal(err)
	}
	deleteTask(t, d, "default", "term")
}

// TestCRIExecTerminal: `crictl exec -it` into a podbox pod's container gets a
// terminal of crictl's size, and `crictl update` (UpdateContainerResources →
// Task Update) changes the container's memory limit.
func TestCRIExecTerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		v2   bool
	}{
		{"containerd-1.6", false},
		{"containerd-2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPodboxEnv(t, tc.v2, false)
			p := e.runPod(t, "term")
			args := e.d.crictlArgs([]string{"exec", "-it", p.client, "/bin/sh", "-c", "tty; " + waitSize + "; echo done"})
			c := startPty(t, e.d, 33, 111, e.d.crictl, args...)
			out, err := c.wait(time.Minute)
			if err != nil {
				t.Fatalf("crictl exec -it: %v; terminal:\n%s", err, out)
			}
			for _, want := range []string{"/dev/pts/", "size=33 111", "done"} {
				if !strings.Contains(out, want) {
					t.Errorf("crictl exec -it: terminal lacks %q:\n%s", want, out)
				}
			}
			t.Logf("crictl exec -it:\n%s", out)

			args = e.d.crictlArgs([]string{"exec", "-it", p.client, "/bin/sh", "-c", interactive})
			out, err = driveInteractive(t, startPty(t, e.d, 33, 111, e.d.crictl, args...))
			t.Logf("crictl exec -it (interactive): %v\n%s", err, out)

			crictl(t, e.d, "update", "--memory", "50000000", p.client)
			checkMemoryLimit(t, e.inspectPID(t, "inspect", p.client), 50000000)

			shim := shimOf(t, e.inspectPID(t, "inspect", p.client))
			crictl(t, e.d, "stopp", p.id)
			crictl(t, e.d, "rmp", p.id)
			// containerd 2.x answers rmp before the pod's shim has
			// finished removing the sandbox and exited; wait for it, so
			// the leak check judges what it left rather than racing it.
			for deadline := time.Now().Add(10 * time.Second); cmdline(shim) != ""; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the pod's shim %d still runs 10 s after rmp", shim)
				}
			}
		})
	}
}

// TestCtrTaskAPI: Pause/Resume, Pids, CloseIO, Update and Kill with all on a
// podbox task, through ctr (and containerd's Tasks API for Update, which
// containerd 1.6's ctr lacks).
func TestCtrTaskAPI(t *testing.T) {
	e := newPodboxEnv(t, false, false)
	d := e.d
	const id = "tick"
	if _, err := d.Ctr("run", "-d", "--runtime", podboxRuntime, appRef, id,
		"/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.1; done"); err != nil {
		t.Fatal(err)
	}
	status, pid := taskStatus(t, d, id)
	if status != "RUNNING" {
		t.Fatalf("task %s is %s, want RUNNING", id, status)
	}
	tick := func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/tick", pid))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	advances := func() bool {
		start := tick()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if tick() > start {
				return true
			}
		}
		return false
	}
	if !advances() {
		t.Fatalf("the ticker does not tick (at %d)", tick())
	}

	// Pause and Resume.
	if _, err := d.Ctr("task", "pause", id); err != nil {
		t.Fatal(err)
	}
	if status, _ := taskStatus(t, d, id); status != "PAUSED" {
		t.Errorf("after pause, task %s is %s, want PAUSED", id, status)
	}
	frozen := tick()
	time.Sleep(time.Second)
	if n := tick(); n != frozen {
		t.Errorf("paused ticker went on ticking: %d → %d", frozen, n)
	}
	if _, err := d.Ctr("task", "resume", id); err != nil {
		t.Fatal(err)
	}
	if status, _ := taskStatus(t, d, id); status != "RUNNING" {
		t.Errorf("after resume, task %s is %s, want RUNNING", id, status)
	}
	if !advances() {
		t.Errorf("resumed ticker does not tick (at %d)", tick())
	}

	// CloseIO: ctr closes the exec's stdin when its own ends; cat then
	// sees end-of-file and exits.
	cmd := d.Node.Command(t.Context(), "ctr", d.ctrArgs([]string{"task", "exec", "--exec-id", "cat", id, "/bin/cat"})...)
	cmd.Stdin = strings.NewReader("hi\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || stdout.String() != "hi\n" {
			t.Errorf("echo hi | ctr task exec … /bin/cat: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("echo hi | ctr task exec … /bin/cat did not end within 30 s (stdin never closed?): stdout %q, stderr %q",
			stdout.String(), stderr.String())
	}

	// Pids: the init, and a detached exec.
	if _, err := d.Ctr("task", "exec", "-d", "--exec-id", "bg", id, "/bin/sleep", "600"); err != nil {
		t.Fatal(err)
	}
	var sleeper int
	var ps string
	for deadline := time.Now().Add(5 * time.Second); sleeper == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if ps, err = d.Ctr("task", "ps", id); err != nil {
			t.Fatal(err)
		}
		sleeper = 0
		sawInit := false
		for _, line := range strings.Split(ps, "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			p, _ := strconv.Atoi(f[0])
			if p == pid {
				sawInit = true
			}
			if cmdline(p) == "/bin/sleep 600" {
				sleeper = p
			}
		}
		if !sawInit {
			t.Fatalf("ctr task ps %s lacks the init %d:\n%s", id, pid, ps)
		}
	}
	if sleeper == 0 {
		t.Fatalf("ctr task ps %s lacks the exec'd /bin/sleep 600:\n%s", id, ps)
	}
	t.Logf("ctr task ps %s:\n%s", id, ps)

	// Update, through containerd's Tasks API as ctr 2.x's `task update`.
	updateMemory(t, d, "default", id, 50000000)
	checkMemoryLimit(t, pid, 50000000)

	// Kill with all: the exec'd process dies with the init.
	if _, err := d.Ctr("task", "kill", "--all", "-s", "SIGKILL", id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, _ := taskStatus(t, d, id)
		if st == "STOPPED" && cmdline(sleeper) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after kill --all: task %s is %s, exec'd sleep %d is %q", id, st, sleeper, cmdline(sleeper))
		}
	}
	deleteTask(t, d, "default", id)
}

// cmdline is pid's command line, space separated; "" once it is gone (or a
// zombie).
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// updateMemory sets a task's memory limit through containerd's Tasks API,
// with resources encoded as containerd's client encodes them.
func updateMemory(t *testing.T, d *Daemon, ns, id string, limit int64) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "containerd-namespace", ns), 30*time.Second)
	defer cancel()
	_, err = tasksapi.NewTasksClient(conn).Update(ctx, &tasksapi.UpdateTaskRequest{
		ContainerID: id,
		Resources:   &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: res},
	})
	if err != nil {
		t.Fatalf("containerd Tasks.Update %s memory %d: %v", id, limit, err)
	}
}

// checkMemoryLimit reads the memory limit of pid's cgroup (v1
// memory.limit_in_bytes, or v2 memory.max) and wants limit, rounded down
// to whole pages as the kernel stores it.
func checkMemoryLimit(t *testing.T, pid int, limit int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var file string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
			}
		}
		if parts[0] == "0" && parts[1] == "" && file == "" {
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.max")
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("memory limit of process %d: %v", pid, err)
	}
	got, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	page := int64(os.Getpagesize())
	if want := limit / page * page; got != want {
		t.Errorf("%s = %q, want %d", file, strings.TrimSpace(string(b)), want)
	} else {
		t.Logf("%s = %d", file, got)
	}
}
