package shim_test

import (
	"context"
	"errors"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/runtime/taskapi"
	"github.com/podbox/podbox/sandbox"
)

func TestMain(m *testing.M) { testnode.Main(m) }

type env struct {
	node *testnode.Node
	opts shimclient.Options
}

// newEnv makes a test node, a state root and cgroup parent for it, and the
// options to start shims in them; leaks are checked when the test ends.
func newEnv(t *testing.T) env {
	t.Helper()
	node := testnode.New(t)
	root := t.TempDir()
	cg := "podbox-test-" + sandbox.NewID()[:12]
	t.Cleanup(func() { sandbox.Cgroup{Path: cg}.Remove() })
	leakcheck.Check(t, leakcheck.Options{
		Root: root, Node: node, CgroupParent: cg, AllowLinks: []string{"podbox0"},
		AllowFiles: []string{"pause-root/pause", "ipam/*/*"},
	})
	return env{node: node, opts: shimclient.Options{
		Binary: testnode.Binary(t, "containerd-shim-podbox-v1"), Root: root,
		CgroupParent: cg, Pause: testnode.Binary(t, "podbox-pause"),
	}}
}

// start runs `shim start` inside the test node, so the serving shim and all
// it creates live there.
func (e env) start(t *testing.T, id string) *shimclient.Client {
	t.Helper()
	o := e.opts
	o.ID = id
	var addr string
	err := e.node.Do(func() (err error) {
		addr, err = shimclient.Start(context.Background(), o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := shimclient.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that failed half-way still removes what it made, so that
		// one failure does not show up as leaks in the next test.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Sandbox.ShutdownSandbox(ctx, &sbapi.ShutdownSandboxRequest{})
		c.Close()
	})
	return c
}

func TestSandboxLifecycleThroughShim(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := sandbox.NewID()
	c := e.start(t, id)

	_, err := c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id,
		Annotations: map[string]string{"io.podbox.name": "web", "io.podbox.hostname": "webhost", "io.podbox.label.tier": "front"}})
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.Sandbox.StartSandbox(ctx, &sbapi.StartSandboxRequest{SandboxId: id})
	if err != nil || start.Pid == 0 {
		t.Fatalf("StartSandbox: %v, %v", start, err)
	}
	st, err := c.Sandbox.SandboxStatus(ctx, &sbapi.SandboxStatusRequest{SandboxId: id})
	if err != nil || st.State != "SANDBOX_READY" || st.Info["state"] != "ready" || st.Info["ip"] != "10.89.0.2" || st.Info["name"] != "web" {
		t.Fatalf("SandboxStatus: %v, %v", st, err)
	}
	// The pause really holds the sandbox's network: eth0 with the address.
	out, err := exec.Command("nsenter", "--net=/proc/"+itoa(start.Pid)+"/ns/net", "ip", "-o", "-4", "addr").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "eth0") || !strings.Contains(string(out), "10.89.0.2/16") {
		t.Fatalf("addresses in the pause's namespace: %v\n%s", err, out)
	}
	// No container, no OOM watcher: the shim's only epoll instance is the
	// Go runtime's poller.
	rec, err := sandbox.Store{Root: e.opts.Root}.LoadSandbox(id)
	if err != nil {
		t.Fatal(err)
	}
	if n := epollFDs(t, rec.ShimPID); n != 1 {
		t.Errorf("shim %d holds %d epoll instances without a container, want 1 (an OOM watcher was set up)", rec.ShimPID, n)
	}
	// Metrics of the whole sandbox: at least the pause is counted.
	mr, err := c.Sandbox.SandboxMetrics(ctx, &sbapi.SandboxMetricsRequest{SandboxId: id})
	if err != nil {
		t.Fatalf("SandboxMetrics: %v", err)
	}
	m, err := typeurl.UnmarshalAny(mr.Metrics.Data)
	if err != nil {
		t.Fatalf("decode sandbox metrics: %v", err)
	}
	switch m := m.(type) {
	case *v1stats.Metrics:
		if m.GetPids().GetCurrent() < 1 || m.GetMemory().GetUsage().GetUsage() == 0 {
			t.Errorf("sandbox metrics count no process or memory: %v", m)
		}
	case *v2stats.Metrics:
		if m.GetPids().GetCurrent() < 1 {
			t.Errorf("sandbox metrics count no process: %v", m)
		}
	default:
		t.Errorf("sandbox metrics of type %T", m)
	}

	// A second sandbox cannot be created in the same shim.
	if _, err := c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: sandbox.NewID()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second CreateSandbox in one shim: %v", err)
	}

	// SIGTERM to the pause: it exits 0, and the sandbox becomes notready.
	// Through SignalPause, which waits until the pause listens for it: a
	// SIGTERM before its handler is in kills it with status 2 instead.
	if err := sandbox.SignalPause(int(start.Pid), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := c.Sandbox.WaitSandbox(wctx, &sbapi.WaitSandboxRequest{SandboxId: id})
	if err != nil || w.ExitStatus != 0 {
		t.Fatalf("WaitSandbox after SIGTERM to the pause: %v, %v", w, err)
	}
	st, err = c.Sandbox.SandboxStatus(ctx, &sbapi.SandboxStatusRequest{SandboxId: id})
	if err != nil || st.State != "SANDBOX_NOTREADY" || st.Info["state"] != "notready" {
		t.Fatalf("state after the pause died: %v, %v", st, err)
	}

	// Shutdown removes everything (the leak check verifies) and ends the shim.
	shutdown(t, c, id)
	waitShimGone(t, c)
}

// shutdown asks the shim to remove its sandbox and exit. A shim that exits
// right after answering may close the connection before the answer arrives,
// as containerd's shims do; containerd treats that as success too.
func shutdown(t *testing.T, c *shimclient.Client, id string) {
	t.Helper()
	_, err := c.Sandbox.ShutdownSandbox(context.Background(), &sbapi.ShutdownSandboxRequest{SandboxId: id})
	if err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		t.Fatal(err)
	}
}

// A refused create (name taken) leaves the first sandbox alone and the
// refused shim can be shut down, leaving nothing.
func TestCreateSandboxNameInUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b := sandbox.NewID(), sandbox.NewID()
	ca, cb := e.start(t, a), e.start(t, b)
	ann := map[string]string{"io.podbox.name": "same"}
	if _, err := ca.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: a, Annotations: ann}); err != nil {
		t.Fatal(err)
	}
	_, err := cb.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: b, Annotations: ann})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second sandbox named same: %v, want AlreadyExists", err)
	}
	shutdown(t, cb, "")
	if _, err := ca.Sandbox.SandboxStatus(ctx, &sbapi.SandboxStatusRequest{SandboxId: a}); err != nil {
		t.Fatalf("first sandbox after the refused one: %v", err)
	}
	shutdown(t, ca, a)
	waitShimGone(t, ca)
	waitShimGone(t, cb)
}

// waitShimGone waits until the shim stops answering.
func waitShimGone(t *testing.T, c *shimclient.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := c.Sandbox.PingSandbox(ctx, &sbapi.PingRequest{})
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.NotFound {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("shim still answers after shutdown")
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// epollFDs counts the epoll instances process pid holds.
func epollFDs(t *testing.T, pid int) int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && l == "anon_inode:[eventpoll]" {
			n++
		}
	}
	return n
}

// The Go runtime settings a serving shim gets from `start` are its own: runc
// runs with the environment the shim's caller gave (with GOMAXPROCS=1 runc
// is slower).
func TestRuncGetsTheCallersEnvironment(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "runc-env")
	fake := filepath.Join(dir, "fake-runc")
	script := "#!/bin/sh\nenv > " + envFile + "\necho '{\"level\":\"error\",\"msg\":\"fake runc\"}' >&3\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.opts.Runtime = fake
	id := sandbox.NewID()
	c := e.start(t, id)
	if _, err := c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id,
		Annotations: map[string]string{"io.podbox.name": "env", "io.podbox.network": "none"}}); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	spec := `{"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"}, "root": {"path": "` + dir + `"}, "linux": {}}`
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: "ctr-" + id[:12], Bundle: bundle})
	if err == nil || !strings.Contains(err.Error(), "fake runc") {
		t.Fatalf("Create with the fake runc: %v", err)
	}
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("the fake runc did not run: %v", err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "GOMAXPROCS", "GODEBUG", shimclient.EnvServingSet:
			if mine, ok := os.LookupEnv(k); !ok || mine != v {
				t.Errorf("runc's environment has %s, which the shim's caller (this test, %q set=%v) did not give", line, mine, ok)
			}
		}
	}
}

// A shim whose only client goes before asking for anything (a CLI killed
// between starting the shim and CreateSandbox) exits, and removes the
// network namespace the CLI pinned for the sandbox; the leak check sees no
// process, pin or socket left. One that serves a sandbox stays.
func TestAbandonedShimExits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	node := sandbox.Node{Store: sandbox.Store{Root: e.opts.Root}}

	id := e.prepare(t, node)
	c := e.start(t, id) // connected, nothing asked
	c.Close()
	e.waitShimGone(t, node, id)

	// A client that goes after the sandbox is built leaves it served.
	id2 := sandbox.NewID()
	c2 := e.start(t, id2)
	if _, err := c2.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id2,
		Annotations: map[string]string{"io.podbox.name": "kept", "io.podbox.network": "none"}}); err != nil {
		t.Fatal(err)
	}
	addr := shimclient.SocketAddress(e.opts.Root, shimclient.Namespace, id2)
	c2.Close()
	time.Sleep(300 * time.Millisecond)
	c3, err := shimclient.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("the shim of a built sandbox went with its client: %v", err)
	}
	shutdown(t, c3, id2)
	c3.Close()
}

// A shim nobody ever connects to (its starter died between starting it and
// connecting) exits once the connect grace is over, and removes the
// network namespace the CLI pinned for the sandbox.
func TestUnconnectedShimExits(t *testing.T) {
	e := newEnv(t)
	t.Setenv("PODBOX_SHIM_CONNECT_GRACE", "200ms")
	node := sandbox.Node{Store: sandbox.Store{Root: e.opts.Root}}
	id := e.prepare(t, node)
	o := e.opts
	o.ID = id
	if err := e.node.Do(func() error { _, err := shimclient.Start(context.Background(), o); return err }); err != nil {
		t.Fatal(err)
	}
	e.waitShimGone(t, node, id)
}

// prepare pins a new sandbox's network namespace as the CLI does before it
// starts the shim, and returns the sandbox's ID.
func (e env) prepare(t *testing.T, node sandbox.Node) string {
	t.Helper()
	id := sandbox.NewID()
	if err := node.PrepareNetNS(id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.DiscardNetNS(id) })
	return id
}

// waitShimGone waits for the shim of sandbox id, which serves nothing, to
// remove the namespace pin prepared for it and its socket on the way out.
func (e env) waitShimGone(t *testing.T, node sandbox.Node, id string) {
	t.Helper()
	path, err := shimclient.SocketPath(shimclient.SocketAddress(e.opts.Root, shimclient.Namespace, id))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for netsetup.IsNetNSPin(node.NetNSPin(id)) {
		if time.Now().After(deadline) {
			t.Fatal("the shim that serves nothing left its prepared namespace pinned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the shim that serves nothing still has its socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// containerd reads a shim's log from a FIFO in the bundle and stops when the
// group's first task is deleted; the shim serves on and logs into the broken
// pipe. That must cost the log line, not the shim: through os.Stderr the os
// package would kill it with SIGPIPE.
func TestShimOutlivesItsLogReader(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	fifo := filepath.Join(e.opts.Root, "log") // the shim's working directory
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(fifo) })
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := sandbox.NewID()
	c := e.start(t, id)
	// The socket takes connections before the shim runs; its first answer
	// means it has the FIFO open.
	if _, err := c.Sandbox.Platform(ctx, &sbapi.PlatformRequest{SandboxId: id}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// CreateSandbox logs "sandbox created" into the broken pipe.
	if _, err := c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id,
		Annotations: map[string]string{"io.podbox.name": "nolog", "io.podbox.network": "none"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sandbox.PingSandbox(ctx, &sbapi.PingRequest{SandboxId: id}); err != nil {
		t.Fatalf("the shim died logging into a FIFO nobody reads: %v", err)
	}
	shutdown(t, c, id)
}
