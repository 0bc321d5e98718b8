package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

// The pause runs where and as the sandbox design says: in the sandbox's
// netns, in its own IPC/UTS/mount/PID namespaces, as 65535 with no
// capabilities, on a read-only root that holds only itself.
func TestStartPauseConfinement(t *testing.T) {
	testnode.New(t) // privileged check; the pause joins its own sandbox netns
	root := t.TempDir()
	pin := filepath.Join(root, "netns")
	if err := netsetup.CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netsetup.RemoveNetNS(pin) })
	rootDir := filepath.Join(root, "pause-root")
	if err := PrepareRootDir(rootDir, testnode.Binary(t, "podbox-pause")); err != nil {
		t.Fatal(err)
	}

	pid, err := StartPause(PauseSpec{RootDir: rootDir, NetNSPath: pin, Hostname: "podhost", CgroupFD: -1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			p.Kill()
			p.Wait()
		}
	})
	proc := "/proc/" + itoa(p.Pid)

	if got, want := ino(t, proc+"/ns/net"), ino(t, pin); got != want {
		t.Errorf("pause netns inode %d, want the sandbox's %d", got, want)
	}
	for _, ns := range []string{"ipc", "uts", "mnt", "pid"} {
		if ino(t, proc+"/ns/"+ns) == ino(t, "/proc/self/ns/"+ns) {
			t.Errorf("pause shares the shim's %s namespace", ns)
		}
	}
	status := readFile(t, proc+"/status")
	for _, want := range []string{
		"Uid:\t65535\t65535\t65535\t65535", "Gid:\t65535\t65535\t65535\t65535",
		"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "NSpid:\t" + itoa(p.Pid) + "\t1",
	} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("pause status lacks %q:\n%s", want, status)
		}
	}
	mounts := strings.Split(strings.TrimSpace(readFile(t, proc+"/mountinfo")), "\n")
	if len(mounts) != 1 || strings.Fields(mounts[0])[4] != "/" || !strings.HasPrefix(strings.Fields(mounts[0])[5], "ro,") {
		t.Errorf("pause should see exactly one read-only mount at /; mountinfo:\n%s", strings.Join(mounts, "\n"))
	}
	entries, err := os.ReadDir(proc + "/root")
	if err != nil || len(entries) != 1 || entries[0].Name() != "pause" {
		t.Errorf("pause root holds %v (err %v), want only pause", entries, err)
	}
	out, err := exec.Command("nsenter", "--uts="+proc+"/ns/uts", "hostname").Output()
	if err != nil || strings.TrimSpace(string(out)) != "podhost" {
		t.Errorf("hostname in the pause's UTS namespace = %q (%v), want podhost", out, err)
	}
	if st, err := ProcessStart(p.Pid); err != nil || !Alive(p.Pid, st) {
		t.Errorf("Alive(%d, %d) = false, %v", p.Pid, st, err)
	}

	if err := SignalPause(p.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan *os.ProcessState, 1)
	go func() { st, _ := p.Wait(); done <- st }()
	select {
	case st := <-done:
		exited = true
		if st == nil || st.ExitCode() != 0 {
			t.Fatalf("pause after SIGTERM: %v, want exit 0", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pause did not exit within 10s of SIGTERM")
	}
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func itoa(i int) string { return strconv.Itoa(i) }

// A stop right after start must not be lost: SIGTERM sent to a PID-namespace
// init before it handles the signal is discarded by the kernel (or, a moment
// later, makes the Go runtime exit 2). SignalPause waits for the handler.
func TestSignalPauseRightAfterStart(t *testing.T) {
	testnode.New(t)
	root := t.TempDir()
	pin := filepath.Join(root, "netns")
	if err := netsetup.CreateNetNS(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netsetup.RemoveNetNS(pin) })
	rootDir := filepath.Join(root, "pause-root")
	if err := PrepareRootDir(rootDir, testnode.Binary(t, "podbox-pause")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		pid, err := StartPause(PauseSpec{RootDir: rootDir, NetNSPath: pin, Hostname: "early", CgroupFD: -1})
		if err != nil {
			t.Fatal(err)
		}
		p, err := os.FindProcess(pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := SignalPause(p.Pid, syscall.SIGTERM); err != nil {
			p.Kill()
			p.Wait()
			t.Fatal(err)
		}
		done := make(chan *os.ProcessState, 1)
		go func() { st, _ := p.Wait(); done <- st }()
		select {
		case st := <-done:
			if st == nil || st.ExitCode() != 0 {
				t.Fatalf("run %d: pause after an immediate SIGTERM: %v, want exit 0", i, st)
			}
		case <-time.After(5 * time.Second):
			p.Kill()
			<-done
			t.Fatalf("run %d: pause ignored a SIGTERM sent right after start", i)
		}
	}
}

// SignalPause does not wait for a pause that has already exited (a zombie
// not reaped yet) to start listening.
func TestSignalPauseToAnExitedPause(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	// Not reaped: wait for the zombie.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readFile(t, "/proc/"+itoa(cmd.Process.Pid)+"/status"), "\nState:\tZ") {
		if time.Now().After(deadline) {
			t.Fatal("child did not become a zombie")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	SignalPause(cmd.Process.Pid, syscall.SIGTERM)
	if d := time.Since(start); d > time.Second {
		t.Errorf("SignalPause waited %v for an exited process", d)
	}
}

// A sandbox with host namespaces keeps its pause in the node's IPC, UTS and
// PID namespaces (what CRI asks for a pod with hostIPC, hostPID, or on the
// node's network), with the node's hostname; without, the pause has its own.
func TestCreateHostNamespaces(t *testing.T) {
	n := testNode(t)
	ctx := context.Background()
	nodeHost, _ := os.Hostname()
	for _, host := range []HostNamespaces{{}, {IPC: true, UTS: true, PID: true}} {
		sb, err := n.Create(ctx, Options{ID: NewID(), Name: "hostns", Host: host})
		if err != nil {
			t.Fatal(err)
		}
		go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
		for ns, shared := range map[string]bool{"ipc": host.IPC, "uts": host.UTS, "pid": host.PID} {
			mine, _ := os.Readlink("/proc/self/ns/" + ns)
			pause, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", sb.PausePID, ns))
			if err != nil || (pause == mine) != shared {
				t.Errorf("host namespaces %+v: the pause's %s namespace is %s, the node's %s (%v)", host, ns, pause, mine, err)
			}
		}
		if wantNode := host.UTS; (sb.Hostname == nodeHost) != wantNode {
			t.Errorf("host namespaces %+v: hostname %q, the node's %q", host, sb.Hostname, nodeHost)
		}
		if err := n.Remove(ctx, sb, nil); err != nil {
			t.Fatal(err)
		}
	}
}
