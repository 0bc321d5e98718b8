package netsetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge makes sure the node namespace holds n's bridge, up, with the
// gateway address and n's MTU, and that the node forwards IPv4 (between pods
// now, to other nodes later). It is idempotent and safe against other
// processes ensuring the same bridge at the same moment: each step treats
// "already exists" as success. A link of that name that is not a bridge, or a
// bridge holding another IPv4 address, is an error and is left untouched.
// The bridge is node infrastructure: nothing in this package ever deletes it.
func (n Network) EnsureBridge(ctx context.Context) (*netlink.Bridge, error) {
	n, err := n.Resolve()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", n.Bridge, err)
	}
	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return nil, err
	}
	defer node.Close()
	br, _, err := n.ensureBridge(node)
	return br, err
}

// ensureBridge is EnsureBridge on an open handle in the node namespace; n is
// resolved. created says whether this call made the bridge.
func (n Network) ensureBridge(node *netlink.Handle) (_ *netlink.Bridge, created bool, _ error) {
	br, created, err := n.bridgeLink(node)
	if err != nil {
		return nil, false, err
	}
	if err := n.ensureBridgeAddr(node, br); err != nil {
		return nil, false, err
	}
	if err := enableIPForward(n.NodeNetNS); err != nil {
		return nil, false, err
	}
	return br, created, nil
}

// bridgeLink finds or creates the bridge and brings it to n's MTU, up.
func (n Network) bridgeLink(node *netlink.Handle) (_ *netlink.Bridge, created bool, _ error) {
	l, err := node.LinkByName(n.Bridge)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.Bridge
		attrs.MTU = n.MTU
		// Created up: one round trip fewer than a separate LinkSetUp.
		attrs.Flags = net.FlagUp
		// NewLinkAttrs sets TxQLen -1, "let the kernel choose": a zero
		// txqueuelen breaks FIFO qdiscs, which use it as their packet limit.
		//
		// A bridge takes the lowest MAC of its ports unless it was given
		// one, so every sandbox joining or leaving could change the
		// gateway's MAC and strand pods' ARP caches for seconds. An address
		// set at creation is "set by the user" and the kernel never changes
		// it; deriving it from the gateway IP keeps it the same when the
		// bridge is recreated (say after a reboot) with the same address.
		attrs.HardwareAddr = macFromIPv4(n.Gateway)
		err = node.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, false, fmt.Errorf("bridge %q: create: %w", n.Bridge, err)
		}
		created = err == nil
		// Whether we or a concurrent creator made it, read back what the
		// kernel holds (index, flags).
		l, err = node.LinkByName(n.Bridge)
	}
	if err != nil {
		return nil, false, fmt.Errorf("bridge %q: look up: %w", n.Bridge, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, false, fmt.Errorf("bridge %q: a %s link of that name exists, not a bridge", n.Bridge, l.Type())
	}
	if br.MTU != n.MTU {
		if err := node.LinkSetMTU(br, n.MTU); err != nil {
			return nil, false, fmt.Errorf("bridge %q: set mtu %d: %w", n.Bridge, n.MTU, err)
		}
	}
	if br.Flags&net.FlagUp == 0 {
		if err := node.LinkSetUp(br); err != nil {
			return nil, false, fmt.Errorf("bridge %q: set up: %w", n.Bridge, err)
		}
	}
	return br, created, nil
}

// ensureBridgeAddr gives the bridge the gateway address unless it has it. Any
// other IPv4 address means the name belongs to another network (or another
// configuration of this one); quietly adding a second address would route
// two subnets through one bridge, so it is an error instead.
func (n Network) ensureBridgeAddr(node *netlink.Handle, br *netlink.Bridge) error {
	want := n.GatewayPrefix()
	addrs, err := linkAddrs(n.NodeNetNS, br.Index, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("bridge %q: list addresses: %w", n.Bridge, err)
	}
	found := false
	for _, p := range addrs {
		if p != want {
			return fmt.Errorf("bridge %q: has address %s, want %s", n.Bridge, p, want)
		}
		found = true
	}
	if found {
		return nil
	}
	err = node.AddrAdd(br, &netlink.Addr{IPNet: ipNet(want)})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %q: add address %s: %w", n.Bridge, want, err)
	}
	return nil
}

// enableIPForward turns on net.ipv4.ip_forward in the node namespace
// ("" = the caller's). /proc/sys/net shows the namespace of the thread that
// opens it, so another node's namespace needs InNetNS. The value is read
// first: writing it, even unchanged, walks every interface under the rtnl
// lock.
func enableIPForward(nodeNetNS string) error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	set := func() error {
		v, err := os.ReadFile(path)
		if err == nil && bytes.Equal(bytes.TrimSpace(v), []byte("1")) {
			return nil
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable ip_forward: %w", err)
		}
		return nil
	}
	if nodeNetNS == "" {
		return set()
	}
	if err := InNetNS(nodeNetNS, set); err != nil {
		return fmt.Errorf("node netns %q: %w", nodeNetNS, err)
	}
	return nil
}

// macFromIPv4 is the locally administered unicast MAC 0a:58:<IPv4>, the
// convention of Kubernetes' kubenet and CNI. The same IP always gets the same
// MAC, so a neighbour's ARP entry for an address stays right when the
// interface behind it is recreated.
func macFromIPv4(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

// PrefixOf converts a netlink address or route destination to a prefix
// (IPv4-mapped addresses unmapped); false for a nil or malformed one.
func PrefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// isNotFound reports whether a netlink lookup failed because the link does
// not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// openHandle returns a netlink route handle bound to the namespace pinned at
// path ("" = the caller's). Only NETLINK_ROUTE is opened: the default set is
// four sockets, three of them unused here.
func openHandle(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	ns, err := OpenNetNS(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink handle: %w", path, err)
	}
	return h, nil
}
