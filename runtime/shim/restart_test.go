package shim_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/integration/rootfs"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// Restarts as the Task API shows them: a client's Wait sees the run it
// waited for, the shim runs the container again by itself, a Kill ends
// that for good, a misspelt policy is refused at Create, and a CRI
// container's policy is not the shim's to act on.
func TestRestartThroughTaskAPI(t *testing.T) {
	e := newEnv(t)
	t.Setenv("PODBOX_RESTART_BACKOFF", "100ms,200ms") // the shim inherits it
	ctx := context.Background()
	id := sandbox.NewID()
	c := e.start(t, id)
	if _, err := c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id,
		Annotations: map[string]string{"io.podbox.name": "restarts", "io.podbox.network": "none"}}); err != nil {
		t.Fatal(err)
	}
	fs := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.BuildBusybox(fs, ""); err != nil {
		t.Fatal(err)
	}

	_, err := c.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: "bad", Bundle: bundle(t, fs, restartPolicy("sometimes"), "", "true")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `io.podbox.restart="sometimes"`) {
		t.Errorf("Create with a misspelt policy: %v", err)
	}

	_, err = c.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: "always", Bundle: bundle(t, fs, restartPolicy("always"), "", "true")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Task.Start(ctx, &taskapi.StartRequest{ID: "always"})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := c.Task.Wait(ctx, &taskapi.WaitRequest{ID: "always"}); err != nil || w.ExitStatus != 0 {
		t.Fatalf("Wait of the first run: %v, %v", w, err)
	}
	waitState(t, c, "always", "running again", func(s *taskapi.StateResponse) bool {
		return s.Status == tasktypes.Status_RUNNING && s.Pid != first.Pid
	})
	if _, err := c.Task.Kill(ctx, &taskapi.KillRequest{ID: "always", Signal: uint32(syscall.SIGKILL), All: true}); err != nil && status.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	waitState(t, c, "always", "stopped", func(s *taskapi.StateResponse) bool { return s.Status == tasktypes.Status_STOPPED })
	time.Sleep(600 * time.Millisecond) // three back-offs
	st := waitState(t, c, "always", "stopped", func(s *taskapi.StateResponse) bool { return s.Status == tasktypes.Status_STOPPED })
	rec, err := sandbox.Store{Root: e.opts.Root}.LoadContainer(id, "always")
	if err != nil {
		t.Fatal(err)
	}
	if rec.RestartPolicy != "always" || rec.RestartCount < 1 || rec.State != sandbox.ContainerStopped || rec.NextRestart != nil {
		t.Errorf("record after a kill: %+v (last pid %d)", rec, st.Pid)
	}
	if _, err := c.Task.Delete(ctx, &taskapi.DeleteRequest{ID: "always"}); err != nil {
		t.Fatal(err)
	}

	cri := restartPolicy("always")
	cri["io.kubernetes.cri.container-type"] = "container"
	cgroup := "/" + e.opts.CgroupParent + "/cri-" + id[:8]
	_, err = c.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: "cri", Bundle: bundle(t, fs, cri, cgroup, "true")})
	if err != nil {
		t.Fatal(err)
	}
	first, err = c.Task.Start(ctx, &taskapi.StartRequest{ID: "cri"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Task.Wait(ctx, &taskapi.WaitRequest{ID: "cri"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if s, err := c.Task.State(ctx, &taskapi.StateRequest{ID: "cri"}); err != nil || s.Status != tasktypes.Status_STOPPED || s.Pid != first.Pid {
		t.Errorf("CRI container with a restart policy, after its exit: %v, %v", s, err)
	}
	if _, err := c.Task.Delete(ctx, &taskapi.DeleteRequest{ID: "cri"}); err != nil {
		t.Fatal(err)
	}
	shutdown(t, c, id)
}

func restartPolicy(p string) map[string]string { return map[string]string{"io.podbox.restart": p} }

// bundle writes a bundle running args in fs with the annotations ann. A
// CRI container's spec comes complete, as the shim joins it to nothing:
// it needs its cgroup.
func bundle(t *testing.T, fs string, ann map[string]string, cgroup string, args ...string) string {
	t.Helper()
	spec := specs.Spec{
		Version:     "1.0.2",
		Process:     &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, NoNewPrivileges: true},
		Root:        &specs.Root{Path: fs},
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Annotations: ann,
		Linux: &specs.Linux{CgroupsPath: cgroup, Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		}},
	}
	dir := t.TempDir()
	b, err := json.Marshal(&spec)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitState polls the task's state until ok holds, for up to 5 s.
func waitState(t *testing.T, c *shimclient.Client, id, what string, ok func(*taskapi.StateResponse) bool) *taskapi.StateResponse {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := c.Task.State(context.Background(), &taskapi.StateRequest{ID: id})
		if err != nil {
			t.Fatalf("State of %s: %v", id, err)
		}
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not %s within 5 s: %v", id, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
