package netsetup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/ipam"
)

const testBridge = "pbtest0"

// env is one test's node with a network on it.
type env struct {
	node *testnode.Node
	net  netsetup.Network // resolved
	dir  string           // where sandbox namespaces are pinned
}

// newEnv makes a fresh node and a network on it, and checks at the end of the
// test, with leakcheck and by its own explicit look, that nothing is left but
// the bridge (node-level by design) and the pool's files: no other link in
// the node, no namespace pin, no lease.
func newEnv(t *testing.T, n netsetup.Network) *env {
	t.Helper()
	node := testnode.New(t)
	root := t.TempDir()
	if n.Bridge == "" {
		n.Bridge = testBridge
	}
	n.StateRoot = root
	n.NodeNetNS = node.Path
	n, err := n.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{node: node, net: n, dir: filepath.Join(root, "sandboxes")}
	// Registered first, so it runs last: after the test's own cleanups
	// and after leakcheck has seen whatever was left.
	t.Cleanup(func() { e.checkLeaks(t) })
	leakcheck.Check(t, leakcheck.Options{
		Root:       root,
		Node:       node,
		AllowLinks: []string{n.Bridge},
		AllowFiles: []string{"ipam/*/*"},
	})
	return e
}

// checkLeaks reports whatever the test left, then unpins leftover namespaces
// so that the machine keeps no mounts (the node's removal takes every link).
func (e *env) checkLeaks(t *testing.T) {
	for _, l := range e.nodeLinks(t) {
		if l != "lo" && l != e.net.Bridge {
			t.Errorf("leak: link %q in the node", l)
		}
	}
	if _, err := os.Stat(filepath.Join(e.net.StateRoot, "ipam", e.net.Bridge)); err == nil {
		for owner, ip := range e.leases(t) {
			t.Errorf("leak: lease of %s to %q", ip, owner)
		}
	}
	entries, _ := os.ReadDir(e.dir)
	for _, d := range entries {
		p := filepath.Join(e.dir, d.Name())
		if netsetup.IsNetNSPin(p) {
			t.Errorf("leak: netns pin %s", p)
			netsetup.RemoveNetNS(p)
		} else {
			t.Errorf("leak: file %s", p)
		}
	}
}

func (e *env) pin(id string) string { return filepath.Join(e.dir, id) }

func (e *env) setup(t *testing.T, id string) *netsetup.Attachment {
	t.Helper()
	att, err := e.net.Setup(context.Background(), id, e.pin(id))
	if err != nil {
		t.Fatalf("Setup(%q): %v", id, err)
	}
	return att
}

func (e *env) teardown(t *testing.T, id string) {
	t.Helper()
	if err := e.net.Teardown(context.Background(), id, e.pin(id)); err != nil {
		t.Fatalf("Teardown(%q): %v", id, err)
	}
}

// leases returns the pool's leases by owner.
func (e *env) leases(t *testing.T) map[string]netip.Addr {
	t.Helper()
	pool, err := ipam.Open(filepath.Join(e.net.StateRoot, "ipam", e.net.Bridge), e.net.Subnet, e.net.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := pool.Leases()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]netip.Addr{}
	for _, l := range ls {
		m[l.Owner] = l.IP
	}
	return m
}

// assertGone checks that nothing of sandbox id remains: no host veth, no
// namespace pin (nor its file), no lease.
func (e *env) assertGone(t *testing.T, id string) {
	t.Helper()
	host := netsetup.HostVethName(id)
	// Teardown leaves the veth pair to the kernel, which deletes it with
	// the sandbox's namespace in its cleanup work, normally within
	// milliseconds; 5 s, as the leak checker allows, is ample. A link of
	// that name with another sandbox's alias is a test's staged collision,
	// not a leftover.
	ours := func() netlink.Link {
		l, err := e.node.Handle.LinkByName(host)
		if err == nil && (l.Attrs().Alias == "" || l.Attrs().Alias == "podbox:"+id) {
			return l
		}
		return nil
	}
	for deadline := time.Now().Add(5 * time.Second); ours() != nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if l := ours(); l != nil {
		t.Errorf("sandbox %q: veth %q still in the node (alias %q)", id, host, l.Attrs().Alias)
	}
	if netsetup.IsNetNSPin(e.pin(id)) {
		t.Errorf("sandbox %q: netns %s still pinned", id, e.pin(id))
	}
	if _, err := os.Lstat(e.pin(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox %q: pin file %s remains (%v)", id, e.pin(id), err)
	}
	if ip, ok := e.leases(t)[id]; ok {
		t.Errorf("sandbox %q: still leases %s", id, ip)
	}
}

// nodeLinks lists the names of the node's links.
func (e *env) nodeLinks(t *testing.T) []string {
	t.Helper()
	return linkNames(t, e.node.Handle)
}

func linkNames(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// handleAt is a netlink handle in the namespace pinned at path.
func handleAt(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netsetup.OpenNetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Two sandboxes on one bridge get addresses from the subnet, reach each other
// over TCP and reach the gateway; teardown leaves nothing.
func TestTwoSandboxesTalkOverTheBridge(t *testing.T) {
	busybox := testnode.RequireBinary(t, "busybox")
	e := newEnv(t, netsetup.Network{Subnet: netip.MustParsePrefix("10.89.0.0/24")})
	a := e.setup(t, "sandbox-a")
	b := e.setup(t, "sandbox-b")

	for _, att := range []*netsetup.Attachment{a, b} {
		if !e.net.Subnet.Contains(att.Address.Addr()) || att.Address.Bits() != 24 {
			t.Errorf("sandbox %q: address %s not a host of %s", att.SandboxID, att.Address, e.net.Subnet)
		}
		if att.Address.Addr() == e.net.Gateway || att.Gateway != e.net.Gateway {
			t.Errorf("sandbox %q: address %s gateway %s, bridge holds %s", att.SandboxID, att.Address, att.Gateway, e.net.Gateway)
		}
	}
	if a.Address.Addr() == b.Address.Addr() {
		t.Fatalf("both sandboxes got %s", a.Address)
	}
	if got := e.leases(t); got["sandbox-a"] != a.Address.Addr() || got["sandbox-b"] != b.Address.Addr() {
		t.Errorf("leases %v do not match attachments %s, %s", got, a.Address, b.Address)
	}
	br, err := e.node.Handle.LinkByName(e.net.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := e.node.Handle.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != e.net.GatewayPrefix().String() {
		t.Errorf("bridge addresses = %v (%v), want only %s", addrs, err, e.net.GatewayPrefix())
	}

	// TCP from B to A, both directions of the stream checked.
	var ln net.Listener
	if err := netsetup.InNetNS(a.NetNSPath, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(a.Address.Addr(), 0).String())
		return err
	}); err != nil {
		t.Fatalf("listen in sandbox a: %v", err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			served <- err
			return
		}
		_, err = c.Write(append([]byte("echo:"), buf...))
		served <- err
	}()
	var conn net.Conn
	if err := netsetup.InNetNS(b.NetNSPath, func() (err error) {
		conn, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s from sandbox b: %v", ln.Addr(), err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if got := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != b.Address.Addr() {
		t.Errorf("connection from b has source %s, want %s", got, b.Address.Addr())
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || string(reply) != "echo:hello" {
		t.Fatalf("reply %q (%v), want %q", reply, err, "echo:hello")
	}
	if err := <-served; err != nil {
		t.Fatalf("server in sandbox a: %v", err)
	}

	// ICMP to the gateway (the bridge) and to the other sandbox.
	ctx := context.Background()
	for _, p := range []struct {
		from *netsetup.Attachment
		to   netip.Addr
	}{{a, e.net.Gateway}, {a, b.Address.Addr()}, {b, a.Address.Addr()}} {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+p.from.NetNSPath, busybox, "ping", "-c1", "-W2", p.to.String()).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from %s: %v\n%s", p.to, p.from.SandboxID, err, out)
		}
	}

	e.teardown(t, "sandbox-a")
	e.teardown(t, "sandbox-b")
	e.assertGone(t, "sandbox-a")
	e.assertGone(t, "sandbox-b")
	if got := e.nodeLinks(t); !slices.Equal(got, []string{"lo", e.net.Bridge}) {
		t.Errorf("node links after teardown = %v, want only lo and the bridge", got)
	}
}

// What Setup builds, checked link by link: the sandbox holds exactly lo and
// eth0, up, with the address, MTU and default route; the host end is an up,
// hairpin port of the bridge; the bridge has the pinned MAC and MTU; the
// node forwards.
func TestSetupBuildsTheAttachment(t *testing.T) {
	const mtu = 1400
	e := newEnv(t, netsetup.Network{Subnet: netip.MustParsePrefix("10.89.8.0/22"), MTU: mtu})
	att := e.setup(t, "web")
	defer e.teardown(t, "web")

	want := netsetup.Attachment{
		SandboxID: "web",
		NetNSPath: e.pin("web"),
		Bridge:    e.net.Bridge,
		HostVeth:  netsetup.HostVethName("web"),
		Address:   netip.PrefixFrom(att.Address.Addr(), 22),
		Gateway:   netip.MustParseAddr("10.89.8.1"),
		MAC:       att.MAC,
		// The test's node had no bridge: this Setup made it.
		BridgeCreated: true,
	}
	if *att != want {
		t.Errorf("attachment = %+v, want %+v", *att, want)
	}
	if !netsetup.IsNetNSPin(att.NetNSPath) {
		t.Fatalf("Setup did not pin %s", att.NetNSPath)
	}

	sb := handleAt(t, att.NetNSPath)
	if got := linkNames(t, sb); !slices.Equal(got, []string{"eth0", "lo"}) {
		t.Fatalf("sandbox links = %v, want exactly eth0 and lo", got)
	}
	lo, _ := sb.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("sandbox lo is down")
	}
	eth0, err := sb.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Type() != "veth" || eth0.Attrs().Flags&net.FlagUp == 0 || eth0.Attrs().MTU != mtu {
		t.Errorf("eth0: type %s flags %v mtu %d, want an up veth with mtu %d", eth0.Type(), eth0.Attrs().Flags, eth0.Attrs().MTU, mtu)
	}
	if eth0.Attrs().HardwareAddr.String() != att.MAC {
		t.Errorf("eth0 MAC %s, attachment says %s", eth0.Attrs().HardwareAddr, att.MAC)
	}
	addrs, err := sb.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != att.Address.String() {
		t.Errorf("eth0 addresses = %v (%v), want only %s", addrs, err, att.Address)
	}
	routes, err := sb.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var hasDefault bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(net.IP(att.Gateway.AsSlice())) {
			hasDefault = true
		}
	}
	if !hasDefault {
		t.Errorf("no default route via %s in sandbox; routes: %v", att.Gateway, routes)
	}

	host, err := e.node.Handle.LinkByName(att.HostVeth)
	if err != nil {
		t.Fatalf("host veth: %v", err)
	}
	br, err := e.node.Handle.LinkByName(e.net.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Flags&net.FlagUp == 0 || host.Attrs().MTU != mtu {
		t.Errorf("host veth: master %d flags %v mtu %d, want up on bridge %d with mtu %d",
			host.Attrs().MasterIndex, host.Attrs().Flags, host.Attrs().MTU, br.Attrs().Index, mtu)
	}
	if host.Attrs().Alias != "podbox:web" {
		t.Errorf("host veth alias %q, want %q", host.Attrs().Alias, "podbox:web")
	}
	pi, err := e.node.Handle.LinkGetProtinfo(host)
	if err != nil || !pi.Hairpin {
		t.Errorf("host veth hairpin = %v (%v), want on", pi.Hairpin, err)
	}
	if got, want := br.Attrs().HardwareAddr.String(), "0a:58:0a:59:08:01"; got != want {
		t.Errorf("bridge MAC %s, want the pinned %s", got, want)
	}
	if br.Attrs().MTU != mtu || br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge mtu %d flags %v, want up with mtu %d", br.Attrs().MTU, br.Attrs().Flags, mtu)
	}
	// IPv4 only: no IPv6 address (so no IPv6 multicast flooded to every
	// port of the bridge) on either end of the pair, but the sandbox keeps
	// ::1.
	for _, c := range []struct {
		where string
		h     *netlink.Handle
		link  netlink.Link
	}{{"sandbox eth0", sb, eth0}, {"host veth", e.node.Handle, host}} {
		if v6, err := c.h.AddrList(c.link, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
			t.Errorf("%s IPv6 addresses = %v (%v), want none", c.where, v6, err)
		}
	}
	if v6, err := sb.AddrList(lo, netlink.FAMILY_V6); err != nil || len(v6) != 1 {
		t.Errorf("sandbox lo IPv6 addresses = %v (%v), want ::1", v6, err)
	}
	var forward []byte
	if err := e.node.Do(func() (err error) {
		forward, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}); err != nil || string(bytes.TrimSpace(forward)) != "1" {
		t.Errorf("node ip_forward = %q (%v), want 1", forward, err)
	}
}

// Setup twice returns the same attachment and changes nothing; Teardown twice,
// or of a sandbox never set up, is harmless.
func TestSetupAndTeardownAreIdempotent(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	first := e.setup(t, "again")
	sb := handleAt(t, first.NetNSPath)
	before, err := sb.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	second := e.setup(t, "again")
	if !first.BridgeCreated || second.BridgeCreated {
		t.Errorf("BridgeCreated: first Setup %v, second %v; want true, false", first.BridgeCreated, second.BridgeCreated)
	}
	second.BridgeCreated = first.BridgeCreated
	if *first != *second {
		t.Fatalf("second Setup = %+v, first = %+v", *second, *first)
	}
	if got := linkNames(t, sb); !slices.Equal(got, []string{"eth0", "lo"}) {
		t.Errorf("sandbox links after two Setups = %v", got)
	}
	eth0, _ := sb.LinkByName("eth0")
	if eth0.Attrs().Index != before.Attrs().Index {
		t.Errorf("second Setup recreated eth0 (index %d, was %d): a live sandbox lost its link", eth0.Attrs().Index, before.Attrs().Index)
	}
	if addrs, _ := sb.AddrList(eth0, netlink.FAMILY_V4); len(addrs) != 1 {
		t.Errorf("eth0 addresses after two Setups = %v", addrs)
	}
	if got := e.leases(t); len(got) != 1 || got["again"] != first.Address.Addr() {
		t.Errorf("leases after two Setups = %v", got)
	}

	e.teardown(t, "again")
	e.teardown(t, "again")
	e.assertGone(t, "again")
	e.teardown(t, "never-set-up")
	e.assertGone(t, "never-set-up")

	// And the sandbox can come back.
	e.setup(t, "again")
	e.teardown(t, "again")
	e.assertGone(t, "again")
}

// A Setup that fails part-way leaves nothing of the sandbox: no veth, no pin,
// no lease.
func TestFailedSetupLeavesNothing(t *testing.T) {
	tests := []struct {
		name    string
		subnet  string
		prepare func(t *testing.T, e *env, id string)
		wantErr string
		is      error
	}{{
		name:   "subnet exhausted",
		subnet: "10.89.0.0/30", // .1 is the gateway, .2 the only lease
		prepare: func(t *testing.T, e *env, id string) {
			e.setup(t, "holder")
			t.Cleanup(func() { e.teardown(t, "holder") })
		},
		wantErr: "no free address",
		is:      ipam.ErrExhausted,
	}, {
		name: "bridge name taken by a veth",
		prepare: func(t *testing.T, e *env, id string) {
			addVeth(t, e.node.Handle, e.net.Bridge, "pbtest0-peer")
		},
		wantErr: `bridge "pbtest0": a veth link of that name exists, not a bridge`,
	}, {
		name: "bridge with another address",
		prepare: func(t *testing.T, e *env, id string) {
			addBridge(t, e.node.Handle, e.net.Bridge, "192.168.50.1/24")
		},
		wantErr: `bridge "pbtest0": has address 192.168.50.1/24, want 10.89.0.1/16`,
	}, {
		name: "host veth name taken by another sandbox",
		prepare: func(t *testing.T, e *env, id string) {
			// A hash collision, staged: the name is ours, the alias not.
			addVeth(t, e.node.Handle, netsetup.HostVethName(id), "pbtest-coll")
			l, _ := e.node.Handle.LinkByName(netsetup.HostVethName(id))
			if err := e.node.Handle.LinkSetAlias(l, "podbox:other"); err != nil {
				t.Fatal(err)
			}
		},
		wantErr: `alias "podbox:other", not sandbox "victim"'s`,
	}, {
		name: "context cancelled",
		prepare: func(t *testing.T, e *env, id string) {
		},
		wantErr: "context canceled",
		is:      context.Canceled,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := netsetup.Network{}
			if tt.subnet != "" {
				n.Subnet = netip.MustParsePrefix(tt.subnet)
			}
			e := newEnv(t, n)
			const id = "victim"
			tt.prepare(t, e, id)
			// The bridge may appear: it is node infrastructure, kept.
			withoutBridge := func(names []string) []string {
				return slices.DeleteFunc(names, func(n string) bool { return n == e.net.Bridge })
			}
			before := withoutBridge(e.nodeLinks(t))
			ctx := context.Background()
			if tt.is == context.Canceled {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			att, err := e.net.Setup(ctx, id, e.pin(id))
			if err == nil {
				t.Fatalf("Setup succeeded: %+v", att)
			}
			t.Logf("Setup error: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), `sandbox "victim": `) {
				t.Errorf("Setup error %q, want one starting with the sandbox and containing %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Setup error %v is not %v", err, tt.is)
			}
			e.assertGone(t, id)
			if after := withoutBridge(e.nodeLinks(t)); !slices.Equal(after, before) {
				t.Errorf("node links %v after failed Setup, %v before", after, before)
			}
		})
	}
}

// cancelAfter is a context whose Err turns to Canceled after its first left
// calls, so that a test can stop Setup at each of its checkpoints in turn.
type cancelAfter struct {
	context.Context
	mu   sync.Mutex
	left int
}

func (c *cancelAfter) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return context.Canceled
	}
	c.left--
	return nil
}

// Setup stopped at any checkpoint undoes everything it did by then,
// including, past the veth step, the veth pair.
func TestSetupCancelledAtEachStepLeavesNothing(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	const id = "cancelled"
	stops := 0
	for ; ; stops++ {
		att, err := e.net.Setup(&cancelAfter{Context: context.Background(), left: stops}, id, e.pin(id))
		if err == nil {
			t.Logf("Setup completes after %d checkpoints: %s", stops, att.Address)
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped at checkpoint %d: %v", stops, err)
		}
		e.assertGone(t, id)
		if got := e.nodeLinks(t); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, "pbx") }) {
			t.Fatalf("stopped at checkpoint %d: node links %v", stops, got)
		}
	}
	if stops < 3 {
		t.Errorf("only %d checkpoints; the one after the veth step is gone", stops)
	}

	// A repeated Setup of the attached sandbox that fails must not take
	// down what the first one built: the address stays leased and on eth0.
	first := e.setup(t, id)
	for stop := range stops {
		if _, err := e.net.Setup(&cancelAfter{Context: context.Background(), left: stop}, id, e.pin(id)); !errors.Is(err, context.Canceled) {
			t.Fatalf("repeated Setup stopped at checkpoint %d: %v", stop, err)
		}
		if got := e.leases(t)[id]; got != first.Address.Addr() {
			t.Fatalf("repeated Setup stopped at checkpoint %d: lease %v, want %s kept", stop, got, first.Address.Addr())
		}
		if !netsetup.IsNetNSPin(e.pin(id)) {
			t.Fatalf("repeated Setup stopped at checkpoint %d removed the namespace", stop)
		}
		if got := linkNames(t, handleAt(t, e.pin(id))); !slices.Equal(got, []string{"eth0", "lo"}) {
			t.Fatalf("repeated Setup stopped at checkpoint %d: sandbox links %v", stop, got)
		}
	}
	e.teardown(t, id)
	e.assertGone(t, id)
}

// If the pair cannot join the bridge, the veth step deletes the pair it just
// created (both ends) before failing.
func TestFailedBridgeJoinDeletesThePair(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	const id = "nojoin"
	if err := netsetup.CreateNetNS(e.pin(id)); err != nil {
		t.Fatal(err)
	}
	// lo (index 1) cannot be anyone's master.
	err := e.net.EnsureVethOnBridgeIndex(id, e.pin(id), 1)
	if err == nil || !strings.Contains(err.Error(), `veth "`+netsetup.HostVethName(id)+`": attach to bridge`) {
		t.Fatalf("veth step error = %v, want attach to bridge failure", err)
	}
	if got := linkNames(t, handleAt(t, e.pin(id))); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("sandbox links %v after failed join, want only lo", got)
	}
	if got := e.nodeLinks(t); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("node links %v after failed join, want only lo", got)
	}
	if err := netsetup.RemoveNetNS(e.pin(id)); err != nil {
		t.Fatal(err)
	}
}

// A Setup into an existing namespace that already holds an eth0 fails, and
// leaves the namespace (which it did not create) pinned, with no lease or veth.
func TestFailedSetupKeepsANamespaceItDidNotCreate(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	const id = "preexisting"
	if err := netsetup.CreateNetNS(e.pin(id)); err != nil {
		t.Fatal(err)
	}
	addVeth(t, handleAt(t, e.pin(id)), "eth0", "eth1")
	_, err := e.net.Setup(context.Background(), id, e.pin(id))
	if err == nil || !strings.Contains(err.Error(), `netns "`+e.pin(id)+`": eth0: file exists`) {
		t.Fatalf("Setup error = %v, want eth0 exists", err)
	}
	if !netsetup.IsNetNSPin(e.pin(id)) {
		t.Fatal("Setup removed a namespace it did not create")
	}
	if _, err := e.node.Handle.LinkByName(netsetup.HostVethName(id)); err == nil {
		t.Error("host veth left behind")
	}
	if _, ok := e.leases(t)[id]; ok {
		t.Error("lease left behind")
	}
	e.teardown(t, id)
	e.assertGone(t, id)
}

// Teardown releases the lease from the pool as persisted, even when the
// network's configuration changed since Setup; before any Setup it creates
// no pool at all.
func TestTeardownAfterConfigChange(t *testing.T) {
	e := newEnv(t, netsetup.Network{Subnet: netip.MustParsePrefix("10.89.0.0/24")})
	changed := e.net
	changed.Subnet, changed.Gateway = netip.MustParsePrefix("10.90.0.0/24"), netip.Addr{}
	if err := changed.Teardown(context.Background(), "early", e.pin("early")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.net.StateRoot, "ipam")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Teardown before any Setup made the pool directory (%v)", err)
	}
	e.setup(t, "old-config")
	if err := changed.Teardown(context.Background(), "old-config", e.pin("old-config")); err != nil {
		t.Fatal(err)
	}
	e.assertGone(t, "old-config")
}

// holdNetNS keeps the namespace pinned at pin alive with a second pin
// elsewhere (as a copy of the pin in another mount namespace would), until
// the test ends.
func holdNetNS(t *testing.T, pin string) string {
	t.Helper()
	hold := filepath.Join(t.TempDir(), "hold")
	if err := os.WriteFile(hold, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(pin, hold, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s to %s: %v", pin, hold, err)
	}
	t.Cleanup(func() { unix.Unmount(hold, unix.MNT_DETACH) })
	return hold
}

// Teardown leaves the veth pair to the kernel only when the namespace dies
// with the pin. A namespace that something else still holds keeps living, and
// so would the pair and the address on eth0: Teardown must delete the veth
// itself, before it returns and before the lease is freed. Once with the
// pin, once after a crash that left the pin removed but the rest undone.
func TestTeardownDeletesTheVethOfAHeldNamespace(t *testing.T) {
	for _, crashedAfterUnpin := range []bool{false, true} {
		t.Run(fmt.Sprintf("crashed-after-unpin=%v", crashedAfterUnpin), func(t *testing.T) {
			e := newEnv(t, netsetup.Network{})
			const id = "held"
			att := e.setup(t, id)
			hold := holdNetNS(t, att.NetNSPath)
			if crashedAfterUnpin {
				if err := netsetup.RemoveNetNS(att.NetNSPath); err != nil {
					t.Fatal(err)
				}
			}
			e.teardown(t, id)
			// At once, not eventually: nothing else will ever delete it.
			if _, err := e.node.Handle.LinkByName(att.HostVeth); err == nil {
				t.Errorf("veth %q of a namespace still held survives Teardown", att.HostVeth)
			}
			if got := linkNames(t, handleAt(t, hold)); !slices.Equal(got, []string{"lo"}) {
				t.Errorf("held namespace links after Teardown = %v, want only lo", got)
			}
			e.assertGone(t, id)
		})
	}
}

// Teardown deletes only its own veth: a colliding name with another owner's
// alias stays.
func TestTeardownLeavesAnotherSandboxesVeth(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	name := netsetup.HostVethName("mine")
	addVeth(t, e.node.Handle, name, "pbtest-coll")
	l, _ := e.node.Handle.LinkByName(name)
	if err := e.node.Handle.LinkSetAlias(l, "podbox:theirs"); err != nil {
		t.Fatal(err)
	}
	e.teardown(t, "mine")
	if _, err := e.node.Handle.LinkByName(name); err != nil {
		t.Fatalf("Teardown deleted another sandbox's veth: %v", err)
	}
}

// A sandbox set up again in a new namespace (its old one lost without
// teardown) moves there: the stale pair is replaced, the address kept.
func TestSetupReplacesAStaleVeth(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	const id = "moved"
	old := e.pin("old")
	first, err := e.net.Setup(context.Background(), id, old)
	if err != nil {
		t.Fatal(err)
	}
	second := e.setup(t, id)
	if second.Address != first.Address || second.HostVeth != first.HostVeth {
		t.Errorf("second Setup %+v, first %+v", *second, *first)
	}
	if got := linkNames(t, handleAt(t, old)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("old namespace links %v, want only lo", got)
	}
	if got := linkNames(t, handleAt(t, e.pin(id))); !slices.Equal(got, []string{"eth0", "lo"}) {
		t.Errorf("new namespace links %v, want eth0 and lo", got)
	}
	e.teardown(t, id)
	if err := netsetup.RemoveNetNS(old); err != nil {
		t.Fatal(err)
	}
	e.assertGone(t, id)
}

// Many sandboxes set up at once (as many shims do) all succeed, racing to
// create the bridge, with distinct addresses.
func TestConcurrentSetup(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	const n = 16
	atts := make([]*netsetup.Attachment, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			atts[i], errs[i] = e.net.Setup(context.Background(), id, e.pin(id))
		})
	}
	wg.Wait()
	seen := map[netip.Prefix]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Setup %d: %v", i, err)
		}
		if other, ok := seen[atts[i].Address]; ok {
			t.Errorf("%s and %s both got %s", atts[i].SandboxID, other, atts[i].Address)
		}
		seen[atts[i].Address] = atts[i].SandboxID
	}
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			errs[i] = e.net.Teardown(context.Background(), id, e.pin(id))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Teardown %d: %v", i, err)
		}
		e.assertGone(t, fmt.Sprintf("c%02d", i))
	}
}

func TestEnsureBridge(t *testing.T) {
	ctx := context.Background()
	t.Run("creates and is idempotent, also concurrently", func(t *testing.T) {
		e := newEnv(t, netsetup.Network{Subnet: netip.MustParsePrefix("10.89.4.0/24"), MTU: 9000})
		// Racing creators, released at once, in several rounds: each round
		// starts without the bridge, so some lose the race to create it
		// or to address it.
		for round := range 4 {
			if round > 0 {
				l, err := e.node.Handle.LinkByName(e.net.Bridge)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.node.Handle.LinkDel(l); err != nil {
					t.Fatal(err)
				}
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make([]error, 16)
			for i := range errs {
				wg.Go(func() {
					<-start
					_, errs[i] = e.net.EnsureBridge(ctx)
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		br, err := e.net.EnsureBridge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if br.Name != e.net.Bridge || br.MTU != 9000 || br.Flags&net.FlagUp == 0 {
			t.Errorf("bridge %s mtu %d flags %v", br.Name, br.MTU, br.Flags)
		}
		addrs, _ := e.node.Handle.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.89.4.1/24" {
			t.Errorf("bridge addresses %v, want only 10.89.4.1/24", addrs)
		}
	})
	t.Run("completes a bridge that is down and bare", func(t *testing.T) {
		e := newEnv(t, netsetup.Network{})
		addBridge(t, e.node.Handle, e.net.Bridge, "")
		br, err := e.net.EnsureBridge(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := e.node.Handle.LinkByName(br.Name)
		addrs, _ := e.node.Handle.AddrList(l, netlink.FAMILY_V4)
		if l.Attrs().Flags&net.FlagUp == 0 || len(addrs) != 1 || addrs[0].IPNet.String() != "10.89.0.1/16" {
			t.Errorf("bridge flags %v addresses %v, want up with 10.89.0.1/16", l.Attrs().Flags, addrs)
		}
	})
	t.Run("refuses a link that is not a bridge", func(t *testing.T) {
		e := newEnv(t, netsetup.Network{})
		addVeth(t, e.node.Handle, e.net.Bridge, "pbtest0-peer")
		_, err := e.net.EnsureBridge(ctx)
		if err == nil || err.Error() != `bridge "pbtest0": a veth link of that name exists, not a bridge` {
			t.Fatalf("EnsureBridge error = %v", err)
		}
	})
	t.Run("refuses a bridge with another address", func(t *testing.T) {
		e := newEnv(t, netsetup.Network{})
		addBridge(t, e.node.Handle, e.net.Bridge, "10.89.0.2/16")
		_, err := e.net.EnsureBridge(ctx)
		if err == nil || err.Error() != `bridge "pbtest0": has address 10.89.0.2/16, want 10.89.0.1/16` {
			t.Fatalf("EnsureBridge error = %v", err)
		}
	})
}

func TestSetupLoopbackOnly(t *testing.T) {
	e := newEnv(t, netsetup.Network{})
	pin := e.pin("none")
	for range 2 {
		if err := netsetup.SetupLoopbackOnly(context.Background(), pin); err != nil {
			t.Fatal(err)
		}
	}
	h := handleAt(t, pin)
	if got := linkNames(t, h); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("links = %v, want only lo", got)
	}
	lo, _ := h.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is down")
	}
	if err := netsetup.RemoveNetNS(pin); err != nil {
		t.Fatal(err)
	}
}

// addVeth adds a veth pair, down, to the namespace of h, and deletes it at
// the end of the test (before the leak check).
func addVeth(t *testing.T, h *netlink.Handle, name, peer string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: peer}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	t.Cleanup(func() { h.LinkDel(veth) })
}

// addBridge adds a bridge, down, with address addr unless "".
func addBridge(t *testing.T, h *netlink.Handle, name, addr string) {
	t.Helper()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s: %v", name, err)
	}
	if addr == "" {
		return
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(br, a); err != nil {
		t.Fatalf("bridge %s: add %s: %v", name, addr, err)
	}
}
