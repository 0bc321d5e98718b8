package integration

import (
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
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

// Fault injection: each case kills one process (the CLI, the shim, runc or
// the pause) at one step of create, run, exec, stop or rm, and then checks
// what a user relies on after a crash: `sandbox ls` and `ps` answer and tell
// the truth (a sandbox whose shim is dead is not ready, a running container
// runs), a sandbox still listed as ready works, and one `podbox sandbox rm
// -f` of whatever is listed leaves nothing (the leak check: processes,
// mounts, netns pins, veths, leases, cgroups, state files).
//
// The CLI and the shim die at a step by their own hand: they are built
// with the podbox_faults tag, and PODBOX_FAULT names the step (package
// internal/faultpoint). runc dies, or kills the shim, through a wrapper
// given as the runtime. Every case is deterministic: a step is a point in
// the code, not a moment in time.

// faultCase is one fault.
type faultCase struct {
	// phase is the command that is hit: create, run, exec, stop (a
	// container), sbstop, rm (a container), sbrm, or none (the kill comes
	// after the setup).
	phase string
	// point is PODBOX_FAULT. A point the shim reaches is set in the
	// environment of `sandbox create`, which the shim inherits; one the
	// CLI reaches, in the environment of the command hit.
	point  string
	inShim bool
	// runc is PODBOX_FAULT_RUNC for the wrapper: OP:before (runc dies
	// before it runs), OP:after (after it did its work, before it could
	// report it) or OP:shim (it kills the shim, then runs).
	runc string
	// kill is a process the test kills after the setup: shim or pause.
	kill string
	// pauseAtPoint: the shim holds at point (PODBOX_FAULT_HOLD) instead
	// of dying there; the test kills the sandbox's pause, then lets the
	// shim go on.
	pauseAtPoint bool
	// failed: the command hit must fail (and, a create, leave nothing).
	failed bool
	// dies says who is dead afterwards, which proves the fault fired: cli,
	// shim, runc or pause.
	dies string
}

func (c faultCase) name() string {
	what := c.point + c.runc + c.kill
	if c.pauseAtPoint {
		what = "pausekill-" + what
	}
	if c.runc != "" {
		what = "runc-" + what
	}
	return c.phase + "/" + strings.ReplaceAll(what, ":", "-")
}

var faultCases = []faultCase{
	// sandbox create: the CLI's steps, then the shim's (record, netns,
	// lease, veth, port rules, pause, ready record).
	{phase: "create", point: "cli.create.shim-started", dies: "cli"},
	{phase: "create", point: "cli.create.netns-prepared", dies: "cli"},
	{phase: "create", point: "cli.create.answered", dies: "cli"},
	{phase: "create", point: "cli.create.created", dies: "cli"},
	{phase: "create", point: "shim.create.request", inShim: true, dies: "shim"},
	{phase: "create", point: "create.record", inShim: true, dies: "shim"},
	{phase: "create", point: "create.netns", inShim: true, dies: "shim"},
	{phase: "create", point: "net.lease", inShim: true, dies: "shim"},
	{phase: "create", point: "net.veth", inShim: true, dies: "shim"},
	{phase: "create", point: "create.ports", inShim: true, dies: "shim"},
	{phase: "create", point: "create.pause-binary", inShim: true, dies: "shim"},
	{phase: "create", point: "create.pause", inShim: true, dies: "shim"},
	{phase: "create", point: "create.ready", inShim: true, dies: "shim"},
	// run -d.
	{phase: "run", point: "cli.run.record", dies: "cli"},
	{phase: "run", point: "cli.run.created", dies: "cli"},
	{phase: "run", point: "shim.run.record", inShim: true, dies: "shim"},
	{phase: "run", point: "shim.run.runc-created", inShim: true, dies: "shim"},
	{phase: "run", point: "shim.run.started", inShim: true, dies: "shim"},
	{phase: "run", runc: "create:before", dies: "runc"},
	{phase: "run", runc: "create:after", dies: "runc"},
	{phase: "run", runc: "create:shim", dies: "shim"},
	{phase: "run", runc: "start:before", dies: "runc"},
	{phase: "run", runc: "start:after", dies: "runc"},
	{phase: "run", runc: "start:shim", dies: "shim"},
	// exec into a running container.
	{phase: "exec", point: "cli.exec.added", dies: "cli"},
	{phase: "exec", point: "shim.exec.started", inShim: true, dies: "shim"},
	{phase: "exec", runc: "exec:after", dies: "runc"},
	{phase: "exec", runc: "exec:shim", dies: "shim"},
	// stop of a container, and of the whole sandbox.
	{phase: "stop", point: "cli.stop.signalled", dies: "cli"},
	{phase: "stop", runc: "kill:after", dies: "runc"},
	{phase: "stop", runc: "kill:shim", dies: "shim"},
	{phase: "sbstop", point: "shim.stop.containers", inShim: true, dies: "shim"},
	{phase: "sbstop", point: "shim.stop.pause", inShim: true, dies: "shim"},
	// rm -f of a container, and of the sandbox.
	{phase: "rm", point: "shim.rm.container-deleted", inShim: true, dies: "shim"},
	{phase: "rm", runc: "delete:before", dies: "runc"},
	{phase: "rm", runc: "delete:shim", dies: "shim"},
	{phase: "sbrm", point: "shim.rm.containers", inShim: true, dies: "shim"},
	{phase: "sbrm", point: "remove.containers", inShim: true, dies: "shim"},
	{phase: "sbrm", point: "remove.pause", inShim: true, dies: "shim"},
	{phase: "sbrm", point: "remove.network", inShim: true, dies: "shim"},
	// The shim or the pause killed while a container runs.
	{phase: "none", kill: "shim", dies: "shim"},
	{phase: "none", kill: "pause", dies: "pause"},
	// The pause killed while the shim is at a step of create or run.
	{phase: "create", point: "create.pause", inShim: true, pauseAtPoint: true, failed: true},
	{phase: "create", point: "create.ready", inShim: true, pauseAtPoint: true},
	{phase: "run", point: "shim.run.record", inShim: true, pauseAtPoint: true, failed: true},
	{phase: "run", point: "shim.run.runc-created", inShim: true, pauseAtPoint: true, failed: true},
}

func TestFaultInjection(t *testing.T) {
	testnode.RequirePrivileged(t)
	bins := testnode.BuildTagged(t, "podbox_faults", "podbox", "containerd-shim-podbox-v1")
	fs := busybox(t)
	wrapper := runcWrapper(t)
	for _, fc := range faultCases {
		t.Run(fc.name(), func(t *testing.T) {
			n := newCLINode(t)
			n.podbox = filepath.Join(bins, "podbox")
			once := filepath.Join(t.TempDir(), "fired")
			n.env = append(n.env, "PODBOX_SHIM="+filepath.Join(bins, "containerd-shim-podbox-v1"),
				"PODBOX_RUNTIME="+wrapper, "PODBOX_FAULT_RUNC_ONCE="+once,
				// A shim whose CLI died before it connected waits this
				// long for it, then goes by itself.
				"PODBOX_SHIM_CONNECT_GRACE=2s")
			runFault(t, n, fc, fs, once)
		})
	}
}

// The binaries users run carry no fault hook: without the podbox_faults
// tag, faultpoint.Point is empty, and neither the variable it reads nor
// the names of the steps are in the CLI or the shim.
func TestReleaseBinariesCarryNoFaultHook(t *testing.T) {
	for _, name := range []string{"podbox", "containerd-shim-podbox-v1"} {
		b, err := os.ReadFile(testnode.Binary(t, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"PODBOX_FAULT", "cli.create.netns-prepared", "shim.run.runc-created", "remove.network"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains %q: the fault hook is compiled in", name, s)
			}
		}
	}
}

// runFault sets up what the case's phase needs, runs the command hit,
// checks that the fault fired, then checks ls and ps and removes what is
// listed.
func runFault(t *testing.T, n *cliNode, fc faultCase, fs, once string) {
	var fault []string
	if fc.point != "" {
		fault = append(fault, "PODBOX_FAULT="+fc.point)
	}
	if fc.runc != "" {
		fault = append(fault, "PODBOX_FAULT_RUNC="+fc.runc)
	}
	hold := filepath.Join(filepath.Dir(once), "hold")
	if fc.pauseAtPoint {
		if err := os.Mkdir(hold, 0o700); err != nil {
			t.Fatal(err)
		}
		fault = append(fault, "PODBOX_FAULT_HOLD="+hold)
	}
	shimFault := fc.inShim || fc.runc != ""
	createEnv := []string(nil)
	if shimFault || fc.phase == "create" {
		createEnv = fault
	}
	create := []string{"sandbox", "create", "--name", "f", "-p", "8095:80"}
	run := []string{"run", "-d", "--sandbox", "f", "--name", "c", "--rootfs", fs, "--", "sleep", "1000"}
	var hit []string
	switch fc.phase {
	case "create":
		hit = create
	case "run":
		n.mustRunEnv(createEnv, create...)
		hit = run
	default:
		n.mustRunEnv(createEnv, create...)
		n.mustRun(run...)
		switch fc.phase {
		case "exec":
			hit = []string{"exec", "c", "--", "true"}
		case "stop":
			hit = []string{"stop", "--timeout", "1", "c"}
		case "sbstop":
			hit = []string{"sandbox", "stop", "--timeout", "1", "f"}
		case "rm":
			hit = []string{"rm", "-f", "c"}
		case "sbrm":
			hit = []string{"sandbox", "rm", "-f", "f"}
		}
	}
	shimPID := 0
	if fc.phase != "create" {
		shimPID = int(n.inspect("f")["shimPid"].(float64))
	}
	var cliSignal syscall.Signal
	if hit != nil {
		env := []string(nil)
		if !shimFault || fc.phase == "create" {
			env = fault
		}
		var stopped func()
		if fc.pauseAtPoint {
			stopped = func() { killPauseOfHeldShim(t, hold) }
		}
		code, stderr, sig := n.runBounded(env, stopped, hit...)
		cliSignal = sig
		t.Logf("podbox %s: exit %d, signal %v: %s", strings.Join(hit, " "), code, sig, strings.TrimSpace(stderr))
		// A command that says it succeeded did what it said, fault or
		// not; a create that says it failed left nothing behind.
		switch {
		case code == 0 && fc.failed:
			t.Errorf("podbox %s succeeded, though the sandbox's pause died before it was ready", strings.Join(hit, " "))
		case code == 0:
			checkDone(t, n, fc.phase)
		case sig == 0 && fc.phase == "create":
			if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
				t.Errorf("sandbox create failed, but left %q listed", out)
			}
		}
	}
	switch fc.kill {
	case "shim":
		mustKill(t, shimPID)
	case "pause":
		mustKill(t, int(n.inspect("f")["pausePid"].(float64)))
	}

	// The fault fired: whoever was to die is dead.
	switch fc.dies {
	case "cli":
		if cliSignal != syscall.SIGKILL {
			t.Fatalf("fault %s: the CLI was not killed (signal %v)", fc.point, cliSignal)
		}
	case "shim":
		if !waitUntil(10*time.Second, func() bool { return len(shimsOf(n.root)) == 0 }) {
			t.Fatalf("fault %s%s: a shim still runs: %v", fc.point, fc.runc, shimsOf(n.root))
		}
	case "runc":
		if _, err := os.Stat(once); err != nil {
			t.Fatalf("fault %s: the runc wrapper never fired", fc.runc)
		}
	case "pause":
		// The shim sees its pause die, and stops the containers.
		if !waitUntil(20*time.Second, func() bool { return n.inspect("f")["state"] == "notready" }) {
			t.Fatalf("after the pause was killed the sandbox is %v, want notready", n.inspect("f")["state"])
		}
	}

	ids := checkTruth(t, n, fs)
	if len(ids) > 0 {
		n.mustRun(append([]string{"sandbox", "rm", "-f"}, ids...)...)
	} else if code, _, _ := n.run("sandbox", "rm", "-f", "f"); code == 0 {
		t.Errorf("sandbox rm -f f succeeded for a sandbox ls did not list")
	}
	if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("after rm -f, sandbox ls -q lists %q", out)
	}
	if out := n.mustRun("ps", "-a", "-q"); out != "" {
		t.Errorf("after rm -f, ps -a -q lists %q", out)
	}
	// The leak check, registered by newCLINode, runs when the case ends.
}

// checkDone checks that a removal or stop that exited 0 removed or
// stopped what it was asked to.
func checkDone(t *testing.T, n *cliNode, phase string) {
	t.Helper()
	switch phase {
	case "sbrm":
		if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
			t.Errorf("sandbox rm -f exited 0, but sandbox ls still lists %q", out)
		}
	case "rm":
		if out := n.mustRun("ps", "-a", "-q"); out != "" {
			t.Errorf("rm -f exited 0, but ps -a still lists %q", out)
		}
	case "sbstop":
		if st := n.inspect("f")["state"]; st != "stopped" {
			t.Errorf("sandbox stop exited 0, but the sandbox is %v", st)
		}
	case "stop":
		if out := n.mustRun("ps", "-q"); out != "" {
			t.Errorf("stop exited 0, but ps lists %q running", out)
		}
	}
}

// checkTruth checks that sandbox ls and ps answer in time and that what
// they say is so, and returns the IDs of the sandboxes listed.
func checkTruth(t *testing.T, n *cliNode, fs string) []string {
	t.Helper()
	var sbs []struct {
		ID, Name, State, Problem string
		ShimPID                  int `json:"shimPid"`
		PausePID                 int `json:"pausePid"`
	}
	code, out, stderr := n.runOut(nil, "sandbox", "ls", "-o", "json")
	if code != 0 {
		t.Fatalf("sandbox ls after the fault: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &sbs); err != nil {
		t.Fatalf("sandbox ls -o json: %v: %s", err, out)
	}
	var ids []string
	for _, sb := range sbs {
		ids = append(ids, sb.ID)
		shim, pause := sandbox.Alive(sb.ShimPID, 0), sandbox.Alive(sb.PausePID, 0)
		t.Logf("listed: %s %s (shim %d alive %v, pause %d alive %v) %s", sb.Name, sb.State, sb.ShimPID, shim, sb.PausePID, pause, sb.Problem)
		switch sb.State {
		case "ready":
			if !shim || !pause {
				t.Errorf("sandbox %s is listed ready, but its shim is alive: %v, its pause: %v", sb.Name, shim, pause)
				continue
			}
			// Ready means usable: a container runs in it.
			if code, _, stderr := n.run("run", "--rm", "--sandbox", sb.ID, "--rootfs", fs, "--", "true"); code != 0 {
				t.Errorf("sandbox %s is listed ready, but a container does not run in it: %s", sb.Name, stderr)
			}
		case "creating":
			if !shim {
				t.Errorf("sandbox %s is listed creating, but its shim is dead", sb.Name)
			}
		}
	}
	var cs []struct {
		Name, State string
		PID         int `json:"pid"`
	}
	code, out, stderr = n.runOut(nil, "ps", "-a", "-o", "json")
	if code != 0 {
		t.Fatalf("ps -a after the fault: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("ps -a -o json: %v: %s", err, out)
	}
	for _, c := range cs {
		alive := c.PID > 0 && sandbox.Alive(c.PID, 0) && !zombie(c.PID)
		t.Logf("container: %s %s (pid %d alive %v)", c.Name, c.State, c.PID, alive)
		if c.State == "running" && !alive {
			t.Errorf("container %s is listed running, but its process %d is gone", c.Name, c.PID)
		}
		if c.State == "stopped" && alive {
			t.Errorf("container %s is listed stopped, but its process %d runs", c.Name, c.PID)
		}
	}
	return ids
}

// runOut is run with extra environment, bounded in time: a command that
// hangs after a fault is a failure, not a stuck test.
func (n *cliNode) runOut(extra []string, args ...string) (int, string, string) {
	n.t.Helper()
	code, out, stderr, _ := n.runEnv(extra, args...)
	return code, out, stderr
}

// runBounded is runEnv; with meanwhile, it runs that alongside the command.
func (n *cliNode) runBounded(extra []string, meanwhile func(), args ...string) (int, string, syscall.Signal) {
	n.t.Helper()
	if meanwhile == nil {
		code, _, stderr, sig := n.runEnv(extra, args...)
		return code, stderr, sig
	}
	type result struct {
		code   int
		stderr string
		sig    syscall.Signal
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr, sig := n.runEnv(extra, args...)
		done <- result{code, stderr, sig}
	}()
	meanwhile()
	r := <-done
	return r.code, r.stderr, r.sig
}

// killPauseOfHeldShim waits until a shim holds at its fault point
// (PODBOX_FAULT_HOLD=hold), SIGKILLs the pause it started, and lets it go
// on.
func killPauseOfHeldShim(t *testing.T, hold string) {
	t.Helper()
	held := filepath.Join(hold, "held")
	var shim int
	if !waitUntil(30*time.Second, func() bool {
		b, err := os.ReadFile(held)
		shim, _ = strconv.Atoi(string(b))
		return err == nil && shim > 0
	}) {
		t.Fatal("no shim held at its fault point within 30 s")
	}
	defer os.Remove(held)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if strings.TrimSpace(string(comm)) == "pause" && ppid(pid) == shim {
			mustKill(t, pid)
			// Dead before the shim goes on: SIGKILL takes effect a
			// moment after kill(2) returns.
			if !waitUntil(10*time.Second, func() bool { st := procState(pid); return st == 0 || st == 'Z' || st == 'X' }) {
				t.Fatalf("pause %d survived SIGKILL", pid)
			}
			return
		}
	}
	t.Fatalf("shim %d holds, but has no pause child", shim)
}

func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	if len(rest) == 0 {
		return 0
	}
	return rest[0]
}

func (n *cliNode) mustRunEnv(extra []string, args ...string) string {
	n.t.Helper()
	code, out, stderr, _ := n.runEnv(extra, args...)
	if code != 0 {
		n.t.Fatalf("podbox %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return out
}

// runEnv runs podbox args in the node with extra environment; it fails the
// test if the command takes more than a minute.
func (n *cliNode) runEnv(extra []string, args ...string) (int, string, string, syscall.Signal) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := n.node.Command(ctx, n.podbox, args...)
	cmd.Env = append(append([]string{}, n.env...), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		n.t.Fatalf("podbox %s: still running after a minute", strings.Join(args, " "))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return -1, out.String(), errb.String(), ws.Signal()
		}
		return ee.ExitCode(), out.String(), errb.String(), 0
	}
	if err != nil {
		n.t.Fatalf("podbox %s: %v", strings.Join(args, " "), err)
	}
	return 0, out.String(), errb.String(), 0
}

// shimsOf lists the shim processes serving sandboxes under root.
func shimsOf(root string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte("containerd-shim-podbox-v1")) && bytes.Contains(b, []byte(root+"/")) && !zombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	return len(rest) > 0 && (rest[0] == 'Z' || rest[0] == 'X')
}

func mustKill(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no process to kill (pid %d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// runcWrapper writes an OCI runtime that is runc, except that at the
// operation PODBOX_FAULT_RUNC names (OP:WHEN), the first time any process
// of the test gets there (PODBOX_FAULT_RUNC_ONCE is made then), it is
// SIGKILLed before it runs runc (before) or after runc did its work
// (after), or it SIGKILLs its parent, the shim, and then runs runc (shim).
func runcWrapper(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("runc")
	if err != nil {
		testnode.Skip(t, "runc: %v", err)
	}
	path := filepath.Join(t.TempDir(), "runc-fault")
	script := `#!/bin/sh
op=
for a in "$@"; do
	case "$a" in
	create|start|exec|kill|delete) op=$a; break ;;
	esac
done
when=
case "$PODBOX_FAULT_RUNC" in
"$op":*) mkdir "$PODBOX_FAULT_RUNC_ONCE" 2>/dev/null && when=${PODBOX_FAULT_RUNC#*:} ;;
esac
case "$when" in
before) kill -9 $$ ;;
shim) kill -9 $PPID ;;
after) ` + real + ` "$@"; kill -9 $$ ;;
esac
exec ` + real + ` "$@"
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
