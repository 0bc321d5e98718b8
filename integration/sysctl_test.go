package integration

import (
	"os"
	"strings"
	"testing"
)

// sandbox create --sysctl sets each sysctl in the sandbox's namespaces
// before any container joins: containers of the sandbox read the values,
// the node keeps its own, inspect shows them; one outside the sandbox's
// namespaces is refused, naming it, with nothing made.
func TestSandboxSysctls(t *testing.T) {
	n := newCLINode(t)
	fs := busybox(t)
	want := map[string]string{
		"kernel.shm_rmid_forced":       "1",            // IPC
		"fs.mqueue.msg_max":            "100",          // IPC
		"net.ipv4.ip_local_port_range": "20000 30000",  // network
		"kernel.domainname":            "pods.example", // UTS
	}
	args := []string{"--name", "tuned"}
	var cat []string
	for k, v := range want {
		args = append(args, "--sysctl", k+"="+v)
		cat = append(cat, "/proc/sys/"+strings.ReplaceAll(k, ".", "/"))
	}
	n.sandbox(args...)
	out := n.mustRun(append([]string{"run", "--rm", "--sandbox", "tuned", "--rootfs", fs, "--", "cat"}, cat...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(cat) {
		t.Fatalf("cat %v in the sandbox: %q", cat, out)
	}
	for i, p := range cat {
		k := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[k] {
			t.Errorf("%s in the sandbox's container: %q, want %q", k, got, want[k])
		}
		if host, _ := os.ReadFile(p); strings.Join(strings.Fields(string(host)), " ") == want[k] {
			t.Errorf("%s is %q on the host too", k, want[k])
		}
	}
	if got, _ := n.inspect("tuned")["sysctls"].(map[string]any); len(got) != len(want) || got["fs.mqueue.msg_max"] != "100" {
		t.Errorf("inspect's sysctls: %v", got)
	}
	// A sandbox without --sysctl keeps the defaults.
	n.sandbox("--name", "plain")
	if out := strings.TrimSpace(n.mustRun("run", "--rm", "--sandbox", "plain", "--rootfs", fs, "--", "cat", "/proc/sys/fs/mqueue/msg_max")); out != "10" {
		t.Errorf("fs.mqueue.msg_max in a sandbox without sysctls: %q, want the default 10", out)
	}

	code, stdout, stderr := n.run("sandbox", "create", "--name", "nodewide", "--sysctl", "vm.swappiness=10")
	if code == 0 || stdout != "" || !strings.Contains(stderr, `sandbox "nodewide"`) || !strings.Contains(stderr, `"vm.swappiness=10"`) {
		t.Errorf("create with --sysctl vm.swappiness=10: exit %d, %q, %q; want refused, naming both", code, stdout, stderr)
	}
	// A sysctl the kernel does not have fails in the shim, which removes
	// what it made.
	code, _, stderr = n.run("sandbox", "create", "--name", "unknown", "--sysctl", "net.ipv4.no_such_knob=1")
	if code == 0 || !strings.Contains(stderr, "net.ipv4.no_such_knob") || !strings.Contains(stderr, "no such sysctl") {
		t.Errorf("create with an unknown sysctl: exit %d, %q", code, stderr)
	}
	if out := n.mustRun("sandbox", "ls", "-q"); strings.Count(out, "\n") != 2 {
		t.Errorf("sandboxes after the refused creates:\n%s", out)
	}
}
