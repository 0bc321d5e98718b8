package nodenet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup"
)

// defaultSource is the preferred source address of the node's default route
// (the address `ip route get` would pick for an outside destination): the
// route's own src, else the address of its link on the gateway's subnet,
// else the link's first global address.
func defaultSource(nh *netlink.Handle) (netip.Addr, error) {
	routes, err := nh.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Table != unix.RT_TABLE_MAIN && r.Table != 0 {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Src); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
		link, err := nh.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		addrs, err := nh.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		var first netip.Addr
		for _, a := range addrs {
			p, ok := netsetup.PrefixOf(a.IPNet)
			if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE {
				continue
			}
			if gw, ok := netip.AddrFromSlice(r.Gw); ok && p.Masked().Contains(gw.Unmap()) {
				return p.Addr(), nil
			}
			if !first.IsValid() {
				first = p.Addr()
			}
		}
		if first.IsValid() {
			return first, nil
		}
	}
	return netip.Addr{}, errors.New("node: no default route with a source address in the node's network namespace: pass --node-ip")
}

// linkWithAddr returns the link holding ip.
func linkWithAddr(nh *netlink.Handle, ip netip.Addr) (netlink.Link, error) {
	addrs, err := nh.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("node: list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := netsetup.PrefixOf(a.IPNet); ok && p.Addr() == ip {
			l, err := nh.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("node: node IP %s: link %d: %w", ip, a.LinkIndex, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("node: node IP %s is not an address of this host (of any link in its network namespace)", ip)
}

// directlyConnected checks that p's node IP is on a subnet the node has an
// address in: host-gw routes have the peer as their next hop, which the
// kernel accepts only on a directly connected network.
func directlyConnected(nh *netlink.Handle, p Peer) error {
	addrs, err := nh.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("node: list addresses: %w", err)
	}
	for _, a := range addrs {
		if pr, ok := netsetup.PrefixOf(a.IPNet); ok && pr.Bits() < 32 && pr.Masked().Contains(p.NodeIP) {
			return nil
		}
	}
	return fmt.Errorf("node: %s: mode %s needs the peer's node IP on a directly connected subnet, and no address of this node covers %s (use mode %s or %s)",
		p, ModeHostGW, p.NodeIP, ModeGateway, ModeVXLAN)
}

func (h Host) checkPeersReachable(nh *netlink.Handle, c *Config) error {
	if c.Mode != ModeHostGW {
		return nil
	}
	for _, p := range c.Peers {
		if err := directlyConnected(nh, p); err != nil {
			return err
		}
	}
	return nil
}

// ensureMode sets up what c's mode needs beyond the bridge: the VXLAN device
// in vxlan mode (returned), nothing otherwise.
func (h Host) ensureMode(nh *netlink.Handle, c *Config) (netlink.Link, error) {
	if c.Mode != ModeVXLAN {
		return nil, nil
	}
	underlay, err := linkWithAddr(nh, c.NodeIP)
	if err != nil {
		return nil, err
	}
	want := &netlink.Vxlan{
		LinkAttrs: netlink.NewLinkAttrs(),
		VxlanId:   c.VNI,
		// The underlay: encapsulated packets leave through the link that
		// holds the node IP, from that address.
		VtepDevIndex: underlay.Attrs().Index,
		SrcAddr:      net.IP(c.NodeIP.AsSlice()),
		Port:         VXLANPort,
		// Forwarding entries come from the configuration, never from
		// flooding and learning: every peer's entry is static.
		Learning: false,
	}
	want.Name = VXLANDevice
	want.MTU = c.PodMTU
	want.HardwareAddr = vtepMAC(c.NodeIP)
	want.Flags = net.FlagUp

	l, err := nh.LinkByName(VXLANDevice)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("node: vxlan %q: look up: %w", VXLANDevice, err)
	default:
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			return nil, fmt.Errorf("node: vxlan %q: a %s link of that name exists", VXLANDevice, l.Type())
		}
		if vx.VxlanId != want.VxlanId || vx.VtepDevIndex != want.VtepDevIndex || !vx.SrcAddr.Equal(want.SrcAddr) ||
			vx.Port != want.Port || vx.Learning || vx.HardwareAddr.String() != want.HardwareAddr.String() {
			// Another configuration's device (the node IP or the
			// underlay changed): these parameters are fixed at
			// creation, so it is made afresh.
			if err := nh.LinkDel(vx); err != nil {
				return nil, fmt.Errorf("node: vxlan %q: delete outdated device: %w", VXLANDevice, err)
			}
			l = nil
		}
	}
	if l == nil {
		if err := nh.LinkAdd(want); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("node: vxlan %q: create (vni %d, local %s, dev %s, port %d): %w",
				VXLANDevice, c.VNI, c.NodeIP, underlay.Attrs().Name, VXLANPort, err)
		}
		if l, err = nh.LinkByName(VXLANDevice); err != nil {
			return nil, fmt.Errorf("node: vxlan %q: look up: %w", VXLANDevice, err)
		}
	}
	if l.Attrs().MTU != c.PodMTU {
		if err := nh.LinkSetMTU(l, c.PodMTU); err != nil {
			return nil, fmt.Errorf("node: vxlan %q: set mtu %d: %w", VXLANDevice, c.PodMTU, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := nh.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("node: vxlan %q: set up: %w", VXLANDevice, err)
		}
	}
	// The device holds the pod CIDR's network address as a /32: the
	// source of packets the node itself sends to remote pods, and the
	// address peers use as this node's next hop (PODCIDR.0).
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(c.PodCIDR.Addr().AsSlice()), Mask: net.CIDRMask(32, 32)}}
	if err := nh.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("node: vxlan %q: add address %s: %w", VXLANDevice, addr.IPNet, err)
	}
	return l, nil
}

// vxlanLink is the VXLAN device in vxlan mode, nil in the others.
func (h Host) vxlanLink(nh *netlink.Handle, c *Config) (netlink.Link, error) {
	if c.Mode != ModeVXLAN {
		return nil, nil
	}
	l, err := nh.LinkByName(VXLANDevice)
	if err != nil {
		return nil, fmt.Errorf("node: vxlan %q: look up (run `podbox node init` again to re-apply): %w", VXLANDevice, err)
	}
	return l, nil
}

// peerRoute is the route to p's pods in c's mode; nil in gateway mode.
func peerRoute(c *Config, vx netlink.Link, p Peer) *netlink.Route {
	dst := &net.IPNet{IP: net.IP(p.PodCIDR.Addr().AsSlice()), Mask: net.CIDRMask(p.PodCIDR.Bits(), 32)}
	switch c.Mode {
	case ModeHostGW:
		return &netlink.Route{Dst: dst, Gw: net.IP(p.NodeIP.AsSlice()), Protocol: RouteProtocol}
	case ModeVXLAN:
		// Next hop: the peer's VXLAN device address (its PODCIDR.0),
		// "onlink" because no subnet of this node contains it.
		return &netlink.Route{
			LinkIndex: vx.Attrs().Index, Dst: dst, Gw: net.IP(p.PodCIDR.Addr().AsSlice()),
			Flags: int(netlink.FLAG_ONLINK), Protocol: RouteProtocol,
		}
	}
	return nil
}

// peerNeighs are p's permanent neighbour entry (its PODCIDR.0 has its VTEP
// MAC, so no ARP crosses the overlay) and FDB entry (frames for that MAC go
// in UDP to its node IP).
func peerNeighs(vx netlink.Link, p Peer) (neigh, fdb *netlink.Neigh) {
	mac := vtepMAC(p.NodeIP)
	neigh = &netlink.Neigh{
		LinkIndex: vx.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.IP(p.PodCIDR.Addr().AsSlice()), HardwareAddr: mac,
	}
	fdb = &netlink.Neigh{
		LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: net.IP(p.NodeIP.AsSlice()), HardwareAddr: mac,
	}
	return neigh, fdb
}

// addPeer installs p's entries; each step replaces, so it is idempotent.
func addPeer(nh *netlink.Handle, c *Config, vx netlink.Link, p Peer) error {
	if c.Mode == ModeVXLAN {
		neigh, fdb := peerNeighs(vx, p)
		if err := nh.NeighSet(fdb); err != nil {
			return fmt.Errorf("node: %s: fdb entry %s dst %s: %w", p, fdb.HardwareAddr, p.NodeIP, err)
		}
		if err := nh.NeighSet(neigh); err != nil {
			return fmt.Errorf("node: %s: neighbour %s lladdr %s: %w", p, neigh.IP, neigh.HardwareAddr, err)
		}
	}
	if r := peerRoute(c, vx, p); r != nil {
		if err := nh.RouteReplace(r); err != nil {
			return fmt.Errorf("node: %s: route %s: %w", p, routeString(nh, *r), err)
		}
	}
	return nil
}

// removePeer deletes p's entries; a missing one is success.
func removePeer(nh *netlink.Handle, c *Config, p Peer) error {
	var errs []error
	routes, err := ourRoutes(nh)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if pr, ok := netsetup.PrefixOf(r.Dst); ok && pr == p.PodCIDR {
			if err := nh.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("node: %s: delete route %s: %w", p, pr, err))
			}
		}
	}
	if c.Mode == ModeVXLAN {
		vx, err := nh.LinkByName(VXLANDevice)
		if isNotFound(err) {
			return errors.Join(errs...)
		}
		if err != nil {
			return fmt.Errorf("node: vxlan %q: look up: %w", VXLANDevice, err)
		}
		neigh, fdb := peerNeighs(vx, p)
		if err := nh.NeighDel(neigh); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("node: %s: delete neighbour %s: %w", p, neigh.IP, err))
		}
		if err := nh.NeighDel(fdb); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("node: %s: delete fdb entry %s: %w", p, fdb.HardwareAddr, err))
		}
	}
	return errors.Join(errs...)
}

// ourRoutes lists the main table's routes that carry RouteProtocol.
func ourRoutes(nh *netlink.Handle) ([]netlink.Route, error) {
	rs, err := nh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("node: list routes: %w", err)
	}
	return rs, nil
}

// pruneRoutes deletes routes of ours that no current peer explains (left by
// a crash between a change and its record); in gateway mode that is all.
func pruneRoutes(nh *netlink.Handle, c *Config, vx netlink.Link) error {
	rs, err := ourRoutes(nh)
	if err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	if c.Mode != ModeGateway {
		for _, p := range c.Peers {
			want[p.PodCIDR] = true
		}
	}
	for _, r := range rs {
		if pr, ok := netsetup.PrefixOf(r.Dst); ok && want[pr] {
			continue
		}
		if err := nh.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("node: delete stale route %s: %w", r.Dst, err)
		}
	}
	return nil
}

// routeString renders r in `ip route` form.
func routeString(nh *netlink.Handle, r netlink.Route) string {
	s := "default"
	if r.Dst != nil {
		s = r.Dst.String()
	}
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if r.LinkIndex > 0 {
		if l, err := nh.LinkByIndex(r.LinkIndex); err == nil {
			s += " dev " + l.Attrs().Name
		}
	}
	if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
		s += " onlink"
	}
	return s
}
