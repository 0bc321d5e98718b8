package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/sandbox"
)

func TestMain(m *testing.M) { testnode.Main(m) }

// cliNode is one test's node: its network namespace, state root, cgroup
// parent and binaries, with the podbox CLI run inside the namespace.
type cliNode struct {
	t      testing.TB
	node   *testnode.Node
	root   string
	cgroup string // the cgroup parent of the node's sandboxes
	podbox string
	env    []string
	// leaks is what the leak check watches, for checks mid-test
	// (leakcheck.Take).
	leaks leakcheck.Options
}

func newCLINode(t testing.TB) *cliNode {
	t.Helper()
	return newCLINodeAt(t, t.TempDir())
}

// newCLINodeAt is newCLINode with the state root root.
func newCLINodeAt(t testing.TB, root string) *cliNode {
	t.Helper()
	return newCLINodeWith(t, root)
}

// newCLINodeWith is newCLINodeAt where the node may keep the links
// bridges (besides podbox0) after the test, as it keeps podbox0: node
// infrastructure that a CNI network makes.
func newCLINodeWith(t testing.TB, root string, bridges ...string) *cliNode {
	t.Helper()
	node := testnode.New(t)
	podbox := testnode.Binary(t, "podbox")
	shim := testnode.Binary(t, "containerd-shim-podbox-v1")
	pause := os.Getenv("PODBOX_PAUSE")
	if pause == "" {
		pause = testnode.Binary(t, "podbox-pause")
	}
	cg := "podbox-clitest-" + sandbox.NewID()[:12]
	t.Cleanup(func() { sandbox.Cgroup{Path: cg}.Remove() }) // after the leak check: only the empty parent
	leaks := leakcheck.Options{
		Root: root, Node: node, AllowLinks: append([]string{"podbox0"}, bridges...), CgroupParent: cg,
		// The image store's index and locks outlive its images, as the
		// IPAM pools outlive their leases.
		AllowFiles: []string{"pause-root/pause", "ipam/*/*", "images/images.json", "images/*.lock", "ports.lock"},
	}
	leakcheck.Check(t, leaks)
	return &cliNode{t: t, node: node, root: root, cgroup: cg, podbox: podbox, leaks: leaks, env: append(os.Environ(),
		"PODBOX_ROOT="+root, "PODBOX_SHIM="+shim, "PODBOX_PAUSE="+pause, "PODBOX_CGROUP_PARENT="+cg,
		"PODBOX_IMAGE_BIN="+testnode.Binary(t, "podbox-image"), "PODBOX_CNI_BIN="+testnode.Binary(t, "podbox-cni"))}
}

// run runs podbox args inside the node and returns its exit code and output.
func (n *cliNode) run(args ...string) (int, string, string) {
	n.t.Helper()
	return n.node.Run(n.t, n.env, n.podbox, args...)
}

func (n *cliNode) mustRun(args ...string) string {
	n.t.Helper()
	code, out, stderr := n.run(args...)
	if code != 0 {
		n.t.Fatalf("podbox %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return out
}

func (n *cliNode) inspect(ref string) map[string]any {
	n.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(n.mustRun("sandbox", "inspect", ref)), &m); err != nil {
		n.t.Fatal(err)
	}
	return m
}

func TestCLISandboxLifecycle(t *testing.T) {
	n := newCLINode(t)
	id := strings.TrimSpace(n.mustRun("sandbox", "create", "--name", "web", "--label", "app=shop"))
	if len(id) != 64 {
		t.Fatalf("create printed %q, want an ID", id)
	}
	t.Cleanup(func() { n.run("sandbox", "rm", "-f", id) })

	sb := n.inspect("web")
	if sb["state"] != "ready" || sb["ip"] == "" || sb["id"] != id {
		t.Fatalf("inspect: %v", sb)
	}
	pause := int(sb["pausePid"].(float64))
	// The pause holds the sandbox's network namespace: eth0 has its address.
	out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pause)+"/ns/net", "ip", "-o", "-4", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), sb["ip"].(string)+"/") {
		t.Errorf("eth0 of the sandbox: %v %s", err, out)
	}
	if out := n.mustRun("sandbox", "ls", "-q"); out != id+"\n" {
		t.Errorf("ls -q = %q", out)
	}

	// Bad input changes nothing and starts no shim.
	code, _, stderr := n.run("sandbox", "create", "--name", "web")
	if code == 0 || !strings.Contains(stderr, `sandbox "web"`) || !strings.Contains(stderr, "already used") {
		t.Errorf("duplicate name: %d %q", code, stderr)
	}
	code, _, stderr = n.run("sandbox", "rm", "web")
	if code == 0 || !strings.Contains(stderr, "-f") {
		t.Errorf("rm of a ready sandbox without -f: %d %q", code, stderr)
	}
	if out := n.mustRun("sandbox", "ls", "-q"); out != id+"\n" {
		t.Errorf("after bad input ls -q = %q", out)
	}

	n.mustRun("sandbox", "stop", "--timeout", "2", "web")
	if st := n.inspect(id[:8])["state"]; st != "stopped" {
		t.Errorf("state after stop = %v", st)
	}
	n.mustRun("sandbox", "rm", "web")
	if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("after rm ls -q = %q", out)
	}
}

// A shim killed with SIGKILL leaves a sandbox that podbox still lists (as
// notready) and removes completely without it.
func TestCLISandboxAfterShimKill(t *testing.T) {
	n := newCLINode(t)
	id := strings.TrimSpace(n.mustRun("sandbox", "create", "--name", "doomed", "--network", "none"))
	t.Cleanup(func() { n.run("sandbox", "rm", "-f", id) })
	shim := int(n.inspect(id)["shimPid"].(float64))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sandbox.Alive(shim, 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := n.inspect("doomed")["state"]; st != "notready" {
		t.Errorf("state after kill -9 of the shim = %v, want notready", st)
	}
	n.mustRun("sandbox", "rm", "doomed")
	if out := n.mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("after rm ls -q = %q", out)
	}
	if _, err := os.Stat(filepath.Join(n.root, "sandboxes", id)); !os.IsNotExist(err) {
		t.Errorf("state directory remains: %v", err)
	}
}
