// Package nodenet owns a node's place in a multi-node pod network: the node's
// slice of the cluster's pod address space (its pod CIDR, which becomes the
// bridge's subnet), the other nodes it knows (peers: node IP and pod CIDR), and
// how packets for a peer's pods leave this node:
//
//	host-gw  one route per peer, "PEERCIDR via PEERNODEIP", over a shared L2
//	gateway  no per-peer route: pod traffic follows the node's default route to
//	         a shared gateway, which carries one route per node (Routes)
//	vxlan    an overlay for nodes without a shared L2: a VXLAN device
//	         (VXLANDevice) whose MAC is derived from the node IP, and per peer a
//	         forwarding (FDB) entry, a permanent neighbour and an onlink route
//
// The configuration lives in ROOT/node.json (Config), written atomically, and
// is applied idempotently: applying it again after a reboot rebuilds the same
// state. Sandboxes pick it up through Load and Config.Network. Nothing is NATed:
// a pod on another node sees the sender's pod IP.
//
// It never knows about sandboxes or containers (callers say whether any
// exist, see Host.InUse) and never touches a namespace other than the node's:
// every link, address, route and neighbour change goes through a netlink
// handle bound to Host.NetNS, and /proc/sys/net through netsetup.InNetNS.
// Routes it installs carry the protocol number RouteProtocol, so that they are
// told apart from everyone else's and nothing else is ever deleted.
package nodenet
