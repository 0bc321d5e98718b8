package multinode

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/sandbox"
)

var (
	clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	podCIDRs    = []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")}
	localhost   = netip.MustParseAddr("127.0.0.1")
)

// vxlanOverhead is what VXLAN over IPv4 adds to each packet: outer IPv4 (20),
// UDP (8), VXLAN (8) and inner Ethernet (14) headers.
const vxlanOverhead = 50

// TestPodsAcrossNodes is issue #5's test on the seed's topology, once per
// mode: a pod on node 1 serves HTTP, a pod on node 2 fetches from it by pod
// IP and the server sees the client's pod IP; pods on one node reach each
// other over the bridge and containers of one pod share localhost; removing
// a peer removes exactly its entries; `node reset` refuses while sandboxes
// exist and afterwards leaves each node as before `node init`; and nothing —
// namespace, link, route, FDB entry, process, cgroup, state file — remains.
func TestPodsAcrossNodes(t *testing.T) {
	bin := buildBinaries(t)
	for _, mode := range []string{"host-gw", "gateway", "vxlan"} {
		t.Run(mode, func(t *testing.T) { testMode(t, mode, bin) })
	}
}

func testMode(t *testing.T, mode string, bin binaries) {
	start := time.Now()
	topo := newTopology(t, 2)
	topo.checkLAN(t)
	// The router forwards between nodes in gateway mode; without redirects
	// it stays on the path instead of teaching the nodes a shortcut.
	setSysctl(t, topo.router, "net/ipv4/conf/all/send_redirects", "0")
	setSysctl(t, topo.router, "net/ipv4/conf/"+lanBridge+"/send_redirects", "0")
	routerBefore := netState(t, topo.router)

	nodes := make([]*podboxNode, len(topo.nodes))
	for i, ln := range topo.nodes {
		nodes[i] = newPodboxNode(t, ln, bin)
	}
	routes := configureNodes(t, mode, nodes)
	pods := checkPods(t, mode, topo, nodes, routes)
	checkReset(t, nodes, pods)
	if mode == "gateway" {
		for _, line := range routes {
			ipCmd(t, topo.router, append([]string{"route", "del"}, strings.Fields(line)...)...)
		}
	}
	sameState(t, "router", routerBefore, netState(t, topo.router))
	t.Logf("%s: %v", mode, time.Since(start).Round(time.Millisecond))
}

// configureNodes runs node init and peer add on both nodes, checks what
// they installed, and returns the gateway routes node 1 prints. On the way,
// refused requests must change nothing, and node 1's peer is removed and
// re-added, which must undo and redo exactly the peer's entries.
func configureNodes(t *testing.T, mode string, nodes []*podboxNode) (routes []string) {
	t.Helper()
	refused(t, nodes[0], nodes[0].pristine, "10.100.0.9", "node", "init", "--pod-cidr", podCIDRs[0].String(),
		"--node-ip", "10.100.0.9", "--mode", mode)
	if _, err := os.Stat(filepath.Join(nodes[0].root, "node.json")); !os.IsNotExist(err) {
		t.Errorf("node1: a refused init left its configuration: %v", err)
	}
	for i, n := range nodes {
		n.mustRun("node", "init", "--pod-cidr", podCIDRs[i].String(), "--cluster-cidr", clusterCIDR.String(),
			"--node-ip", n.ip.String(), "--mode", mode)
	}
	if mode == "vxlan" {
		for _, n := range nodes {
			settle(t, n.Node, vxlanLink(t, n).Attrs().Name)
		}
	}
	initOnly := netState(t, nodes[0].Node)
	refused(t, nodes[0], initOnly, podCIDRs[0].String(), "node", "peer", "add", "--node-ip", nodes[1].ip.String(), "--pod-cidr", podCIDRs[0].String())
	for i, n := range nodes {
		p := nodes[1-i]
		n.mustRun("node", "peer", "add", "--node-ip", p.ip.String(), "--pod-cidr", podCIDRs[1-i].String(), "--name", p.name)
	}
	withPeer := netState(t, nodes[0].Node)
	// Peers are removed by name or by node IP.
	ref := nodes[1].name
	if mode == "vxlan" {
		ref = nodes[1].ip.String()
	}
	nodes[0].mustRun("node", "peer", "rm", ref)
	sameState(t, "node1 after peer rm (want as before peer add)", initOnly, netState(t, nodes[0].Node))
	nodes[0].mustRun("node", "peer", "add", "--node-ip", nodes[1].ip.String(), "--pod-cidr", podCIDRs[1].String(), "--name", nodes[1].name)
	sameState(t, "node1 after peer re-add", withPeer, netState(t, nodes[0].Node))

	for i, n := range nodes {
		checkNodeRoutes(t, mode, n, nodes[1-i], podCIDRs[1-i])
		checkShow(t, mode, n, nodes[1-i], podCIDRs[i], podCIDRs[1-i])
	}
	// One route per node for the gateway, the node's own first.
	out := nodes[0].mustRun("node", "routes")
	if want := "10.244.1.0/24 via 10.100.0.2\n10.244.2.0/24 via 10.100.0.3\n"; out != want {
		t.Errorf("node1: node routes = %q, want %q", out, want)
	}
	if got, want := nodes[1].mustRun("node", "routes"), "10.244.2.0/24 via 10.100.0.3\n10.244.1.0/24 via 10.100.0.2\n"; got != want {
		t.Errorf("node2: node routes = %q, want %q", got, want)
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// checkPods runs a server and a neighbour pod on node 1 and a client pod on
// node 2 and checks who reaches whom, by which path, and with which source
// address. It returns the pods.
func checkPods(t *testing.T, mode string, topo *topology, nodes []*podboxNode, routes []string) []*pod {
	t.Helper()
	server := nodes[0].newPod("server")
	neighbour := nodes[0].newPod("neighbour")
	client := nodes[1].newPod("client")
	pods := []*pod{server, neighbour, client}
	for _, p := range pods {
		want := podCIDRs[0]
		if p.node == nodes[1] {
			want = podCIDRs[1]
		}
		if !want.Contains(p.ip) {
			t.Errorf("pod %s on %s has %s, outside the node's pod CIDR %s", p.name, p.node.name, p.ip, want)
		}
		wantMTU := 1500
		if mode == "vxlan" {
			wantMTU -= vxlanOverhead
		}
		if mtu := p.eth0().Attrs().MTU; mtu != wantMTU {
			t.Errorf("pod %s: eth0 MTU %d, want %d", p.name, mtu, wantMTU)
		}
	}
	server.serve()
	// Two containers of one pod share localhost; this also waits for httpd.
	server.who(localhost, server.name, localhost)
	// Two pods on one node reach each other over the bridge.
	neighbour.who(server.ip, server.name, neighbour.ip)

	if mode == "gateway" {
		// Nodes route pod traffic to the gateway, which knows nothing yet.
		if out, err := client.fetch(whoURL(server.ip), 2*time.Second); err == nil {
			t.Fatalf("gateway mode without gateway routes: client reached the server: %q", out)
		}
		for _, line := range routes {
			ipCmd(t, topo.router, append([]string{"route", "add"}, strings.Fields(line)...)...)
		}
	}
	fwd := forwarded(t, topo.router)
	vx := vxlanCounters(t, mode, nodes)
	// Across nodes, not NATed: the server sees the client's pod IP.
	client.who(server.ip, server.name, client.ip)
	routed := forwarded(t, topo.router) - fwd
	switch mode {
	case "gateway":
		if routed == 0 {
			t.Errorf("gateway mode: the router forwarded no packet")
		}
	default:
		if routed != 0 {
			t.Errorf("%s mode: the router forwarded %d packets; pod traffic must not pass it", mode, routed)
		}
	}
	if mode == "vxlan" {
		after := vxlanCounters(t, mode, nodes)
		for i := range nodes {
			if after[i].TxPackets == vx[i].TxPackets || after[i].RxPackets == vx[i].RxPackets {
				t.Errorf("vxlan mode: %s's VXLAN device carried nothing (before %+v, after %+v)", nodes[i].name, vx[i], after[i])
			}
		}
	}
	if mode != "gateway" {
		// Only the gateway mode needs pod routes on the router.
		for _, r := range routerRoutes(t, topo) {
			if r.Dst != nil && clusterCIDR.Contains(netip.AddrFrom4([4]byte(r.Dst.IP.To4()))) {
				t.Errorf("%s mode: router carries pod route %s", mode, r)
			}
		}
	}
	return pods
}

// checkReset checks that node reset refuses while pods exist, changing
// nothing, and that once they are removed it leaves each node as it was
// before node init.
func checkReset(t *testing.T, nodes []*podboxNode, pods []*pod) {
	t.Helper()
	before := netState(t, nodes[0].Node)
	if code, _, stderr := nodes[0].run("node", "reset"); code == 0 {
		t.Errorf("node1: node reset with sandboxes succeeded")
	} else {
		for _, p := range pods {
			if p.node == nodes[0] && !strings.Contains(stderr, p.name) {
				t.Errorf("node1: node reset with sandboxes: error does not name %s: %q", p.name, stderr)
			}
		}
	}
	sameState(t, "node1 after a refused reset", before, netState(t, nodes[0].Node))
	for _, p := range pods {
		p.node.mustRun("sandbox", "rm", "-f", p.name)
	}
	for _, n := range nodes {
		n.reset()
		settledState(t, n.name+" after node reset (want as before node init)", n.pristine, n.Node)
		if _, err := os.Stat(filepath.Join(n.root, "node.json")); !os.IsNotExist(err) {
			t.Errorf("%s: node configuration remains after reset: %v", n.name, err)
		}
	}
}

// track registers everything that must hold when the test ends — sandboxes
// removed, node reset, leak-free — and returns the node's network state
// before podbox touched it.
func (n *podboxNode) track() []string {
	t := n.t
	// Cleanups run last-registered first: cgroup parent after the leak check,
	// leak check after the reset, the reset after the sandboxes' removal
	// (registered by newPod, later).
	t.Cleanup(func() {
		if err := (sandbox.Cgroup{Path: n.cgroup}).Remove(); err != nil {
			t.Errorf("%s: %v", n.name, err)
		}
	})
	leakcheck.Check(t, leakcheck.Options{
		Root: n.root, Node: n.Node, CgroupParent: n.cgroup,
		// The pause binary's copy is node-level and may stay; after
		// reset nothing else may (no node.json, no IPAM pool).
		AllowFiles: []string{"pause-root/pause"},
	})
	state := netState(t, n.Node)
	t.Cleanup(func() {
		if !n.wasReset {
			n.reset()
		}
		sameState(t, n.name+" at the end", state, netState(t, n.Node))
	})
	return state
}

func (n *podboxNode) reset() {
	n.t.Helper()
	if code, out, stderr := n.run("node", "reset"); code != 0 {
		n.t.Errorf("%s: node reset: exit %d: %s%s", n.name, code, stderr, out)
		return
	}
	n.wasReset = true
}

func whoURL(server netip.Addr) string {
	return "http://" + netip.AddrPortFrom(server, 8080).String() + "/cgi-bin/who"
}

// checkNodeRoutes asserts how n reaches its peer's pods in each mode.
func checkNodeRoutes(t *testing.T, mode string, n, peer *podboxNode, peerCIDR netip.Prefix) {
	t.Helper()
	rs, err := n.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var toPeer []netlink.Route
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == peerCIDR.String() {
			toPeer = append(toPeer, r)
		}
	}
	if v := sysctl(t, n.Node, "net/ipv4/ip_forward"); v != "1" {
		t.Errorf("%s: ip_forward = %s after node init", n.name, v)
	}
	switch mode {
	case "host-gw":
		if len(toPeer) != 1 || !toPeer[0].Gw.Equal(net.IP(peer.ip.AsSlice())) || toPeer[0].LinkIndex != linkIndex(t, n.Handle, "eth0") {
			t.Errorf("%s: host-gw routes to %s = %v, want one via %s dev eth0", n.name, peerCIDR, toPeer, peer.ip)
		}
	case "gateway":
		if len(toPeer) != 0 {
			t.Errorf("%s: gateway mode has routes to %s: %v; want only the default route", n.name, peerCIDR, toPeer)
		}
	case "vxlan":
		vx := vxlanLink(t, n)
		if len(toPeer) != 1 || toPeer[0].LinkIndex != vx.Attrs().Index {
			t.Errorf("%s: vxlan routes to %s = %v, want one through %s", n.name, peerCIDR, toPeer, vx.Attrs().Name)
		}
		// The peer's VTEP is known by a forwarding entry to its node IP.
		fdb, err := n.Handle.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range fdb {
			found = found || e.IP.Equal(net.IP(peer.ip.AsSlice()))
		}
		if !found {
			t.Errorf("%s: no FDB entry on %s towards %s: %v", n.name, vx.Attrs().Name, peer.ip, fdb)
		}
		if eth0, _ := n.Handle.LinkByName("eth0"); vx.Attrs().MTU != eth0.Attrs().MTU-vxlanOverhead {
			t.Errorf("%s: %s MTU %d, want %d", n.name, vx.Attrs().Name, vx.Attrs().MTU, eth0.Attrs().MTU-vxlanOverhead)
		}
	}
}

// vxlanLink is n's one VXLAN device.
func vxlanLink(t *testing.T, n *podboxNode) netlink.Link {
	t.Helper()
	links, err := n.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var found []netlink.Link
	for _, l := range links {
		if l.Type() == "vxlan" {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d VXLAN devices, want 1", n.name, len(found))
	}
	return found[0]
}

func vxlanCounters(t *testing.T, mode string, nodes []*podboxNode) []netlink.LinkStatistics {
	t.Helper()
	if mode != "vxlan" {
		return nil
	}
	var out []netlink.LinkStatistics
	for _, n := range nodes {
		l, err := n.Handle.LinkByIndex(vxlanLink(t, n).Attrs().Index)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *l.Attrs().Statistics)
	}
	return out
}

func routerRoutes(t *testing.T, topo *topology) []netlink.Route {
	t.Helper()
	rs, err := topo.router.Handle.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// checkShow asserts what `node peer ls -o json` and `node show -o json` say
// about n, whose one peer is peer.
func checkShow(t *testing.T, mode string, n, peer *podboxNode, own, peerCIDR netip.Prefix) {
	t.Helper()
	var peers []map[string]string
	if err := json.Unmarshal([]byte(n.mustRun("node", "peer", "ls", "-o", "json")), &peers); err != nil {
		t.Fatalf("%s: peer ls -o json: %v", n.name, err)
	}
	want := []map[string]string{{"name": peer.name, "nodeIP": peer.ip.String(), "podCIDR": peerCIDR.String()}}
	if !reflect.DeepEqual(peers, want) {
		t.Errorf("%s: peer ls -o json = %v, want %v", n.name, peers, want)
	}
	var show struct {
		Config struct {
			Mode    string `json:"mode"`
			PodCIDR string `json:"podCIDR"`
			NodeIP  string `json:"nodeIP"`
			PodMTU  int    `json:"podMTU"`
		} `json:"config"`
		Applied struct {
			IPForward bool `json:"ipForward"`
			Bridge    *struct {
				Addresses []string `json:"addresses"`
				MTU       int      `json:"mtu"`
			} `json:"bridge"`
			VXLAN *struct {
				MTU int `json:"mtu"`
			} `json:"vxlan"`
			Routes []string `json:"routes"`
			FDB    []string `json:"fdb"`
		} `json:"applied"`
	}
	if err := json.Unmarshal([]byte(n.mustRun("node", "show", "-o", "json")), &show); err != nil {
		t.Fatalf("%s: node show -o json: %v", n.name, err)
	}
	c, a := show.Config, show.Applied
	mtu := 1500
	if mode == "vxlan" {
		mtu -= vxlanOverhead
	}
	if c.Mode != mode || c.PodCIDR != own.String() || c.NodeIP != n.ip.String() || c.PodMTU != mtu {
		t.Errorf("%s: node show config = %+v", n.name, c)
	}
	gw := netip.PrefixFrom(own.Addr().Next(), own.Bits()).String()
	if !a.IPForward || a.Bridge == nil || !slices.Contains(a.Bridge.Addresses, gw) || a.Bridge.MTU != mtu {
		t.Errorf("%s: node show applied = %+v (bridge %+v), want ip_forward, bridge with %s and mtu %d", n.name, a, a.Bridge, gw, mtu)
	}
	switch mode {
	case "vxlan":
		if a.VXLAN == nil || a.VXLAN.MTU != mtu || len(a.FDB) != 1 || !strings.Contains(a.FDB[0], peer.ip.String()) || len(a.Routes) != 1 {
			t.Errorf("%s: node show vxlan = %+v, fdb %v, routes %v", n.name, a.VXLAN, a.FDB, a.Routes)
		}
	case "host-gw":
		if len(a.Routes) != 1 || !strings.HasPrefix(a.Routes[0], peerCIDR.String()+" via "+peer.ip.String()) {
			t.Errorf("%s: node show routes = %v, want %s via %s", n.name, a.Routes, peerCIDR, peer.ip)
		}
	case "gateway":
		if len(a.Routes) != 0 {
			t.Errorf("%s: node show routes = %v, want none in gateway mode", n.name, a.Routes)
		}
	}
}

// refused runs a podbox command that must fail with an error naming what, and
// leave n's network as it was (state).
func refused(t *testing.T, n *podboxNode, state []string, what string, args ...string) {
	t.Helper()
	code, _, stderr := n.run(args...)
	if code == 0 || !strings.Contains(stderr, what) {
		t.Errorf("%s: podbox %s: exit %d, stderr %q; want an error naming %s", n.name, strings.Join(args, " "), code, stderr, what)
	}
	t.Logf("%s: podbox %s: refused: %s", n.name, strings.Join(args, " "), strings.TrimSpace(stderr))
	sameState(t, n.name+" after a refused "+strings.Join(args[:2], " "), state, netState(t, n.Node))
}
