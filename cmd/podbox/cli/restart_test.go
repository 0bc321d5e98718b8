package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// A bad --restart is one line naming the value, and changes nothing.
func TestRunBadRestartChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	rootfs := t.TempDir()
	e.addSandbox("web", sandbox.StateReady, true)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--restart", "sometimes"}, []string{`--restart "sometimes"`, "want no, on-failure[:N] or always"}},
		{[]string{"--restart", "on-failure:-1"}, []string{`--restart "on-failure:-1"`, `count "-1"`}},
		{[]string{"--restart", "on-failure:x"}, []string{`--restart "on-failure:x"`, `count "x"`}},
		{[]string{"--restart", "always:3"}, []string{`--restart "always:3"`, "only on-failure takes a count"}},
		{[]string{"--restart", "always", "--rm"}, []string{"--rm and --restart always exclude each other"}},
		{[]string{"--restart", "on-failure:2", "--rm"}, []string{"--rm and --restart on-failure:2 exclude each other"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := e.tree()
			args := append([]string{"run", "--sandbox", "web", "--rootfs", rootfs}, tc.args...)
			code, out, stderr := e.run(append(args, "--", "true")...)
			assertOneLineError(t, code, stderr, tc.want...)
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			e.assertUntouched(before)
		})
	}
}

// The policy reaches the shim as the spec's annotation; "no" (the default)
// puts none there, and --rm goes with it.
func TestRunRestartAnnotation(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	e.readySandbox(f, "web")
	rootfs := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string // "" for no annotation
	}{
		{[]string{"-d", "--restart", "on-failure:3"}, "on-failure:3"},
		{[]string{"-d", "--restart", "on-failure"}, "on-failure"},
		{[]string{"--restart", "always"}, "always"},
		{[]string{"-d", "--restart", "no"}, ""},
		{[]string{"--rm", "--restart", "no"}, ""},
		{[]string{"-d"}, ""},
	} {
		args := append([]string{"run", "--sandbox", "web", "--rootfs", rootfs}, tc.args...)
		code, _, stderr := e.run(append(args, "--", "true")...)
		if code != 0 {
			t.Fatalf("run %q: %d %q", tc.args, code, stderr)
		}
		f.mu.Lock()
		var bundle string
		for _, req := range f.tasks { // this run's only
			bundle = req.Bundle
		}
		f.tasks = map[string]*taskapi.CreateTaskRequest{}
		f.mu.Unlock()
		b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
		if slices.Contains(tc.args, "--rm") && os.IsNotExist(err) {
			continue // removed with its container; its create was checked
		}
		var spec specs.Spec
		if err == nil {
			err = json.Unmarshal(b, &spec)
		}
		if err != nil {
			t.Fatalf("run %q: spec: %v", tc.args, err)
		}
		got, ok := spec.Annotations["io.podbox.restart"]
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("run %q: annotation io.podbox.restart = %q (set %v), want %q", tc.args, got, ok, tc.want)
		}
	}
}

// ps and inspect show the restart count, the exit's reason and a pending
// restart; rm refuses a restarting container without -f.
func TestPsAndInspectRestarts(t *testing.T) {
	e := newTestEnv(t)
	sb := e.addSandbox("web", sandbox.StateReady, false)
	next := time.Date(2026, 1, 2, 3, 4, 13, 0, time.UTC) // 8 s after the test's now
	waiting := e.addContainer(sb, "waiting", sandbox.ContainerRestarting)
	waiting.RestartPolicy, waiting.RestartCount, waiting.NextRestart = "always", 3, &next
	waiting.Exit = &sandbox.Exit{Status: 1, Reason: sandbox.ReasonError}
	oom := e.addContainer(sb, "oom", sandbox.ContainerStopped)
	oom.Exit = &sandbox.Exit{Status: 137, Reason: sandbox.ReasonOOMKilled}
	oom.CreatedAt = oom.CreatedAt.Add(time.Second)
	for _, c := range []*sandbox.Container{waiting, oom} {
		if err := e.store().SaveContainer(c); err != nil {
			t.Fatal(err)
		}
	}

	// The shim is dead: a restart it was waiting for will not come.
	code, out, _ := e.run("ps", "-a")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(strings.Join(strings.Fields(lines[0]), " "), "STATE RESTARTS COMMAND") {
		t.Fatalf("ps -a:\n%s", out)
	}
	for i, want := range []string{"waiting web stopped (1) Error 3 sh", "oom web stopped (137) OOMKilled 0 sh"} {
		if got := strings.Join(strings.Fields(lines[i+1])[1:], " "); !strings.HasPrefix(got, want) {
			t.Errorf("row %q, want %q…", got, want)
		}
	}
	code, out, _ = e.run("inspect", "oom")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("inspect: %d %v %q", code, err, out)
	}
	exit, _ := got["exit"].(map[string]any)
	if got["name"] != "oom" || got["sandboxName"] != "web" || got["restartCount"] != 0.0 || exit["reason"] != "OOMKilled" || exit["status"] != 137.0 {
		t.Errorf("inspect oom: %v", got)
	}
	code, _, stderr := e.run("inspect", "nope")
	assertOneLineError(t, code, stderr, `container "nope"`, "not found")

	// With its shim alive the record's restarting stands, shown with when.
	if got := containerStatus(waiting, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); got != "restarting (1) Error, in 8s" {
		t.Errorf("status of a waiting container = %q", got)
	}
	if got := containerStatus(waiting, next.Add(time.Second)); got != "restarting (1) Error, in 0s" {
		t.Errorf("status of a container whose restart is due = %q", got)
	}
	f := newFakeShim(t)
	live := e.readySandbox(f, "live")
	c := e.addContainer(live, "flaky", sandbox.ContainerRestarting)
	f.mu.Lock()
	f.states[c.ID] = tasktypes.Status_STOPPED
	f.mu.Unlock()
	code, out, _ = e.run("inspect", "flaky")
	if code != 0 || !strings.Contains(out, `"state": "restarting"`) {
		t.Errorf("inspect of a restarting container: %d\n%s", code, out)
	}
	if code, out, _ = e.run("ps", "--sandbox", "live", "-q"); code != 0 || out != c.ID+"\n" {
		t.Errorf("ps without -a = %q, want the restarting container", out)
	}
	before := e.tree()
	code, _, stderr = e.run("rm", "flaky")
	assertOneLineError(t, code, stderr, `container "flaky"`, "restarting", "-f")
	e.assertUntouched(before)
	// stop tells the shim, which calls the restart off (a Kill of the
	// exited init).
	if code, _, stderr := e.run("stop", "flaky"); code != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	if calls := f.callList(); !slices.Contains(calls, "Kill killed") {
		t.Errorf("stop of a restarting container: calls %q, want a Kill", calls)
	}
}
