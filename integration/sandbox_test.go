package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/rootfs"
	"github.com/podbox/podbox/sandbox"
)

// The end-to-end behaviour of a sandbox as a pod: each test below is one of
// the sandbox issue's numbered checks, run through the real CLI, shim, pause
// and runc inside the test's own node namespace, and leak-checked after.

const index = "hello from A\n"

// busybox builds the test's container root filesystem.
func busybox(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.BuildBusybox(dir, index); err != nil {
		t.Fatal(err)
	}
	return dir
}

// retry is a shell loop that runs cmd until it succeeds, for up to 5 s: a
// server started with `run -d` may not listen yet.
func retry(cmd string) string {
	return "for i in $(seq 50); do " + cmd + " && exit 0; sleep 0.1; done; exit 1"
}

func (n *cliNode) sandbox(args ...string) string {
	n.t.Helper()
	id := strings.TrimSpace(n.mustRun(append([]string{"sandbox", "create"}, args...)...))
	n.t.Cleanup(func() { n.run("sandbox", "rm", "-f", id) })
	return id
}

// 1. Two containers in one sandbox share localhost.
func TestTwoContainersShareLocalhost(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "server", "--rootfs", fs, "--", "httpd", "-f", "-p", "80", "-h", "/www")
	out := n.mustRun("run", "--rm", "--sandbox", "pod", "--name", "client", "--rootfs", fs, "--",
		"sh", "-c", retry("wget -q -O - http://localhost:80/"))
	if out != index {
		t.Fatalf("client got %q over localhost, want %q", out, index)
	}
}

// 2. One port space: the second bind of port 80 in the sandbox fails.
func TestSamePortTwiceFails(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "first", "--rootfs", fs, "--", "nc", "-l", "-p", "80")
	// Wait until the first listener is up, then bind again.
	n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", retry("netstat -ltn | grep -q ':80 '"))
	code, _, out := n.run("run", "--rm", "--sandbox", "pod", "--name", "second", "--rootfs", fs, "--", "nc", "-l", "-p", "80")
	if code == 0 || !strings.Contains(strings.ToLower(out), "address already in use") {
		t.Fatalf("second bind of :80: exit %d, output %q; want a failure with 'address already in use'", code, out)
	}
}

// 3. Two sandboxes on the bridge: own addresses, the bridge as gateway, and
// B reaches A's server by A's address.
func TestTwoSandboxesOverTheBridge(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "a")
	n.sandbox("--name", "b")
	a, b := n.inspect("a"), n.inspect("b")
	if a["ip"] == b["ip"] || a["gateway"] != b["gateway"] || a["gateway"] != "10.89.0.1" {
		t.Fatalf("addresses: a %v via %v, b %v via %v", a["ip"], a["gateway"], b["ip"], b["gateway"])
	}
	n.mustRun("run", "-d", "--sandbox", "a", "--name", "server", "--rootfs", fs, "--", "httpd", "-f", "-p", "80", "-h", "/www")
	out := n.mustRun("run", "--rm", "--sandbox", "b", "--rootfs", fs, "--",
		"sh", "-c", retry(fmt.Sprintf("wget -q -O - http://%s:80/", a["ip"])))
	if out != index {
		t.Fatalf("b got %q from a's address, want %q", out, index)
	}
	// And b's default route goes via the bridge.
	route := n.mustRun("run", "--rm", "--sandbox", "b", "--rootfs", fs, "--", "ip", "route")
	if !strings.Contains(route, "default via 10.89.0.1 dev eth0") {
		t.Errorf("route table in b:\n%s", route)
	}
}

// 4. A container sees only lo and eth0, the sandbox's hostname, and IPC
// objects of the other containers.
func TestNamespacesSeenFromContainers(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod", "--hostname", "podhost")
	links := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", "ls /sys/class/net")
	if got := strings.Fields(links); !slices.Equal(got, []string{"eth0", "lo"}) {
		t.Errorf("links seen in a container: %v, want [eth0 lo]", got)
	}
	if h := strings.TrimSpace(n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "hostname")); h != "podhost" {
		t.Errorf("hostname in a container = %q, want podhost", h)
	}
	// A POSIX message queue lives in the IPC namespace: made in A (by
	// creating it in A's mqueue mount), listed in B.
	n.mustRun("run", "--rm", "--sandbox", "pod", "--name", "a", "--rootfs", fs, "--", "touch", "/dev/mqueue/podbox-ipc-test")
	out := n.mustRun("run", "--rm", "--sandbox", "pod", "--name", "b", "--rootfs", fs, "--", "ls", "/dev/mqueue")
	if !strings.Contains(out, "podbox-ipc-test") {
		t.Errorf("queue made in A is not visible in B; B's /dev/mqueue: %q", out)
	}
	// A second sandbox does not see it.
	n.sandbox("--name", "other")
	out = n.mustRun("run", "--rm", "--sandbox", "other", "--rootfs", fs, "--", "ls", "/dev/mqueue")
	if strings.Contains(out, "podbox-ipc-test") {
		t.Errorf("queue of one sandbox is visible in another")
	}
}

// 5. With --share-pid the pause is PID 1 of the containers and reaps orphans.
func TestSharePIDPauseReaps(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod", "--share-pid")
	if c := strings.TrimSpace(n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "cat", "/proc/1/comm")); c != "pause" {
		t.Fatalf("PID 1 seen from a container is %q, want pause", c)
	}
	// The inner shell leaves a sleep behind and exits: the orphan goes to
	// PID 1. Once it exits, it must not stay a zombie.
	// The orphan is looked for until seen (a loaded machine may take
	// longer than any fixed wait to start it), then given time to exit.
	script := `sh -c "sleep 1 &"
for i in $(seq 40); do
  for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = sleep ] && ppid=$(awk '/^PPid/{print $2}' $p/status); done
  [ -n "$ppid" ] && break
  sleep 0.05
done
echo "orphan-ppid $ppid"
sleep 2
echo "zombies $(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)"`
	out := n.mustRun("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", script)
	if !strings.Contains(out, "orphan-ppid 1\n") {
		t.Fatalf("the orphan was not re-parented to the pause:\n%s", out)
	}
	if !strings.Contains(out, "zombies 0\n") {
		t.Fatalf("the orphan stayed a zombie:\n%s", out)
	}
}

// 6. SIGTERM to the pause: it exits 0, the sandbox turns notready, its
// containers stop, and sandbox rm then leaves nothing.
func TestPauseDeathStopsSandbox(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	id := n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "app", "--rootfs", fs, "--", "sleep", "600")
	pause := int(n.inspect("pod")["pausePid"].(float64))
	if err := syscall.Kill(pause, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		sb := n.inspect("pod")
		ps := n.mustRun("ps", "-a", "--sandbox", "pod")
		exit, _ := sb["pauseExit"].(map[string]any)
		if sb["state"] == "notready" && exit != nil && strings.Contains(ps, "stopped") {
			if exit["status"] != 0.0 {
				t.Errorf("pause exit status %v, want 0", exit["status"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after SIGTERM to the pause: state %v, pause exit %v, containers:\n%s", sb["state"], exit, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.mustRun("sandbox", "rm", "pod")
	if _, err := os.Stat(filepath.Join(n.root, "sandboxes", id)); !os.IsNotExist(err) {
		t.Errorf("state directory remains after rm: %v", err)
	}
}

// 7. Exit codes of run and exec reach the caller.
func TestExitCodes(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	if code, _, _ := n.run("run", "--rm", "--sandbox", "pod", "--rootfs", fs, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("podbox run … exit 7: exit code %d", code)
	}
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "app", "--rootfs", fs, "--", "sleep", "600")
	if code, _, _ := n.run("exec", "app", "--", "sh", "-c", "exit 9"); code != 9 {
		t.Errorf("podbox exec … exit 9: exit code %d", code)
	}
	if out := n.mustRun("exec", "app", "--", "echo", "inside"); out != "inside\n" {
		t.Errorf("exec output %q", out)
	}
	// Output and the log: stdout and stderr both kept, apart.
	n.mustRun("run", "--sandbox", "pod", "--name", "talker", "--rootfs", fs, "--", "sh", "-c", "echo to-out; echo to-err >&2")
	code, out, stderr := n.run("logs", "talker")
	if code != 0 || out != "to-out\n" || stderr != "to-err\n" {
		t.Errorf("logs: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	n.mustRun("stop", "app")
	n.mustRun("rm", "app", "talker")
}

// 8. kill -9 of the shim with a running container: listed as notready, and
// sandbox rm -f removes every trace (the leak check verifies).
func TestShimKillWithContainers(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "app", "--rootfs", fs, "--", "sleep", "600")
	shim := int(n.inspect("pod")["shimPid"].(float64))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sandbox.Alive(shim, 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out := n.mustRun("sandbox", "ls"); !regexp.MustCompile(`pod\s+notready`).MatchString(out) {
		t.Errorf("sandbox ls after kill -9 of the shim:\n%s", out)
	}
	n.mustRun("sandbox", "rm", "-f", "pod")
	if out := n.mustRun("ps", "-a", "-q"); out != "" {
		t.Errorf("containers left: %q", out)
	}
}

// 10. Bad input: one line naming the object, a non-zero exit, nothing changed.
func TestBadInputChangesNothing(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	n.mustRun("run", "-d", "--sandbox", "pod", "--name", "app", "--rootfs", fs, "--", "sleep", "600")
	n.sandbox("--name", "halted")
	n.mustRun("sandbox", "stop", "halted")
	before := n.snapshot()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--sandbox", "nosuch", "--rootfs", fs, "--", "true"}, `sandbox "nosuch"`},
		{[]string{"run", "--sandbox", "pod", "--name", "app", "--rootfs", fs, "--", "true"}, `container "app"`},
		{[]string{"run", "--sandbox", "pod", "--name", "../evil", "--rootfs", fs, "--", "true"}, `"../evil"`},
		{[]string{"run", "--sandbox", "pod", "--rootfs", "/nonexistent/rootfs", "--", "true"}, "/nonexistent/rootfs"},
		{[]string{"run", "--sandbox", "halted", "--rootfs", fs, "--", "true"}, `"halted"`},
		{[]string{"sandbox", "rm", "pod"}, `"pod"`},
		{[]string{"sandbox", "create", "--name", "pod"}, `"pod"`},
		{[]string{"sandbox", "create", "--name", "a/b"}, `"a/b"`},
		{[]string{"exec", "nosuch", "--", "true"}, `"nosuch"`},
		{[]string{"rm", "app"}, `"app"`},
	} {
		code, _, stderr := n.run(tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("podbox %s: exit %d, stderr %q; want a non-zero exit and one line naming %s",
				strings.Join(tc.args, " "), code, stderr, tc.want)
		}
		if after := n.snapshot(); after != before {
			t.Errorf("podbox %s changed state:\nbefore:\n%s\nafter:\n%s", strings.Join(tc.args, " "), before, after)
		}
	}
}

// snapshot is what a user sees of the node: sandboxes and containers.
func (n *cliNode) snapshot() string {
	return n.mustRun("sandbox", "ls", "-q") + n.mustRun("ps", "-a", "-q") + strconv.Itoa(len(n.shims()))
}

// shims lists the shim processes serving this node's root.
func (n *cliNode) shims() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "containerd-shim-podbox-v1") && strings.Contains(string(b), n.root) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Stopping a running container, by rm -f or by stop after its grace period,
// leaves stderr empty: no abandoned shim call whose late answer ttrpc's
// client would log ("received message on inactive stream").
func TestStopAndForcedRemoveAreQuiet(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	n.sandbox("--name", "pod")
	for _, args := range [][]string{
		{"rm", "-f", "doomed"},
		// sleep, PID 1 of its container, ignores SIGTERM: stop must
		// wait out the timeout and SIGKILL it.
		{"stop", "--timeout", "1", "stubborn"},
	} {
		name := args[len(args)-1]
		n.mustRun("run", "-d", "--sandbox", "pod", "--name", name, "--rootfs", fs, "--", "sleep", "3600")
		code, out, stderr := n.run(args...)
		if code != 0 || out != "" || stderr != "" {
			t.Errorf("podbox %s: exit %d, stdout %q, stderr %q; want 0 and no output", strings.Join(args, " "), code, out, stderr)
		}
		if ps := n.mustRun("ps", "-q"); ps != "" {
			t.Errorf("after podbox %s, running containers: %q", strings.Join(args, " "), ps)
		}
	}
	n.mustRun("rm", "stubborn")
}
