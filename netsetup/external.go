package netsetup

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// External is how a namespace that someone else attached (containerd's CRI,
// through its CNI chain) meets the node: the sandbox's eth0 is one end of a
// veth pair whose other end, in the node namespace, is a port of a bridge
// that holds an address of the pod's subnet. It is what podbox needs to
// publish ports to such a sandbox; nothing of it is podbox's to change.
type External struct {
	// Address is eth0's IPv4 address, with its prefix length.
	Address netip.Prefix
	// HostVeth is eth0's peer in the node namespace, a port of Bridge.
	HostVeth string
	Bridge   string
	// Subnet is Bridge's IPv4 prefix that holds Address, and Gateway the
	// bridge's address in it.
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// InspectExternal reads the attachment of the sandbox namespace pinned at
// netnsPath to the node namespace pinned at nodeNetNS ("" = the caller's).
// It only reads; an error names the link or namespace that does not fit.
func InspectExternal(nodeNetNS, netnsPath string) (External, error) {
	var x External
	sb, err := openHandle(netnsPath)
	if err != nil {
		return x, err
	}
	defer sb.Close()
	eth0, err := sb.LinkByName(SandboxIfName)
	if err != nil {
		return x, fmt.Errorf("netns %q: look up %s: %w", netnsPath, SandboxIfName, err)
	}
	if _, ok := eth0.(*netlink.Veth); !ok {
		return x, fmt.Errorf("netns %q: %s is a %s link, not a veth to the node", netnsPath, SandboxIfName, eth0.Type())
	}
	addrs, err := linkAddrs(netnsPath, eth0.Attrs().Index, unix.AF_INET)
	if err != nil {
		return x, fmt.Errorf("netns %q: %s: %w", netnsPath, SandboxIfName, err)
	}
	for _, a := range addrs {
		if !a.Addr().IsLinkLocalUnicast() {
			x.Address = a
			break
		}
	}
	if !x.Address.IsValid() {
		return x, fmt.Errorf("netns %q: %s has no IPv4 address", netnsPath, SandboxIfName)
	}

	node, err := openHandle(nodeNetNS)
	if err != nil {
		return x, err
	}
	defer node.Close()
	// A veth's link attribute is its peer's index, in the peer's
	// namespace. An index names a link of the node only if that link's
	// own peer is eth0 again: anything else is a link of another
	// namespace that happens to have the number.
	host, err := node.LinkByIndex(eth0.Attrs().ParentIndex)
	if err == nil {
		if _, ok := host.(*netlink.Veth); !ok || host.Attrs().ParentIndex != eth0.Attrs().Index {
			err = fmt.Errorf("link %d of the node (%s) is not the peer of %s", host.Attrs().Index, host.Attrs().Name, SandboxIfName)
		}
	}
	if err != nil {
		return x, fmt.Errorf("netns %q: %s's peer in the node namespace: %w", netnsPath, SandboxIfName, err)
	}
	x.HostVeth = host.Attrs().Name
	brOf := func(err error) error {
		return fmt.Errorf("veth %q (peer of %s in netns %q): %w", x.HostVeth, SandboxIfName, netnsPath, err)
	}
	if host.Attrs().MasterIndex == 0 {
		return x, brOf(fmt.Errorf("no port of a bridge"))
	}
	br, err := node.LinkByIndex(host.Attrs().MasterIndex)
	if err != nil {
		return x, brOf(fmt.Errorf("its master: %w", err))
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return x, brOf(fmt.Errorf("its master %s is a %s link, not a bridge", br.Attrs().Name, br.Type()))
	}
	x.Bridge = br.Attrs().Name
	brAddrs, err := linkAddrs(nodeNetNS, br.Attrs().Index, unix.AF_INET)
	if err != nil {
		return x, fmt.Errorf("bridge %q: %w", x.Bridge, err)
	}
	for _, p := range brAddrs {
		if p.Contains(x.Address.Addr()) {
			x.Subnet, x.Gateway = p.Masked(), p.Addr()
			return x, nil
		}
	}
	// Without an address of the pod's subnet the node has no route to the
	// pod, and nothing it forwards would arrive.
	return x, fmt.Errorf("bridge %q has no IPv4 address in the subnet of %s's address %s", x.Bridge, SandboxIfName, x.Address)
}
