package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/runtime/tasktypes"
	"github.com/podbox/podbox/sandbox"
)

// fakeShim serves the Sandbox and Task APIs in the test process, recording
// what the CLI asks: the client flow is tested without a real shim. Its
// "processes" write fixed output to their FIFOs and exit with exitCode.
type fakeShim struct {
	sbapi.TTRPCSandboxService
	taskapi.TaskService

	addr     string
	failWith error // CreateSandbox's answer
	// pinRoot, if set, is the state root whose ROOT/netns/ID CreateSandbox
	// looks at: pinned says whether a namespace was pinned there then.
	pinRoot string
	pinned  bool

	mu        sync.Mutex
	calls     []string
	created   *sbapi.CreateSandboxRequest
	tasks     map[string]*taskapi.CreateTaskRequest
	execs     map[string]*taskapi.ExecProcessRequest
	states    map[string]tasktypes.Status
	exitCode  uint32
	execSpecs []specs.Process
}

func newFakeShim(t *testing.T) *fakeShim {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "shim.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeShim{addr: "unix://" + sock, tasks: map[string]*taskapi.CreateTaskRequest{},
		execs: map[string]*taskapi.ExecProcessRequest{}, states: map[string]tasktypes.Status{}}
	sbapi.RegisterTTRPCSandboxService(srv, f)
	taskapi.RegisterTaskService(srv, f)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeShim) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeShim) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeShim) CreateSandbox(_ context.Context, r *sbapi.CreateSandboxRequest) (*sbapi.CreateSandboxResponse, error) {
	f.record("CreateSandbox")
	f.mu.Lock()
	f.created = r
	if f.pinRoot != "" {
		f.pinned = netsetup.IsNetNSPin(filepath.Join(f.pinRoot, "netns", r.SandboxId))
	}
	f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	return &sbapi.CreateSandboxResponse{}, nil
}

func (f *fakeShim) StartSandbox(context.Context, *sbapi.StartSandboxRequest) (*sbapi.StartSandboxResponse, error) {
	f.record("StartSandbox")
	return &sbapi.StartSandboxResponse{Pid: 1}, nil
}

func (f *fakeShim) ShutdownSandbox(context.Context, *sbapi.ShutdownSandboxRequest) (*sbapi.ShutdownSandboxResponse, error) {
	f.record("ShutdownSandbox")
	return &sbapi.ShutdownSandboxResponse{}, nil
}

func (f *fakeShim) PingSandbox(context.Context, *sbapi.PingRequest) (*sbapi.PingResponse, error) {
	f.record("PingSandbox")
	return &sbapi.PingResponse{}, nil
}

func (f *fakeShim) StopSandbox(_ context.Context, r *sbapi.StopSandboxRequest) (*sbapi.StopSandboxResponse, error) {
	f.record("StopSandbox")
	return &sbapi.StopSandboxResponse{}, nil
}

func (f *fakeShim) Create(_ context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	f.record("Create")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[r.ID] = r
	f.states[r.ID] = tasktypes.Status_CREATED
	return &taskapi.CreateTaskResponse{Pid: 4242}, nil
}

// writeOutput plays the process: output on its FIFOs, then closes them.
func writeOutput(stdout, stderr string) {
	for _, w := range []struct{ path, text string }{{stdout, "hello from the container\n"}, {stderr, "a warning\n"}} {
		if w.path == "" {
			continue
		}
		if fd, err := os.OpenFile(w.path, os.O_WRONLY, 0); err == nil {
			fd.WriteString(w.text)
			fd.Close()
		}
	}
}

func (f *fakeShim) Start(_ context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	f.record("Start " + r.ExecID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ExecID != "" {
		e := f.execs[r.ExecID]
		go writeOutput(e.Stdout, e.Stderr)
		return &taskapi.StartResponse{Pid: 4343}, nil
	}
	t, ok := f.tasks[r.ID]
	if !ok {
		return nil, status.Error(codes.NotFound, "no task")
	}
	f.states[r.ID] = tasktypes.Status_RUNNING
	go writeOutput(t.Stdout, t.Stderr)
	return &taskapi.StartResponse{Pid: 4242}, nil
}

func (f *fakeShim) Wait(_ context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	f.record("Wait " + r.ExecID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ExecID == "" {
		f.states[r.ID] = tasktypes.Status_STOPPED
	}
	return &taskapi.WaitResponse{ExitStatus: f.exitCode}, nil
}

func (f *fakeShim) State(_ context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.states[r.ID]
	if !ok {
		return nil, status.Error(codes.NotFound, "no task")
	}
	return &taskapi.StateResponse{ID: r.ID, Status: st, Pid: 4242, ExitStatus: f.exitCode}, nil
}

func (f *fakeShim) Kill(_ context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	f.record("Kill " + syscall.Signal(r.Signal).String())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[r.ID] = tasktypes.Status_STOPPED
	return &emptypb.Empty{}, nil
}

func (f *fakeShim) Delete(_ context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	f.record("Delete " + r.ExecID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ExecID == "" {
		delete(f.states, r.ID)
	}
	return &taskapi.DeleteResponse{}, nil
}

func (f *fakeShim) Exec(_ context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record("Exec")
	var p specs.Process
	if r.Spec.TypeUrl != processTypeURL || json.Unmarshal(r.Spec.Value, &p) != nil {
		return nil, status.Error(codes.InvalidArgument, "bad process spec")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs[r.ExecID] = r
	f.execSpecs = append(f.execSpecs, p)
	return &emptypb.Empty{}, nil
}

func (f *fakeShim) CloseIO(context.Context, *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// useFakeShim makes `shim start` print f's address.
// useFakeShim makes f the shim the CLI starts: the serving process it
// launches (with the listener as fd 3) is this test binary as a relay to f.
func (e *testEnv) useFakeShim(f *fakeShim) {
	shim := filepath.Join(e.t.TempDir(), ShimBinary)
	os.WriteFile(shim, []byte("#!/bin/sh\ntouch "+e.marker+"\n"+envFakeShimRelay+"='"+f.addr+"' exec '"+os.Args[0]+"'\n"), 0o755)
	e.env["PODBOX_SHIM"] = shim
}

// envFakeShimRelay, set, makes the test binary a stand-in serving shim (see
// TestMain).
const envFakeShimRelay = "PODBOX_TEST_FAKE_SHIM_RELAY"

// TestMain also fails the run if the machine's own network namespace
// changed: the node commands' tests change network namespaces.
func TestMain(m *testing.M) {
	if addr := os.Getenv(envFakeShimRelay); addr != "" {
		os.Exit(relayShim(addr))
	}
	testnode.Main(m)
}

// relayShim serves as a shim would, on the listener inherited as fd 3: it
// relays the one connection of the launching CLI to the fake shim at addr,
// in the test process, and exits when that connection ends.
func relayShim(addr string) int {
	l, err := net.FileListener(os.NewFile(3, "shim-listener"))
	if err != nil {
		return 1
	}
	c, err := l.Accept()
	l.Close()
	if err != nil {
		return 1
	}
	defer c.Close()
	f, err := net.Dial("unix", strings.TrimPrefix(addr, "unix://"))
	if err != nil {
		return 1
	}
	defer f.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(f, c); done <- struct{}{} }()
	go func() { io.Copy(c, f); done <- struct{}{} }()
	<-done
	return 0
}

func TestSandboxCreateFlow(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	e.useFakeShim(f)
	code, out, stderr := e.run("sandbox", "create", "--name", "web", "--hostname", "www", "--share-pid", "--label", "app=shop")
	if code != 0 {
		t.Fatalf("create: %s", stderr)
	}
	id := strings.TrimSpace(out)
	if len(id) != 64 || f.created.SandboxId != id {
		t.Errorf("printed %q, shim got %q", out, f.created.SandboxId)
	}
	want := map[string]string{"io.podbox.name": "web", "io.podbox.hostname": "www", "io.podbox.network": "bridge",
		"io.podbox.share-pid": "true", "io.podbox.label.app": "shop"}
	for k, v := range want {
		if f.created.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, f.created.Annotations[k], v)
		}
	}
	if got := f.callList(); !slices.Equal(got, []string{"CreateSandbox"}) {
		t.Errorf("calls %q", got)
	}
}

func TestSandboxCreateFailureShutsDownShim(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	f.failWith = status.Error(codes.Unknown, `sandbox "web": create: allocate IP from 10.89.0.0/16: no free address`)
	e.useFakeShim(f)
	code, out, stderr := e.run("sandbox", "create", "--name", "web")
	if stderr != "podbox: sandbox \"web\": create: allocate IP from 10.89.0.0/16: no free address\n" {
		t.Errorf("stderr %q", stderr)
	}
	if code == 0 || out != "" {
		t.Errorf("code %d stdout %q", code, out)
	}
	if got := f.callList(); !slices.Equal(got, []string{"CreateSandbox", "ShutdownSandbox"}) {
		t.Errorf("calls %q, want CreateSandbox then ShutdownSandbox", got)
	}
}

// The CLI makes the sandbox's network namespace while the shim starts, and
// it is pinned where the shim adopts it by the time CreateSandbox arrives. A
// create that fails leaves no namespace behind.
func TestSandboxCreatePreparesNetNS(t *testing.T) {
	testnode.RequirePrivileged(t)
	for _, fail := range []bool{false, true} {
		e := newTestEnv(t)
		f := newFakeShim(t)
		f.pinRoot = e.root
		if fail {
			f.failWith = status.Error(codes.AlreadyExists, `sandbox "web": name is in use`)
		}
		e.useFakeShim(f)
		code, out, stderr := e.run("sandbox", "create", "--name", "web")
		if (code == 0) == fail {
			t.Fatalf("fail=%v: create: code %d, %s", fail, code, stderr)
		}
		if !f.pinned {
			t.Errorf("fail=%v: no namespace pinned at ROOT/netns/ID when CreateSandbox arrived", fail)
		}
		pin := filepath.Join(e.root, "netns", f.created.SandboxId)
		if got := netsetup.IsNetNSPin(pin); got == fail {
			t.Errorf("fail=%v: after the create the pin is mounted: %v", fail, got)
		}
		if !fail && strings.TrimSpace(out) != f.created.SandboxId {
			t.Errorf("printed %q", out)
		}
		if fail {
			if _, err := os.Stat(pin); !os.IsNotExist(err) {
				t.Errorf("pin file %s left after a failed create: %v", pin, err)
			}
		}
	}
}

// readySandbox is a ready sandbox record served by f.
func (e *testEnv) readySandbox(f *fakeShim, name string) *sandbox.Sandbox {
	sb := e.addSandbox(name, sandbox.StateReady, true)
	sb.ShimAddress = f.addr
	if err := e.store().SaveSandbox(sb); err != nil {
		e.t.Fatal(err)
	}
	return sb
}

func TestRunForegroundFlow(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	f.exitCode = 3
	sb := e.readySandbox(f, "web")
	rootfs := t.TempDir()
	code, out, stderr := e.run("run", "--sandbox", "web", "--name", "app", "--rootfs", rootfs, "-e", "A=1", "--", "sh", "-c", "echo hi")
	if code != 3 {
		t.Errorf("exit code %d, want the container's 3 (stderr %q)", code, stderr)
	}
	if out != "hello from the container\n" || stderr != "a warning\n" {
		t.Errorf("stdout %q stderr %q", out, stderr)
	}
	c, err := e.store().ResolveContainer("app")
	if err != nil {
		t.Fatal(err)
	}
	req := f.tasks[c.ID]
	if req.Bundle != e.store().ContainerDir(sb.ID, c.ID) || req.Stdout == "" || req.Stderr == "" || req.Stdin != "" || req.Terminal {
		t.Errorf("create request %+v", req)
	}
	var spec specs.Spec
	b, _ := os.ReadFile(filepath.Join(req.Bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Root.Path != rootfs || !slices.Equal(spec.Process.Args, []string{"sh", "-c", "echo hi"}) || !slices.Contains(spec.Process.Env, "A=1") {
		t.Errorf("spec root %v process %+v", spec.Root, spec.Process)
	}
	if _, err := os.Stat(filepath.Dir(req.Stdout)); !os.IsNotExist(err) {
		t.Errorf("FIFO directory %s left behind", filepath.Dir(req.Stdout))
	}
	if got := f.callList(); !slices.Equal(got, []string{"Create", "Start ", "Wait "}) {
		t.Errorf("calls %q", got)
	}

	// Shown as stopped with the shim's exit status; logs work offline.
	code, out, _ = e.run("ps", "-a")
	if code != 0 || !strings.Contains(out, "stopped (3)") {
		t.Errorf("ps -a:\n%s", out)
	}
	// rm of a stopped container needs no -f and deletes the task.
	if code, _, stderr := e.run("rm", "app"); code != 0 {
		t.Fatalf("rm: %s", stderr)
	}
	if _, err := e.store().ResolveContainer("app"); err == nil {
		t.Error("container record remains after rm")
	}
}

func TestRunRmAndDetach(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	e.readySandbox(f, "web")
	rootfs := t.TempDir()
	code, out, stderr := e.run("run", "--sandbox", "web", "--rm", "--rootfs", rootfs, "--", "true")
	if code != 0 || out != "hello from the container\n" {
		t.Fatalf("run --rm: %d %q %q", code, out, stderr)
	}
	if ids, _ := e.store().ContainerIDs(""); len(ids) != 0 {
		t.Errorf("--rm left containers %v", ids)
	}

	code, out, stderr = e.run("run", "--sandbox", "web", "--name", "bg", "-d", "--rootfs", rootfs, "--", "sleep", "1000")
	if code != 0 || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("run -d: %d %q %q", code, out, stderr)
	}
	id := strings.TrimSpace(out)
	if req := f.tasks[id]; req.Stdout != "" || req.Stderr != "" {
		t.Errorf("-d passed FIFOs: %+v", req)
	}
	code, out, _ = e.run("ps", "-q")
	if code != 0 || out != id+"\n" {
		t.Errorf("ps -q = %q, want the running container", out)
	}

	// Running: rm refuses without -f and changes nothing.
	before := e.tree()
	code, _, stderr = e.run("rm", "bg")
	assertOneLineError(t, code, stderr, `container "bg"`, "running", "-f")
	e.assertUntouched(before)

	// exec runs in it with the container's process as the base.
	code, out, stderr = e.run("exec", "-e", "X=1", "bg", "--", "cat", "/etc/hosts")
	if code != 0 || out != "hello from the container\n" || stderr != "a warning\n" {
		t.Errorf("exec: %d %q %q", code, out, stderr)
	}
	if len(f.execSpecs) != 1 || !slices.Equal(f.execSpecs[0].Args, []string{"cat", "/etc/hosts"}) || !slices.Contains(f.execSpecs[0].Env, "X=1") {
		t.Errorf("exec specs %+v", f.execSpecs)
	}

	if code, _, stderr := e.run("stop", "--timeout", "1", "bg"); code != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	calls := f.callList()
	if !slices.Contains(calls, "Kill terminated") {
		t.Errorf("stop sent no SIGTERM: %q", calls)
	}
	if code, _, stderr := e.run("rm", "-f", "bg"); code != 0 {
		t.Fatalf("rm -f: %s", stderr)
	}
	if ids, _ := e.store().ContainerIDs(""); len(ids) != 0 {
		t.Errorf("rm -f left containers %v", ids)
	}
}

func TestSandboxStopAndRmWithShim(t *testing.T) {
	e := newTestEnv(t)
	f := newFakeShim(t)
	e.readySandbox(f, "web")
	if code, _, stderr := e.run("sandbox", "stop", "--timeout", "2", "web"); code != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	if code, _, stderr := e.run("sandbox", "rm", "-f", "web"); code != 0 {
		t.Fatalf("rm -f: %s", stderr)
	}
	if got := f.callList(); !slices.Equal(got, []string{"StopSandbox", "PingSandbox", "ShutdownSandbox"}) {
		t.Errorf("calls %q", got)
	}
}
