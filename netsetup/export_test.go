package netsetup

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureVethOnBridgeIndex runs the veth step of Setup for sandboxID against
// the link with index bridgeIndex in the node, as if it were the bridge, so
// that a test can make joining the bridge fail after the pair exists.
func (n Network) EnsureVethOnBridgeIndex(sandboxID, netnsPath string, bridgeIndex int) error {
	n, err := n.Resolve()
	if err != nil {
		return err
	}
	node, err := openHandle(n.NodeNetNS)
	if err != nil {
		return err
	}
	defer node.Close()
	ns, err := OpenNetNS(netnsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	sb, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sb.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Index: bridgeIndex, Name: n.Bridge}}
	_, _, err = n.ensureVeth(node, sb, br, vethPair{
		sandboxID: sandboxID,
		host:      HostVethName(sandboxID),
		netnsPath: netnsPath,
		sbNS:      ns,
		mac:       macFromIPv4(n.Gateway.Next()),
	})
	return err
}

// LinkAddrs is linkAddrs, the per-link address dump.
var LinkAddrs = linkAddrs
