package nodenet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup/nodenet"
)

func TestMain(m *testing.M) { testnode.Main(m) }

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// lanNode is one test node on a shared LAN 10.100.0.0/24 (the seed's picture
// without the router): its namespace, state root and the Host on them.
type lanNode struct {
	tn   *testnode.Node
	ip   netip.Addr
	host nodenet.Host
}

// twoNodes makes nodes a (10.100.0.2) and b (10.100.0.3), joined by a veth
// "lan0", each with a default route via 10.100.0.1, and checks both for
// leaks at the end.
func twoNodes(t *testing.T) (a, b *lanNode) {
	t.Helper()
	a = &lanNode{tn: testnode.New(t), ip: addr("10.100.0.2")}
	b = &lanNode{tn: testnode.New(t), ip: addr("10.100.0.3")}
	bns, err := os.Open(b.tn.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer bns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "lan0"
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "lan0", PeerNamespace: netlink.NsFd(int(bns.Fd()))}
	if err := a.tn.Handle.LinkAdd(veth); err != nil {
		t.Fatalf("veth lan0: %v", err)
	}
	for _, n := range []*lanNode{a, b} {
		h := n.tn.Handle
		l, err := h.LinkByName("lan0")
		if err != nil {
			t.Fatal(err)
		}
		ipn := &net.IPNet{IP: net.IP(n.ip.AsSlice()), Mask: net.CIDRMask(24, 32)}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		if err := h.RouteAdd(&netlink.Route{Gw: net.ParseIP("10.100.0.1"), LinkIndex: l.Attrs().Index}); err != nil {
			t.Fatalf("default route: %v", err)
		}
		root := t.TempDir()
		n.host = nodenet.Host{Root: root, NetNS: n.tn.Path}
		leakcheck.Check(t, leakcheck.Options{Root: root, Node: n.tn})
	}
	return a, b
}

// snapshot is everything of a node that node init may change, as text.
func snapshot(t *testing.T, n *lanNode) string {
	t.Helper()
	h := n.tn.Handle
	var lines []string
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		// Without "running": that is carrier, which the kernel raises on
		// its own, up to a second after a link comes up, not configuration.
		lines = append(lines, fmt.Sprintf("link %s %s mtu %d flags %v", a.Name, l.Type(), a.MTU, a.Flags&^net.FlagRunning))
		if fdb, err := h.NeighList(a.Index, unix.AF_BRIDGE); err == nil {
			for _, f := range fdb {
				if f.IP == nil {
					continue // multicast entries the kernel adds and drops on its own
				}
				lines = append(lines, fmt.Sprintf("fdb %s %s dst %s", a.Name, f.HardwareAddr, f.IP))
			}
		}
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		lines = append(lines, "addr "+a.IPNet.String())
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		lines = append(lines, "route "+r.String())
	}
	neighs, err := h.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ne := range neighs {
		if ne.State&netlink.NUD_PERMANENT != 0 {
			lines = append(lines, fmt.Sprintf("neigh %s %s", ne.IP, ne.HardwareAddr))
		}
	}
	lines = append(lines, "ip_forward "+ipForward(t, n))
	files, _ := filepath.Glob(filepath.Join(n.host.Root, "*"))
	for _, f := range files {
		lines = append(lines, "file "+filepath.Base(f))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func ipForward(t *testing.T, n *lanNode) string {
	t.Helper()
	var v []byte
	err := n.tn.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// ourRoutes are n's routes to dst with podbox's protocol.
func ourRoutes(t *testing.T, n *lanNode, dst string) []netlink.Route {
	t.Helper()
	rs, err := n.tn.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: nodenet.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(rs, func(r netlink.Route) bool { return dst != "" && (r.Dst == nil || r.Dst.String() != dst) })
}

// dial connects from a's bridge address to port on b's bridge address, and
// returns the source address b's listener saw: proof that the pod networks
// route to each other both ways, without NAT.
func dial(t *testing.T, a, b *lanNode, from, to netip.Addr) netip.Addr {
	t.Helper()
	var ln net.Listener
	// A socket stays in the namespace it was made in, whichever thread
	// uses it afterwards.
	if err := b.tn.Do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(to, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- netip.Addr{}
			return
		}
		defer c.Close()
		io.WriteString(c, "hello")
		seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	}()
	var conn net.Conn
	err := a.tn.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IP(from.AsSlice())}}
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), from, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(conn); err != nil || string(got) != "hello" {
		t.Fatalf("read from %s: %q, %v", ln.Addr(), got, err)
	}
	return <-seen
}

func TestHostGW(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	beforeA := snapshot(t, a)

	// No --node-ip: the default route's source address.
	c, err := a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeIP != a.ip || c.Underlay != "lan0" || c.Gateway != addr("10.244.1.1") || c.PodMTU != 1500 {
		t.Errorf("Init = %+v", c)
	}
	br, err := a.tn.Handle.LinkByName("podbox0")
	if err != nil {
		t.Fatal(err)
	}
	if as, _ := a.tn.Handle.AddrList(br, netlink.FAMILY_V4); len(as) != 1 || as[0].IPNet.String() != "10.244.1.1/24" {
		t.Errorf("bridge addresses %v, want 10.244.1.1/24", as)
	}
	if v := ipForward(t, a); v != "1" {
		t.Errorf("ip_forward = %s, want 1", v)
	}
	if _, err := b.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.2.0/24"), NodeIP: b.ip}); err != nil {
		t.Fatal(err)
	}

	if _, err := a.host.AddPeer(ctx, nodenet.Peer{Name: "b", NodeIP: b.ip, PodCIDR: pfx("10.244.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	other := nodenet.Peer{NodeIP: addr("10.100.0.9"), PodCIDR: pfx("10.244.9.0/24")}
	if _, err := a.host.AddPeer(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Adding the same peer again is a no-op success.
	if c, err := a.host.AddPeer(ctx, other); err != nil || len(c.Peers) != 2 {
		t.Fatalf("AddPeer again: %v, %d peers", err, len(c.Peers))
	}
	if _, err := b.host.AddPeer(ctx, nodenet.Peer{NodeIP: a.ip, PodCIDR: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	rs := ourRoutes(t, a, "10.244.2.0/24")
	if len(rs) != 1 || rs[0].Gw.String() != "10.100.0.3" {
		t.Fatalf("routes to 10.244.2.0/24: %v, want one via 10.100.0.3", rs)
	}
	if got := dial(t, a, b, addr("10.244.1.1"), addr("10.244.2.1")); got != addr("10.244.1.1") {
		t.Errorf("b saw the connection from %s, want 10.244.1.1 (no NAT)", got)
	}

	// Re-init with the same settings re-applies: a lost route comes back,
	// the peers stay.
	if err := a.tn.Handle.RouteDel(&rs[0]); err != nil {
		t.Fatal(err)
	}
	c, err = a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Peers) != 2 || len(ourRoutes(t, a, "10.244.2.0/24")) != 1 {
		t.Errorf("after re-init: %d peers, routes %v", len(c.Peers), ourRoutes(t, a, ""))
	}

	// Removing one peer removes exactly its route.
	if _, err := a.host.RemovePeer(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if rs := ourRoutes(t, a, ""); len(rs) != 1 || rs[0].Dst.String() != "10.244.9.0/24" {
		t.Errorf("after peer rm b: routes %v, want only 10.244.9.0/24", rs)
	}
	if _, err := a.host.RemovePeer(ctx, "b"); err == nil || !strings.Contains(err.Error(), "no such peer") {
		t.Errorf("second peer rm b = %v, want no such peer", err)
	}

	for _, n := range []*lanNode{a, b} {
		if ok, err := n.host.Reset(ctx); err != nil || !ok {
			t.Fatalf("Reset: %v, %v", ok, err)
		}
	}
	if after := snapshot(t, a); after != beforeA {
		t.Errorf("after reset the node differs from before init:\n--- before\n%s\n--- after\n%s", beforeA, after)
	}
	if ok, err := a.host.Reset(ctx); ok || err != nil {
		t.Errorf("Reset of an unconfigured node = %v, %v; want false, nil", ok, err)
	}
}

func TestVXLAN(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	beforeA := snapshot(t, a)
	// The pods' MTU is that of the underlay less VXLAN's headers.
	if err := a.tn.Handle.LinkSetMTU(mustLink(t, a, "lan0"), 1400); err != nil {
		t.Fatal(err)
	}
	beforeA = strings.Replace(beforeA, "link lan0 veth mtu 1500", "link lan0 veth mtu 1400", 1)
	ca, err := a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24"), Mode: nodenet.ModeVXLAN, VNI: 42})
	if err != nil {
		t.Fatal(err)
	}
	if ca.PodMTU != 1350 {
		t.Errorf("pod MTU %d, want 1350 (underlay 1400 - 50)", ca.PodMTU)
	}
	cb, err := b.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.2.0/24"), NodeIP: b.ip, Mode: nodenet.ModeVXLAN, VNI: 42, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if cb.PodMTU != 1350 {
		t.Errorf("b: pod MTU %d, want 1350 (--mtu 1400 - 50)", cb.PodMTU)
	}
	vx, ok := mustLink(t, a, nodenet.VXLANDevice).(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is not a vxlan device", nodenet.VXLANDevice)
	}
	if vx.VxlanId != 42 || vx.Port != 4789 || vx.Learning || !vx.SrcAddr.Equal(net.ParseIP("10.100.0.2")) ||
		vx.HardwareAddr.String() != "0e:70:0a:64:00:02" || vx.MTU != 1350 || vx.VtepDevIndex != mustLink(t, a, "lan0").Attrs().Index {
		t.Errorf("vxlan device: %+v", vx)
	}
	if br := mustLink(t, a, "podbox0"); br.Attrs().MTU != 1350 {
		t.Errorf("bridge mtu %d, want 1350", br.Attrs().MTU)
	}

	peerB := nodenet.Peer{NodeIP: b.ip, PodCIDR: pfx("10.244.2.0/24")}
	// A third node's entries, which removing b must leave alone.
	peerC := nodenet.Peer{NodeIP: addr("192.168.7.7"), PodCIDR: pfx("10.244.7.0/24")}
	for _, p := range []nodenet.Peer{peerB, peerC} {
		if _, err := a.host.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.host.AddPeer(ctx, nodenet.Peer{NodeIP: a.ip, PodCIDR: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	st, err := a.host.Status()
	if err != nil {
		t.Fatal(err)
	}
	wantFDB := []string{"0e:70:0a:64:00:03 dst 10.100.0.3", "0e:70:c0:a8:07:07 dst 192.168.7.7"}
	wantNeigh := []string{"10.244.2.0 lladdr 0e:70:0a:64:00:03", "10.244.7.0 lladdr 0e:70:c0:a8:07:07"}
	wantRoutes := []string{"10.244.2.0/24 via 10.244.2.0 dev pbxvxlan onlink", "10.244.7.0/24 via 10.244.7.0 dev pbxvxlan onlink"}
	checkSet(t, "fdb", st.Applied.FDB, wantFDB)
	checkSet(t, "neighbours", st.Applied.Neighbours, wantNeigh)
	checkSet(t, "routes", st.Applied.Routes, wantRoutes)
	if st.Applied.VXLAN == nil || !slices.Equal(st.Applied.VXLAN.Addresses, []string{"10.244.1.0/32"}) {
		t.Errorf("vxlan state %+v, want address 10.244.1.0/32", st.Applied.VXLAN)
	}

	// Traffic crosses the overlay, unNATed: b sees a's pod-side address.
	if got := dial(t, a, b, addr("10.244.1.1"), addr("10.244.2.1")); got != addr("10.244.1.1") {
		t.Errorf("b saw the connection from %s, want 10.244.1.1", got)
	}
	if rx := mustLink(t, b, nodenet.VXLANDevice).Attrs().Statistics; rx == nil || rx.RxPackets == 0 {
		t.Errorf("b's vxlan device received nothing: the traffic did not cross the overlay")
	}

	if _, err := a.host.RemovePeer(ctx, b.ip.String()); err != nil {
		t.Fatal(err)
	}
	st, err = a.host.Status()
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, "fdb after peer rm", st.Applied.FDB, wantFDB[1:])
	checkSet(t, "neighbours after peer rm", st.Applied.Neighbours, wantNeigh[1:])
	checkSet(t, "routes after peer rm", st.Applied.Routes, wantRoutes[1:])

	for _, n := range []*lanNode{a, b} {
		if _, err := n.host.Reset(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := snapshot(t, a); after != beforeA {
		t.Errorf("after reset the node differs from before init:\n--- before\n%s\n--- after\n%s", beforeA, after)
	}
}

func TestGatewayModeInstallsNoPeerRoutes(t *testing.T) {
	ctx := context.Background()
	a, _ := twoNodes(t)
	if _, err := a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24"), Mode: nodenet.ModeGateway}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, a)
	// Not on a's LAN: fine here, the gateway reaches it.
	c, err := a.host.AddPeer(ctx, nodenet.Peer{NodeIP: addr("172.31.0.5"), PodCIDR: pfx("10.244.5.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, a); after != before {
		t.Errorf("gateway mode: peer add changed the node:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if got, want := c.Routes(), []string{"10.244.1.0/24 via 10.100.0.2", "10.244.5.0/24 via 172.31.0.5"}; !slices.Equal(got, want) {
		t.Errorf("Routes = %q, want %q", got, want)
	}
	if _, err := a.host.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}

// Every rejected request leaves the node exactly as it was.
func TestErrorsChangeNothing(t *testing.T) {
	ctx := context.Background()
	a, _ := twoNodes(t)
	fresh := snapshot(t, a)
	for _, tc := range []struct {
		s    nodenet.Settings
		want string
	}{
		{nodenet.Settings{PodCIDR: pfx("10.244.1.0/24"), NodeIP: addr("10.100.0.77")}, "not an address of this host"},
		{nodenet.Settings{PodCIDR: pfx("10.245.1.0/24")}, "outside the cluster CIDR"},
		{nodenet.Settings{PodCIDR: pfx("10.244.1.0/24"), Mode: "ipip"}, "unknown mode"},
	} {
		if _, err := a.host.Init(ctx, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init(%+v) = %v, want %q", tc.s, err, tc.want)
		}
		if got := snapshot(t, a); got != fresh {
			t.Errorf("failed Init(%+v) changed the node:\n%s", tc.s, got)
		}
	}
	// Not even a missing state root is created.
	noRoot := a.host
	noRoot.Root = filepath.Join(t.TempDir(), "root")
	if _, err := noRoot.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24"), NodeIP: addr("10.100.0.77")}); err == nil {
		t.Error("Init with a foreign node IP succeeded")
	}
	if _, err := noRoot.AddPeer(ctx, nodenet.Peer{NodeIP: addr("10.100.0.3"), PodCIDR: pfx("10.244.2.0/24")}); !errors.Is(err, nodenet.ErrNotConfigured) {
		t.Errorf("AddPeer without a root = %v, want ErrNotConfigured", err)
	}
	if ok, err := noRoot.Reset(ctx); ok || err != nil {
		t.Errorf("Reset without a root = %v, %v", ok, err)
	}
	if _, err := os.Stat(noRoot.Root); !os.IsNotExist(err) {
		t.Errorf("refused requests created the state root: %v", err)
	}
	// Sandboxes hold the bridge's addresses: no first init under them.
	inUse := a.host
	inUse.InUse = func() ([]string, error) { return []string{"web", "db"}, nil }
	if _, err := inUse.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24")}); err == nil || !strings.Contains(err.Error(), "2 sandbox(es) exist (web, db)") {
		t.Errorf("Init with sandboxes = %v", err)
	}
	if _, err := a.host.AddPeer(ctx, nodenet.Peer{NodeIP: addr("10.100.0.3"), PodCIDR: pfx("10.244.2.0/24")}); !errors.Is(err, nodenet.ErrNotConfigured) {
		t.Errorf("AddPeer on an unconfigured node = %v, want ErrNotConfigured", err)
	}
	if got := snapshot(t, a); got != fresh {
		t.Errorf("refused requests changed the node:\n%s", got)
	}

	if _, err := a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.host.AddPeer(ctx, nodenet.Peer{Name: "b", NodeIP: addr("10.100.0.3"), PodCIDR: pfx("10.244.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	configured := snapshot(t, a)
	nodeJSON, err := os.ReadFile(filepath.Join(a.host.Root, nodenet.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    nodenet.Peer
		want string
	}{
		{nodenet.Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.1.0/25")}, "overlaps this node's"},
		{nodenet.Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.244.2.0/23")}, "overlaps peer"},
		{nodenet.Peer{NodeIP: addr("10.100.0.4"), PodCIDR: pfx("10.10.0.0/24")}, "outside the cluster CIDR"},
		{nodenet.Peer{NodeIP: addr("10.100.0.2"), PodCIDR: pfx("10.244.4.0/24")}, "this node's own"},
		{nodenet.Peer{NodeIP: addr("10.200.0.4"), PodCIDR: pfx("10.244.4.0/24")}, "directly connected"},
	} {
		if _, err := a.host.AddPeer(ctx, tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddPeer(%+v) = %v, want %q", tc.p, err, tc.want)
		}
	}
	if _, err := a.host.RemovePeer(ctx, "nobody"); err == nil || !strings.Contains(err.Error(), `peer "nobody": no such peer`) {
		t.Errorf("RemovePeer(nobody) = %v", err)
	}
	if _, err := a.host.Init(ctx, nodenet.Settings{PodCIDR: pfx("10.244.3.0/24")}); err == nil || !strings.Contains(err.Error(), "podbox node reset") {
		t.Errorf("Init with other settings = %v, want a hint to reset", err)
	}
	if _, err := inUse.Reset(ctx); err == nil || !strings.Contains(err.Error(), "sandbox(es) exist") {
		t.Errorf("Reset with sandboxes = %v", err)
	}
	if got := snapshot(t, a); got != configured {
		t.Errorf("refused requests changed the node:\n--- before\n%s\n--- after\n%s", configured, got)
	}
	if b, _ := os.ReadFile(filepath.Join(a.host.Root, nodenet.FileName)); string(b) != string(nodeJSON) {
		t.Errorf("refused requests changed node.json:\n%s", b)
	}
	if _, err := a.host.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, a); got != fresh {
		t.Errorf("reset left:\n%s", got)
	}
}

// A bridge left by the default network (another address, no ports) gives way
// to the node's; one with ports does not.
func TestInitReplacesIdleDefaultBridge(t *testing.T) {
	ctx := context.Background()
	a, _ := twoNodes(t)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "podbox0"
	if err := a.tn.Handle.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	br := mustLink(t, a, "podbox0")
	if err := a.tn.Handle.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.89.0.1"), Mask: net.CIDRMask(16, 32)}}); err != nil {
		t.Fatal(err)
	}
	port := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: "port0p"}
	port.Name = "port0"
	if err := a.tn.Handle.LinkAdd(port); err != nil {
		t.Fatal(err)
	}
	if err := a.tn.Handle.LinkSetMasterByIndex(mustLink(t, a, "port0"), br.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	s := nodenet.Settings{PodCIDR: pfx("10.244.1.0/24")}
	if _, err := a.host.Init(ctx, s); err == nil || !strings.Contains(err.Error(), "has ports (port0)") {
		t.Fatalf("Init over a used bridge = %v", err)
	}
	if err := a.tn.Handle.LinkDel(mustLink(t, a, "port0")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.host.Init(ctx, s); err != nil {
		t.Fatal(err)
	}
	as, _ := a.tn.Handle.AddrList(mustLink(t, a, "podbox0"), netlink.FAMILY_V4)
	if len(as) != 1 || as[0].IPNet.String() != "10.244.1.1/24" {
		t.Errorf("bridge addresses %v, want only 10.244.1.1/24", as)
	}
	if _, err := a.host.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustLink(t *testing.T, n *lanNode, name string) netlink.Link {
	t.Helper()
	l, err := n.tn.Handle.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func checkSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}
