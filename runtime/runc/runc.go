// Package runc drives an OCI runtime binary (runc, or one with the same
// command line such as crun) the way containerd's runc shim does: create,
// start, exec, kill, delete, state, ps, pause, resume, update.
//
// It owns the command lines and the translation of the runtime's failures into
// errors that name the container and carry the runtime's own message. Every
// runtime process is started through the shim's reaper, and the pids of the
// container and exec processes it creates are claimed from the reaper before
// they can be missed (see Process.Exited). It never copies a process's I/O
// (package stdio does that), never writes the bundle or spec, and never does
// network work.
//
// Why not github.com/containerd/go-runc: it routes every command through a
// package-level Monitor variable, global mutable state that podbox does not
// allow (the reaper is a value passed down from main), and its Exec needs the
// pid race closed by its caller anyway. The command lines themselves are
// short; owning them costs less than working around the global.
package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/runtime/reaper"
)

// ErrNotExist is wrapped by errors about a container the runtime does not
// know.
var ErrNotExist = errors.New("container does not exist")

// ErrNotRunning is wrapped by errors about a container, or a process, that
// has exited already: what a kill of it finds.
var ErrNotRunning = errors.New("container not running")

// Runtime drives one OCI runtime binary with one state directory.
type Runtime struct {
	binary string
	root   string
	reaper *reaper.Reaper
}

// New returns a Runtime running binary (a path, or a name looked up on PATH;
// "" means "runc") with state under root (runc --root; "" leaves runc's own
// default). Every process goes through r.
func New(r *reaper.Reaper, binary, root string) *Runtime {
	if binary == "" {
		binary = "runc"
	}
	return &Runtime{binary: binary, root: root, reaper: r}
}

// Root is the runtime's state directory.
func (rt *Runtime) Root() string { return rt.root }

// Stdio is what a created or exec'd process gets as standard streams when it
// has no terminal. Nil fields mean /dev/null. The runtime hands them straight
// to the process, so they are usually the child ends of pipes.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts configures Create.
type CreateOpts struct {
	// Bundle is the OCI bundle directory (config.json and rootfs).
	Bundle string
	// PidFile is where the runtime writes the init pid; default
	// <Bundle>/init.pid.
	PidFile string
	// ConsoleSocket, when the spec asks for a terminal, is the unix socket
	// the runtime sends the pty master to (stdio.ConsoleSocket).
	ConsoleSocket string
	// Stdio is used when there is no terminal.
	Stdio Stdio
}

// Process is a container init or exec process the runtime created.
type Process struct {
	Pid int
	// Exited receives the process's exit exactly once. It was claimed from
	// the reaper before the pid could be missed, so it fires even if the
	// process exited before Create or Exec returned.
	Exited <-chan reaper.Exit
}

// Create runs `runc create`: the container's namespaces, cgroup and init exist
// afterwards, and the init waits for Start before running the user process.
func (rt *Runtime) Create(ctx context.Context, id string, o CreateOpts) (Process, error) {
	if o.PidFile == "" {
		o.PidFile = filepath.Join(o.Bundle, "init.pid")
	}
	args := []string{"create", "--bundle", o.Bundle, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	return rt.spawn(ctx, id, "create", append(args, id), o.PidFile, o.Stdio, nil)
}

// StartOpts configures Start.
type StartOpts struct {
	// InitPid is the container's init, as Create returned it. With it, and
	// without poststart hooks, Start does runc start's work in-process
	// (startByFifo) instead of running a runc process for it.
	InitPid int
	// PoststartHooks says the spec has poststart hooks: newer runc runs them
	// in `runc start`, so only runc start will do.
	PoststartHooks bool
}

// Start lets a created container's init exec the user process: what
// `runc start` does.
func (rt *Runtime) Start(ctx context.Context, id string, o StartOpts) error {
	if o.InitPid > 0 && !o.PoststartHooks {
		if done, err := rt.startByFifo(ctx, id, o.InitPid); done {
			return err
		}
	}
	_, err := rt.run(ctx, id, "start", nil, "start", id)
	return err
}

// ExecOpts configures Exec.
type ExecOpts struct {
	// PidFile is where the runtime writes the exec process's pid (required:
	// it names the process for later kills).
	PidFile string
	// ConsoleSocket receives the pty master when spec.Terminal is set.
	ConsoleSocket string
	// Stdio is used when there is no terminal.
	Stdio Stdio
}

// Exec runs `runc exec --detach` of spec in container id and returns once the
// process runs.
func (rt *Runtime) Exec(ctx context.Context, id string, spec specs.Process, o ExecOpts) (Process, error) {
	if o.PidFile == "" {
		return Process{}, fmt.Errorf("container %q: runc exec: no pid file given", id)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return Process{}, fmt.Errorf("container %q: runc exec: encode process spec: %w", id, err)
	}
	// The spec goes through a memfd rather than a file on disk: nothing to
	// name, nothing to remove, nothing left behind by a crash.
	pf, err := memfd("runc-process", b)
	if err != nil {
		return Process{}, fmt.Errorf("container %q: runc exec: %w", id, err)
	}
	defer pf.Close()
	// The memfd is the runtime's fd 4 (fd 3 is the log, see command).
	args := []string{"exec", "--detach", "--pid-file", o.PidFile, "--process", "/proc/self/fd/4"}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	return rt.spawn(ctx, id, "exec", append(args, id), o.PidFile, o.Stdio, pf)
}

// spawn runs a runtime command that leaves a process behind (create, exec),
// reads its pid file and claims its exit.
func (rt *Runtime) spawn(ctx context.Context, id, op string, args []string, pidFile string, stdio Stdio, extra *os.File) (Process, error) {
	// The window opens before the runtime runs: an exec'd process may exit
	// (and be reaped, once reparented) before the pid file is read.
	w := rt.reaper.Open()
	defer w.Close()
	cmd, logf, err := rt.command(ctx, args...)
	if err != nil {
		return Process{}, fmt.Errorf("container %q: runc %s: %w", id, op, err)
	}
	defer logf.Close()
	if stdio.Stdin != nil {
		cmd.Stdin = stdio.Stdin
	}
	if stdio.Stdout != nil {
		cmd.Stdout = stdio.Stdout
	}
	if stdio.Stderr != nil {
		cmd.Stderr = stdio.Stderr
	}
	if extra != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, extra)
	}
	if err := rt.wait(cmd, logf, nil); err != nil {
		return Process{}, fmt.Errorf("container %q: runc %s: %w", id, op, err)
	}
	pid, err := readPidFile(pidFile)
	if err == nil {
		// runc writes it 0644; what podbox keeps under its root is root's.
		err = os.Chmod(pidFile, 0o600)
	}
	if err != nil {
		return Process{}, fmt.Errorf("container %q: runc %s: %w", id, op, err)
	}
	return Process{Pid: pid, Exited: w.Claim(pid)}, nil
}

// Kill sends sig to the container's init, or with all to every process in it.
func (rt *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := rt.run(ctx, id, "kill", nil, append(args, id, strconv.Itoa(int(sig)))...)
	return err
}

// Delete removes the container's runtime state (and with force kills it
// first). A container that does not exist is already deleted: success.
func (rt *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := rt.run(ctx, id, "delete", nil, append(args, id)...)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// State is the runtime's view of a container (`runc state`).
type State struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"` // created, running, paused, stopped
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// State returns the container's state.
func (rt *Runtime) State(ctx context.Context, id string) (State, error) {
	out, err := rt.run(ctx, id, "state", nil, "state", id)
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return State{}, fmt.Errorf("container %q: runc state: decode %q: %w", id, out, err)
	}
	return s, nil
}

// Ps returns the pids of every process in the container.
func (rt *Runtime) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := rt.run(ctx, id, "ps", nil, "ps", "--format", "json", id)
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("container %q: runc ps: decode %q: %w", id, out, err)
	}
	return pids, nil
}

// Pause freezes every process of the container.
func (rt *Runtime) Pause(ctx context.Context, id string) error {
	_, err := rt.run(ctx, id, "pause", nil, "pause", id)
	return err
}

// Resume thaws a paused container.
func (rt *Runtime) Resume(ctx context.Context, id string) error {
	_, err := rt.run(ctx, id, "resume", nil, "resume", id)
	return err
}

// Update changes the container's cgroup resources.
func (rt *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("container %q: runc update: encode resources: %w", id, err)
	}
	_, err = rt.run(ctx, id, "update", bytes.NewReader(b), "update", "--resources", "-", id)
	return err
}

// Version returns the first line of `runc --version`.
func (rt *Runtime) Version(ctx context.Context) (string, error) {
	out, err := rt.run(ctx, "", "--version", nil, "--version")
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line, nil
}

// run runs a runtime command that leaves nothing behind and returns its
// standard output.
func (rt *Runtime) run(ctx context.Context, id, op string, stdin io.Reader, args ...string) ([]byte, error) {
	cmd, logf, err := rt.command(ctx, args...)
	if err != nil {
		return nil, wrap(id, op, err)
	}
	defer logf.Close()
	var stdout, stderr bytes.Buffer
	cmd.Stdin = stdin
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := rt.wait(cmd, logf, &stderr); err != nil {
		return nil, wrap(id, op, err)
	}
	return stdout.Bytes(), nil
}

func wrap(id, op string, err error) error {
	if id == "" {
		return fmt.Errorf("runc %s: %w", op, err)
	}
	return fmt.Errorf("container %q: runc %s: %w", id, op, err)
}

// command builds a runtime command line. The runtime's log (JSON lines) goes
// to a memfd passed as fd 3: unlike a pipe it needs no reader while runc
// runs, and unlike a file it needs no name and no removal; unlike stderr it
// stays ours when stderr is the container's.
func (rt *Runtime) command(ctx context.Context, args ...string) (*exec.Cmd, *os.File, error) {
	logf, err := memfd("runc-log", nil)
	if err != nil {
		return nil, nil, err
	}
	global := []string{"--log", "/proc/self/fd/3", "--log-format", "json"}
	if rt.root != "" {
		global = append(global, "--root", rt.root)
	}
	cmd := exec.CommandContext(ctx, rt.binary, append(global, args...)...)
	cmd.ExtraFiles = []*os.File{logf}
	// A runtime that outlives a cancelled context gets SIGKILL; wait for
	// it no longer than that (the default waits forever for I/O).
	cmd.WaitDelay = 5 * time.Second
	return cmd, logf, nil
}

// wait starts cmd through the reaper and turns a failure into an error
// carrying the runtime's message.
func (rt *Runtime) wait(cmd *exec.Cmd, logf *os.File, stderr *bytes.Buffer) error {
	e, err := rt.reaper.Run(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if e.Status == 0 {
		return nil
	}
	msg := logErrors(logf)
	if msg == "" && stderr != nil {
		msg = strings.TrimSpace(stderr.String())
	}
	if msg == "" {
		msg = "no message"
	}
	how := fmt.Sprintf("exit status %d", e.Status)
	if e.Signal != 0 {
		how = "killed by " + e.Signal.String()
	}
	return &runtimeError{
		msg:        fmt.Sprintf("%s (%s)", msg, how),
		notExist:   strings.Contains(msg, "does not exist") || strings.Contains(msg, "container not found"),
		notRunning: strings.Contains(msg, "not running") || strings.Contains(msg, "process already finished") || strings.Contains(msg, "no such process"),
	}
}

// runtimeError is the runtime's own message; it matches ErrNotExist when the
// runtime said the container is unknown, and ErrNotRunning when it said the
// container or process has exited, without repeating the words.
type runtimeError struct {
	msg                  string
	notExist, notRunning bool
}

func (e *runtimeError) Error() string { return e.msg }

func (e *runtimeError) Is(target error) bool {
	return (e.notExist && target == ErrNotExist) || (e.notRunning && target == ErrNotRunning)
}

// logErrors extracts the error-level messages from the runtime's JSON log.
func logErrors(logf *os.File) string {
	if _, err := logf.Seek(0, io.SeekStart); err != nil {
		return ""
	}
	var msgs []string
	sc := bufio.NewScanner(logf)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil {
			continue
		}
		if entry.Level == "error" || entry.Level == "fatal" {
			msgs = append(msgs, entry.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

func memfd(name string, content []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if len(content) > 0 {
		if _, err := f.Write(content); err != nil {
			f.Close()
			return nil, fmt.Errorf("memfd %s: %w", name, err)
		}
	}
	return f, nil
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, b)
	}
	return pid, nil
}
