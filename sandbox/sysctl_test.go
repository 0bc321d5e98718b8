package sandbox

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSysctlNamespace(t *testing.T) {
	for _, tc := range []struct {
		key, ns, err string
	}{
		{"net.ipv4.ip_local_port_range", SysctlNet, ""},
		{"net/ipv4/conf/eth0.100/rp_filter", SysctlNet, ""},
		{"kernel.shm_rmid_forced", SysctlIPC, ""},
		{"kernel.shmmax", SysctlIPC, ""},
		{"kernel.msgmnb", SysctlIPC, ""},
		{"kernel.sem", SysctlIPC, ""},
		{"fs.mqueue.msg_max", SysctlIPC, ""},
		{"kernel.domainname", SysctlUTS, ""},
		{"kernel.hostname", "", "set the sandbox's hostname instead"},
		{"vm.swappiness", "", `sysctl "vm.swappiness" is not in a namespace of the sandbox`},
		{"kernel.semaphores", "", "not in a namespace of the sandbox"},
		{"fs.mqueue", "", "not in a namespace of the sandbox"},
		{"net/../kernel/panic", "", "not a sysctl name"},
		{"net..ipv4", "", "not a sysctl name"},
		{"", "", "not a sysctl name"},
		{"net.ipv4.ip forward", "", "not a sysctl name"},
	} {
		ns, err := SysctlNamespace(tc.key)
		if ns != tc.ns || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("SysctlNamespace(%q) = %q, %v; want %q, error containing %q", tc.key, ns, err, tc.ns, tc.err)
		}
	}
}

// A sandbox's sysctls are set in its pause's namespaces before Create
// returns, and only there; one not in its namespaces is refused with
// nothing made, as is a network sysctl of a sandbox on the node's network.
func TestCreateSysctls(t *testing.T) {
	n := testNode(t)
	ctx := context.Background()
	want := map[string]string{
		"kernel.shm_rmid_forced":       "1",
		"fs.mqueue.msg_max":            "100",
		"net.ipv4.ip_local_port_range": "20000\t30000",
		"kernel.domainname":            "pods.example",
	}
	sb, err := n.Create(ctx, Options{ID: NewID(), Name: "tuned", Sysctls: want})
	if err != nil {
		t.Fatal(err)
	}
	go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
	t.Cleanup(func() { n.Remove(ctx, sb, nil) })
	for k, v := range want {
		p, _ := sysctlPath(k)
		ns, _ := SysctlNamespace(k)
		got, err := nsenterCat(sb.PausePID, ns, "/proc/sys/"+p)
		if err != nil || got != v {
			t.Errorf("%s in the pause's %s namespace: %q, %v; want %q", k, ns, got, err, v)
		}
		if host, _ := os.ReadFile("/proc/sys/" + p); strings.TrimSpace(string(host)) == v {
			t.Errorf("%s is %q on the host too", k, v)
		}
	}
	if rec, err := n.Store.LoadSandbox(sb.ID); err != nil || rec.Sysctls["fs.mqueue.msg_max"] != "100" {
		t.Errorf("record's sysctls: %v, %v", rec.Sysctls, err)
	}

	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{ID: NewID(), Name: "node-wide", Sysctls: map[string]string{"vm.swappiness": "1"}}, `sysctl "vm.swappiness" is not in a namespace`},
		{Options{ID: NewID(), Name: "host-net", Network: NetworkExternal, NetNSPath: "/proc/self/ns/net",
			Sysctls: map[string]string{"net.ipv4.ip_local_port_range": "20000 30000"}}, "shares the node's network namespace"},
		{Options{ID: NewID(), Name: "unknown", Sysctls: map[string]string{"net.ipv4.no_such_knob": "1"}}, "no such sysctl"},
	} {
		_, err := n.Create(ctx, tc.o)
		reapExited() // the undone create's pause, as the shim's reaper would
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.o.Name) {
			t.Errorf("create %s: %v; want an error naming it and saying %q", tc.o.Name, err, tc.want)
		}
		if _, err := n.Store.LoadSandbox(tc.o.ID); err == nil {
			t.Errorf("create %s failed but left its record", tc.o.Name)
		}
	}
}

// nsenterCat reads file p from inside the namespace ns of process pid.
func nsenterCat(pid int, ns, p string) (string, error) {
	out, err := exec.Command("nsenter", "--"+ns+"=/proc/"+itoa(pid)+"/ns/"+ns, "cat", p).Output()
	return strings.TrimSpace(string(out)), err
}

// reapExited reaps the test's exited children.
func reapExited() {
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}
