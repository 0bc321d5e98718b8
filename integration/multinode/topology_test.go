package multinode

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
)

// The seed's LAN: one bridge in the router namespace holding the gateway,
// and one veth per node.
var (
	lanPrefix = netip.MustParsePrefix("10.100.0.0/24")
	gatewayIP = netip.MustParseAddr("10.100.0.1")
)

const lanBridge = "lan0"

// topology is the seed's network: a router namespace and the nodes on its LAN.
type topology struct {
	router *testnode.Node
	nodes  []*lanNode
}

// lanNode is one node namespace on the LAN: eth0 holds ip, the default route
// goes to the gateway.
type lanNode struct {
	*testnode.Node
	name string
	ip   netip.Addr
}

// newTopology builds the router and n nodes (10.100.0.2, .3, …) and
// registers, first of all, the check that every namespace it made is gone
// once the test's other cleanups have run.
func newTopology(t *testing.T, n int) *topology {
	t.Helper()
	var pins []nsID
	// Registered before the namespaces exist, so it runs after their removal.
	t.Cleanup(func() { checkNamespacesGone(t, pins) })

	router := testnode.New(t)
	pins = append(pins, pinOf(t, "router", router.Path))
	noDAD(t, router)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: lanBridge}}
	if err := router.Handle.LinkAdd(br); err != nil {
		t.Fatalf("router: add bridge %s: %v", lanBridge, err)
	}
	mustAddr(t, router.Handle, lanBridge, netip.PrefixFrom(gatewayIP, lanPrefix.Bits()))
	mustUp(t, router.Handle, lanBridge)
	setSysctl(t, router, "net/ipv4/ip_forward", "1")

	topo := &topology{router: router}
	ip := gatewayIP
	for i := range n {
		ip = ip.Next()
		node := testnode.New(t)
		ln := &lanNode{Node: node, name: "node" + strconv.Itoa(i+1), ip: ip}
		pins = append(pins, pinOf(t, ln.name, node.Path))
		noDAD(t, node)
		ns, err := netsetup.OpenNetNS(node.Path)
		if err != nil {
			t.Fatal(err)
		}
		// The router end is named after the node; the node end is eth0,
		// created straight in the node namespace.
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "to-" + ln.name, MasterIndex: linkIndex(t, router.Handle, lanBridge)},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(ns)),
		}
		err = router.Handle.LinkAdd(veth)
		ns.Close()
		if err != nil {
			t.Fatalf("router: add veth to %s: %v", ln.name, err)
		}
		mustUp(t, router.Handle, veth.Name)
		mustAddr(t, node.Handle, "eth0", netip.PrefixFrom(ip, lanPrefix.Bits()))
		mustUp(t, node.Handle, "eth0")
		if err := node.Handle.RouteAdd(&netlink.Route{Gw: net.IP(gatewayIP.AsSlice())}); err != nil {
			t.Fatalf("%s: default route via %s: %v", ln.name, gatewayIP, err)
		}
		topo.nodes = append(topo.nodes, ln)
	}
	settle(t, router, lanBridge)
	for _, n := range topo.nodes {
		settle(t, router, "to-"+n.name)
		settle(t, n.Node, "eth0")
	}
	return topo
}

// noDAD turns off IPv6 duplicate address detection for links created in n
// from now on: the test's network state snapshots must not catch a link's
// IPv6 link-local address half configured.
func noDAD(t *testing.T, n *testnode.Node) {
	t.Helper()
	setSysctl(t, n, "net/ipv6/conf/all/accept_dad", "0")
	setSysctl(t, n, "net/ipv6/conf/default/accept_dad", "0")
}

// settle waits until link is up (with carrier) and its IPv6 link-local
// address is configured (no longer tentative, its multicast groups joined):
// the kernel does that asynchronously, after link-up events, and the
// network state snapshots taken next must not see it happen later.
func settle(t *testing.T, n *testnode.Node, link string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := n.Handle.LinkByName(link)
		if err != nil {
			t.Fatalf("netns %s: %s: %v", n.Path, link, err)
		}
		// Virtual links without a carrier of their own (vxlan) say
		// "unknown" when up.
		up := l.Attrs().OperState == netlink.OperUp || l.Attrs().OperState == netlink.OperUnknown && l.Attrs().Flags&net.FlagUp != 0
		if up && hasLinkLocal(n.Handle, l) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netns %s: %s not up with an IPv6 link-local address after 5s (operstate %s)", n.Path, link, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasLinkLocal(h *netlink.Handle, l netlink.Link) bool {
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			return true
		}
	}
	return false
}

// checkLAN proves the topology before podbox touches it: each node reaches
// the gateway and every other node by TCP, and the receiver sees the
// sender's LAN address (nothing in between rewrites it).
func (topo *topology) checkLAN(t *testing.T) {
	t.Helper()
	all := append([]*testnode.Node{topo.router}, nodesOf(topo.nodes)...)
	addrs := append([]netip.Addr{gatewayIP}, ipsOf(topo.nodes)...)
	for i, from := range topo.nodes {
		for j, to := range all {
			if to == from.Node {
				continue
			}
			src, err := tcpRoundTrip(to, addrs[j], from.Node)
			if err != nil {
				t.Fatalf("LAN: %s -> %s: %v", from.ip, addrs[j], err)
			}
			if src != topo.nodes[i].ip {
				t.Fatalf("LAN: %s -> %s: server saw source %s", from.ip, addrs[j], src)
			}
		}
	}
}

func nodesOf(ns []*lanNode) []*testnode.Node {
	var out []*testnode.Node
	for _, n := range ns {
		out = append(out, n.Node)
	}
	return out
}

func ipsOf(ns []*lanNode) []netip.Addr {
	var out []netip.Addr
	for _, n := range ns {
		out = append(out, n.ip)
	}
	return out
}

// tcpRoundTrip listens on addr inside server's namespace, connects from
// client's namespace, sends a line and reads it back through the server;
// it returns the source address the server saw.
func tcpRoundTrip(server *testnode.Node, addr netip.Addr, client *testnode.Node) (netip.Addr, error) {
	var ln net.Listener
	err := server.Do(func() (err error) {
		// The socket belongs to the namespace it was made in, whatever
		// thread later accepts on it.
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		return netip.Addr{}, err
	}
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	type accepted struct {
		src netip.Addr
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(c, io.LimitReader(c, 6))
		acc <- accepted{src: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), err: err}
	}()
	var c net.Conn
	err = client.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		return err
	})
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil {
		return netip.Addr{}, fmt.Errorf("read echo: %w", err)
	}
	if string(buf) != "hello\n" {
		return netip.Addr{}, fmt.Errorf("echo = %q", buf)
	}
	a := <-acc
	return a.src, a.err
}

// nsID identifies a namespace the test made: its pin and its inode.
type nsID struct {
	name, pin string
	ino       uint64
}

func pinOf(t *testing.T, name, pin string) nsID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(pin, &st); err != nil {
		t.Fatalf("%s: stat netns pin: %v", name, err)
	}
	return nsID{name: name, pin: pin, ino: st.Ino}
}

// checkNamespacesGone fails the test if any namespace it made is still
// pinned or still held by a process or thread (a pause, a shim or a leaked
// thread of the test itself). Nothing else keeps a namespace findable.
func checkNamespacesGone(t *testing.T, ids []nsID) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := namespacesLeft(ids)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, l := range left {
				t.Errorf("leak: %s", l)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func namespacesLeft(ids []nsID) []string {
	var left []string
	for _, id := range ids {
		if netsetup.IsNetNSPin(id.pin) {
			left = append(left, fmt.Sprintf("%s namespace still pinned at %s", id.name, id.pin))
		}
	}
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, p := range tasks {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil {
			continue
		}
		for _, id := range ids {
			if st.Ino == id.ino {
				comm, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(p)), "comm"))
				left = append(left, fmt.Sprintf("%s namespace still held by %s (%s)", id.name, filepath.Dir(filepath.Dir(p)), strings.TrimSpace(string(comm))))
			}
		}
	}
	slices.Sort(left)
	return slices.Compact(left)
}

func linkIndex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l.Attrs().Index
}

func mustAddr(t *testing.T, h *netlink.Handle, link string, p netip.Prefix) {
	t.Helper()
	l, err := h.LinkByName(link)
	if err == nil {
		err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}})
	}
	if err != nil {
		t.Fatalf("add %s to %s: %v", p, link, err)
	}
}

func mustUp(t *testing.T, h *netlink.Handle, link string) {
	t.Helper()
	l, err := h.LinkByName(link)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("set %s up: %v", link, err)
	}
}

// setSysctl writes a /proc/sys value inside n's namespace (/proc/sys/net is
// the opening thread's namespace's).
func setSysctl(t *testing.T, n *testnode.Node, key, value string) {
	t.Helper()
	if err := n.Do(func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) }); err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

func sysctl(t *testing.T, n *testnode.Node, key string) string {
	t.Helper()
	var v []byte
	if err := n.Do(func() (err error) { v, err = os.ReadFile("/proc/sys/" + key); return }); err != nil {
		t.Fatalf("sysctl %s: %v", key, err)
	}
	return strings.TrimSpace(string(v))
}

// ipCmd runs `ip args` inside n's namespace and returns its output.
func ipCmd(t *testing.T, n *testnode.Node, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Command(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
