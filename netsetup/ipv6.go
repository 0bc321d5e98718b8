package netsetup

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The built-in network is IPv4 only, and IPv6 on its veths does harm: each
// new link sends duplicate-address probes, MLD reports and router
// solicitations to multicast groups, which the bridge floods to every port.
// With hundreds of sandboxes on a node every create then costs every other
// sandbox a wake-up, and the cost of a create grows with the node's sandbox
// count (measured: p50 doubled by the 800th sandbox). So neither end of a
// veth gets an IPv6 address: with address generation off, a link has no
// link-local address, hence nothing to probe, solicit or report, and sends
// no IPv6 at all. It is set through the netlink handle already open, before
// the pair has carrier; the sandbox's lo keeps ::1.

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE (`ip link set … addrgenmode
// none`).
const addrGenModeNone = 1

// quietIPv6 turns IPv6 address generation off on l. A kernel without IPv6
// needs nothing.
func quietIPv6(h *netlink.Handle, l netlink.Link) error {
	err := h.LinkSetIP6AddrGenMode(l, addrGenModeNone)
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: IPv6 address generation off: %w", l.Attrs().Name, err)
	}
	return nil
}
