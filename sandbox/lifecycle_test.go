package sandbox

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

// testNode is a sandbox.Node living in a fresh test node namespace, with its
// own state root and cgroup parent, checked for leaks when the test ends.
func testNode(t *testing.T) Node {
	t.Helper()
	n, _ := testNodeNS(t)
	return n
}

// testNodeNS is testNode that also returns the test node namespace.
func testNodeNS(t *testing.T) (Node, *testnode.Node) {
	t.Helper()
	tn := testnode.New(t)
	root := t.TempDir()
	cg := "podbox-test-" + NewID()[:12]
	t.Cleanup(func() { Cgroup{Path: cg}.Remove() }) // after the leak check: only the empty parent
	leakcheck.Check(t, leakcheck.Options{
		Root: root, Node: tn, AllowLinks: []string{"podbox0"}, CgroupParent: cg,
		AllowFiles: []string{"pause-root/pause", "ipam/*/*"},
	})
	return Node{
		Store:        Store{Root: root},
		PauseBinary:  testnode.Binary(t, "podbox-pause"),
		CgroupParent: cg,
		Network:      netsetup.Network{NodeNetNS: tn.Path, Subnet: netip.MustParsePrefix("10.89.0.0/24")},
	}, tn
}

func TestCreateAndRemove(t *testing.T) {
	n := testNode(t)
	ctx := context.Background()
	sb, err := n.Create(ctx, Options{ID: NewID(), Name: "web", Hostname: "web-host"})
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			n.Remove(ctx, sb, nil)
		}
	})
	if sb.State != StateReady || !Alive(sb.PausePID, sb.PauseStart) {
		t.Fatalf("sandbox after create: state %s, pause %d alive=%v", sb.State, sb.PausePID, Alive(sb.PausePID, sb.PauseStart))
	}
	if sb.IP != "10.89.0.2" || sb.Gateway != "10.89.0.1" || sb.Bridge != "podbox0" || sb.HostVeth != netsetup.HostVethName(sb.ID) {
		t.Fatalf("network of the sandbox: %+v", sb)
	}
	// The pause is in the sandbox's netns, which holds eth0 with the address.
	out, err := exec.Command("nsenter", "--net=/proc/"+itoa(sb.PausePID)+"/ns/net", "ip", "-o", "-4", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.89.0.2/24") {
		t.Fatalf("eth0 in the pause's namespace: %v\n%s", err, out)
	}
	// The pause is in its cgroup in every hierarchy (born there: see
	// forkPause), and the thread that forked it took none of this process
	// along.
	want := "/" + n.CgroupParent + "/" + sb.ID + "/pause"
	cgs, err := os.ReadFile("/proc/" + itoa(sb.PausePID) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(cgs)), "\n") {
		if !strings.HasSuffix(line, ":"+want) {
			t.Errorf("pause cgroup %q, want %s in every hierarchy", line, want)
		}
	}
	if self, _ := os.ReadFile("/proc/self/cgroup"); strings.Contains(string(self), sb.ID) {
		t.Errorf("the creating process joined the sandbox's cgroup:\n%s", self)
	}
	hosts, _ := os.ReadFile(n.EtcFile(sb, "hosts"))
	if !strings.Contains(string(hosts), "10.89.0.2\tweb-host") {
		t.Errorf("hosts file lacks the sandbox's own entry:\n%s", hosts)
	}
	rec, err := n.Store.ResolveSandbox("web")
	if err != nil || rec.PausePID != sb.PausePID || rec.State != StateReady {
		t.Fatalf("stored record: %+v, %v", rec, err)
	}
	// A second sandbox may not take the name, and the refusal leaves nothing.
	if _, err := n.Create(ctx, Options{ID: NewID(), Name: "web"}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second create named web: %v, want ErrNameInUse", err)
	}

	// The pause is our child here; reap it as the shim's reaper would.
	go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
	if err := n.Remove(ctx, sb, nil); err != nil {
		t.Fatal(err)
	}
	removed = true
	if Alive(sb.PausePID, sb.PauseStart) {
		t.Error("pause still alive after Remove")
	}
	if err := n.Remove(ctx, sb, nil); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

// A failure part-way (no pause binary, while the network is being built
// alongside) undoes everything: leakcheck verifies that no veth, pin, lease,
// cgroup or record remains.
func TestCreateFailureLeavesNothing(t *testing.T) {
	n := testNode(t)
	n.PauseBinary = filepath.Join(t.TempDir(), "missing-pause")
	_, err := n.Create(context.Background(), Options{ID: NewID(), Name: "broken"})
	if err == nil {
		t.Fatal("create with a missing pause binary succeeded")
	}
	if _, err := n.Store.ResolveSandbox("broken"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of the failed sandbox: %v", err)
	}
}

func TestJoinSpec(t *testing.T) {
	n := Node{Store: Store{Root: "/run/podbox"}, CgroupParent: "podbox"}
	sb := &Sandbox{ID: "abc", Name: "web", State: StateReady, PausePID: 42, NetNSPath: "/run/podbox/sandboxes/abc/netns", SharePID: true}
	spec := &specs.Spec{
		Hostname: "mine",
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace},
		}},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/etc/hosts", Source: "/elsewhere"},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm"}},
	}
	if err := n.Join(spec, sb, "c1"); err != nil {
		t.Fatal(err)
	}
	want := map[specs.LinuxNamespaceType]string{
		specs.MountNamespace: "", specs.NetworkNamespace: sb.NetNSPath,
		specs.IPCNamespace: "/proc/42/ns/ipc", specs.UTSNamespace: "/proc/42/ns/uts", specs.PIDNamespace: "/proc/42/ns/pid",
	}
	got := map[specs.LinuxNamespaceType]string{}
	for _, ns := range spec.Linux.Namespaces {
		if _, dup := got[ns.Type]; dup {
			t.Fatalf("namespace %s listed twice", ns.Type)
		}
		got[ns.Type] = ns.Path
	}
	if len(got) != len(want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("namespace %s path %q, want %q", k, got[k], v)
		}
	}
	if spec.Hostname != "" || spec.Linux.CgroupsPath != "/podbox/abc/c1" || spec.Annotations[AnnotationSandbox] != "abc" {
		t.Errorf("hostname %q cgroupsPath %q annotations %v", spec.Hostname, spec.Linux.CgroupsPath, spec.Annotations)
	}
	hosts := 0
	for _, m := range spec.Mounts {
		if m.Destination == "/etc/hosts" {
			hosts++
			if m.Source != "/run/podbox/sandboxes/abc/hosts" {
				t.Errorf("/etc/hosts from %s", m.Source)
			}
		}
	}
	if hosts != 1 {
		t.Errorf("%d mounts of /etc/hosts, want 1", hosts)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool {
		return m.Destination == "/dev/shm" && m.Source == "/run/podbox/sandboxes/abc/shm"
	}) {
		t.Errorf("the default /dev/shm is not the sandbox's: %+v", spec.Mounts)
	}
	sb.State = StateNotReady
	if err := n.Join(spec, sb, "c2"); err == nil {
		t.Error("joined a notready sandbox")
	}
}

// A namespace made ahead by PrepareNetNS is the one Create gives the
// sandbox; DiscardNetNS then leaves it to the sandbox, and Remove removes
// it. One prepared for a create that fails is DiscardNetNS's to remove.
func TestCreateAdoptsPreparedNetNS(t *testing.T) {
	n := testNode(t)
	ctx := context.Background()
	nsIno := func(path string) uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	id := NewID()
	if err := n.PrepareNetNS(id); err != nil {
		t.Fatal(err)
	}
	pin := n.NetNSPin(id)
	prepared := nsIno(pin)
	sb, err := n.Create(ctx, Options{ID: id, Name: "prepared"})
	if err != nil {
		n.DiscardNetNS(id)
		t.Fatal(err)
	}
	go func() { p, _ := os.FindProcess(sb.PausePID); p.Wait() }()
	t.Cleanup(func() { n.Remove(ctx, sb, nil) })
	if sb.NetNSPath != pin {
		t.Errorf("sandbox netns %s, want the prepared %s", sb.NetNSPath, pin)
	}
	if got := nsIno("/proc/" + itoa(sb.PausePID) + "/ns/net"); got != prepared {
		t.Errorf("the pause is in namespace %d, not the prepared %d", got, prepared)
	}
	if err := n.DiscardNetNS(id); err != nil || !netsetup.IsNetNSPin(pin) {
		t.Fatalf("DiscardNetNS of a created sandbox: %v, pinned %v; want it left alone", err, netsetup.IsNetNSPin(pin))
	}
	if err := n.Remove(ctx, sb, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin %s after Remove: %v", pin, err)
	}

	// The name is taken: the create fails before it takes the namespace.
	other := NewID()
	if err := n.PrepareNetNS(other); err != nil {
		t.Fatal(err)
	}
	sb2, err := n.Create(ctx, Options{ID: NewID(), Name: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { p, _ := os.FindProcess(sb2.PausePID); p.Wait() }()
	t.Cleanup(func() { n.Remove(ctx, sb2, nil) })
	if _, err := n.Create(ctx, Options{ID: other, Name: "taken"}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("create of a taken name: %v", err)
	}
	if err := n.DiscardNetNS(other); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.NetNSPin(other)); !os.IsNotExist(err) {
		t.Errorf("prepared pin after DiscardNetNS: %v", err)
	}
	if err := n.DiscardNetNS(other); err != nil {
		t.Errorf("second DiscardNetNS: %v", err)
	}
	if err := n.DiscardNetNS("../x"); err == nil {
		t.Error("DiscardNetNS accepted an ID with a slash")
	}
}
