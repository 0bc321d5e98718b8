// Package testnode gives privileged tests a throwaway cluster "node": a
// network namespace created for one test, holding every interface, route and
// process that test makes, so the machine's own network namespace is never
// touched. It also decides what a privileged test does on a machine that
// cannot run it: skip on a developer's machine, fail in CI.
package testnode

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup"
)

// InCI reports whether the tests run under CI (CI=true), where a privileged
// test that cannot run must fail rather than skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Skip skips the test on a developer's machine and fails it in CI, so that CI
// can never pass by skipping.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true and this privileged test cannot run: %s", msg)
	}
	t.Skip(msg)
}

// RequirePrivileged skips (or, in CI, fails) a test unless it runs as root with
// the capabilities namespace and network work needs.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if testing.Short() && !InCI() {
		t.Skip("privileged test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		Skip(t, "needs root (run `sudo make test`)")
	}
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		Skip(t, "capget: %v", err)
	}
	for _, c := range []uint{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN} {
		if data[c/32].Effective&(1<<(c%32)) == 0 {
			Skip(t, "needs capability %d (CAP_SYS_ADMIN and CAP_NET_ADMIN)", c)
		}
	}
}

// RequireBinary skips (or, in CI, fails) a test unless name is on PATH, and
// returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "%s not found on PATH (run `make deps`)", name)
	}
	return p
}

// Node is one test's network namespace, standing in for a cluster node.
type Node struct {
	// Path is the namespace's pin; pass it to nsenter --net= or netsetup.
	Path string
	// Handle is a netlink handle bound to the node namespace.
	Handle *netlink.Handle
}

// New creates a fresh node namespace for t, with lo up, and registers its
// removal at the end of the test. It calls RequirePrivileged first.
func New(t testing.TB) *Node {
	t.Helper()
	RequirePrivileged(t)
	path := filepath.Join(t.TempDir(), "node-netns")
	if err := netsetup.CreateNetNS(path); err != nil {
		t.Fatalf("create test node: %v", err)
	}
	n := &Node{Path: path}
	t.Cleanup(func() {
		if n.Handle != nil {
			n.Handle.Close()
		}
		if err := netsetup.RemoveNetNS(path); err != nil {
			t.Errorf("remove test node: %v", err)
		}
	})
	ns, err := netsetup.OpenNetNS(path)
	if err != nil {
		t.Fatalf("open test node: %v", err)
	}
	defer ns.Close()
	n.Handle, err = netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in test node %q: %v", path, err)
	}
	lo, err := n.Handle.LinkByName("lo")
	if err == nil {
		err = n.Handle.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("test node %q: bring lo up: %v", path, err)
	}
	return n
}

// AddLAN gives the node an address on a stand-in LAN: a veth pair name and
// name+"p", both up, with addr on name; the link a node's IP lives on, for
// tests of node networking. The pair is deleted when the test ends (before
// a leak check registered earlier looks).
func (n *Node) AddLAN(t testing.TB, name string, addr netip.Prefix) netlink.Link {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: name + "p"}
	veth.Name = name
	if err := n.Handle.LinkAdd(veth); err != nil {
		t.Fatalf("test node: add LAN %s: %v", name, err)
	}
	t.Cleanup(func() { n.Handle.LinkDel(veth) })
	l, err := n.Handle.LinkByName(name)
	if err == nil {
		ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
		err = n.Handle.AddrAdd(l, &netlink.Addr{IPNet: ipnet})
	}
	for _, end := range []string{name, name + "p"} {
		if err != nil {
			break
		}
		var e netlink.Link
		if e, err = n.Handle.LinkByName(end); err == nil {
			err = n.Handle.LinkSetUp(e)
		}
	}
	if err != nil {
		t.Fatalf("test node: LAN %s with %s: %v", name, addr, err)
	}
	return l
}

// AddHost makes another host beside the node: a namespace of its own (as
// New makes one) wired to the node by a veth pair, nodeIf in the node with
// nodeAddr, eth0 in the host with hostAddr, both up. It is the client on the
// node's LAN that tests of published ports reach the node from. The pair
// goes when the test ends (before a leak check registered earlier looks).
func (n *Node) AddHost(t testing.TB, nodeIf string, nodeAddr, hostAddr netip.Prefix) *Node {
	t.Helper()
	host := New(t)
	ns, err := netsetup.OpenNetNS(host.Path)
	if err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nodeIf}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	err = n.Handle.LinkAdd(veth)
	ns.Close()
	if err != nil {
		t.Fatalf("test node: wire a host to %s: %v", nodeIf, err)
	}
	t.Cleanup(func() { n.Handle.LinkDel(veth) })
	for _, end := range []struct {
		h    *netlink.Handle
		name string
		addr netip.Prefix
	}{{n.Handle, nodeIf, nodeAddr}, {host.Handle, "eth0", hostAddr}} {
		l, err := end.h.LinkByName(end.name)
		if err == nil {
			err = end.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: end.addr.Addr().AsSlice(), Mask: net.CIDRMask(end.addr.Bits(), 32)}})
		}
		if err == nil {
			err = end.h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("test node: wire a host: %s %s: %v", end.name, end.addr, err)
		}
	}
	return host
}

// Command returns a command that runs inside the node's network namespace
// (and only that: nsenter --net leaves mounts, cgroups and /sys alone, which
// runc and containerd need; `ip netns exec` would remount /sys).
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...)
}

// Run runs name with args and env inside the node's network namespace, with a
// minute to finish, and returns its exit code, stdout and stderr. A command
// that cannot run at all (not one that exits non-zero) fails the test.
func (n *Node) Run(tb testing.TB, env []string, name string, args ...string) (int, string, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := n.Command(ctx, name, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// Do runs fn on an OS thread inside the node namespace.
func (n *Node) Do(fn func() error) error {
	return netsetup.InNetNS(n.Path, fn)
}

// Binary returns the path of podbox binary name (a folder under cmd/): the one
// `make build` put in $PODBOX_BIN_DIR when that is set, or else a fresh build
// into the test's temporary directory, so `go test` works without make.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("PODBOX_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PODBOX_BIN_DIR=%s has no %s (run `make build`): %v", dir, name, err)
		}
		return p
	}
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(mod))) == 0 {
		t.Fatalf("find the podbox module to build %s: %v", name, err)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/"+name)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

// BuildTagged builds the podbox binaries names (folders under cmd/) with the
// build tags tags into a temporary directory of t, whatever PODBOX_BIN_DIR
// says: test-only builds (fault injection) never go into bin/. It returns
// the directory.
func BuildTagged(t testing.TB, tags string, names ...string) string {
	t.Helper()
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(mod))) == 0 {
		t.Fatalf("find the podbox module to build %s: %v", names, err)
	}
	dir := t.TempDir()
	args := []string{"build", "-trimpath", "-tags", tags, "-o", dir + "/"}
	for _, name := range names {
		args = append(args, "./cmd/"+name)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s with tags %s: %v\n%s", names, tags, err, b)
	}
	return dir
}

// Main runs a package's tests (call it from TestMain) and fails the run if
// the machine's own network namespace changed meanwhile: a link added,
// deleted, renamed or brought up or down, an address, a route or an
// nftables chain or its rules changed. It
// is the backstop for the rule that tests touch only namespaces they create
// (a netlink handle used after Close, for one, silently falls back to the
// caller's namespace).
func Main(m *testing.M) {
	// Tests switch namespaces on locked threads that die afterwards; the
	// main thread cannot die, only park in the foreign namespace, where
	// /proc/self (the main thread's view) would then mislead every check.
	// Holding it here keeps every test off it.
	runtime.LockOSThread()
	before, berr := hostNetwork()
	code := m.Run()
	after, aerr := hostNetwork()
	if berr == nil && aerr == nil && before != after {
		fmt.Fprintf(os.Stderr, "FAIL: the machine's own network namespace changed during the tests\n--- before:\n%s--- after:\n%s", before, after)
		code = 1
	}
	os.Exit(code)
}

// hostNetwork describes the links, addresses and routes of the caller's
// network namespace, in a form that differs whenever any of them changed.
func hostNetwork() (string, error) {
	var b strings.Builder
	links, err := netlink.LinkList()
	if err != nil {
		return "", err
	}
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "link %d %s %v\n", a.Index, a.Name, a.Flags)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		fmt.Fprintf(&b, "addr %d %s\n", a.LinkIndex, a.IPNet)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		fmt.Fprintf(&b, "route %s\n", r.String())
	}
	// Packet rules too: a rule meant for a test node that reached the
	// machine's own namespace would change what every program here sees.
	// A kernel without nf_tables reads the same before and after.
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		fmt.Fprintf(&b, "nft: %v\n", err)
		return b.String(), nil
	}
	defer nft.CloseLasting()
	chains, err := nft.ListChains()
	if err != nil {
		fmt.Fprintf(&b, "nft: %v\n", err)
	}
	for _, c := range chains {
		rules, err := nft.GetRules(c.Table, c)
		fmt.Fprintf(&b, "nft chain %d %s %s: %d rules %v\n", c.Table.Family, c.Table.Name, c.Name, len(rules), err)
	}
	return b.String(), nil
}
