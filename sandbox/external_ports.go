package sandbox

import (
	"fmt"
	"path/filepath"

	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/netsetup/nat"
)

// publishExternal publishes the ports of sb, a sandbox on a network someone
// else attached (containerd's CRI through CNI, with the shim as its
// sandboxer), the way the node's own bridge publishes them: the namespace's
// eth0 gives the pod's address, and its veth peer the bridge and subnet the
// hairpin and loopback rules go with. It records that attachment in sb
// (removal needs none of it, but inspect shows it). Nothing is done for a
// sandbox without ports: reading the attachment is CNI's business until
// podbox has something to do with it.
func (n Node) publishExternal(sb *Sandbox) error {
	if len(sb.Ports) == 0 {
		return nil
	}
	x, err := netsetup.InspectExternal(n.Network.NodeNetNS, sb.NetNSPath)
	if err != nil {
		return fmt.Errorf("publish ports: %w", err)
	}
	sb.IP, sb.Gateway, sb.Bridge, sb.HostVeth = x.Address.Addr().String(), x.Gateway.String(), x.Bridge, x.HostVeth
	r := nat.Rules{NodeNetNS: n.Network.NodeNetNS, Bridge: x.Bridge, Subnet: x.Subnet, Lock: n.portsLock()}
	return r.Add(sb.ID, x.Address.Addr(), sb.Ports)
}

// portsLock is the lock beside the state root that keeps two creates from
// publishing one port, whatever bridge each publishes through.
func (n Node) portsLock() string { return filepath.Join(n.Store.Root, "ports.lock") }

// UnpublishExternal removes the published ports of sb when its network is
// someone else's; it is harmless to call again, and for any other sandbox.
// The shim calls it when the sandbox stops, because containerd's CRI hands
// the pod's address back to CNI right after, and another pod may get it;
// Remove calls it for a sandbox whose shim was killed.
func (n Node) UnpublishExternal(sb *Sandbox) error {
	if sb.Network != NetworkExternal || len(sb.Ports) == 0 {
		return nil
	}
	// Rules are found by the sandbox's ID alone.
	return nat.Rules{NodeNetNS: n.Network.NodeNetNS}.Remove(sb.ID)
}
