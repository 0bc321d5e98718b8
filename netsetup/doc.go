// Package netsetup owns a node's pod networking: network namespaces (create,
// pin, open, remove), the node bridge, each sandbox's veth pair, addresses and
// routes, and (in package ipam) the address leases behind them.
//
// It never knows about containers, OCI specs or shims: its callers hand it a
// sandbox ID and a namespace path and get back an address. Every step is an
// idempotent "ensure" so that running setup or teardown twice, or teardown of a
// half-built sandbox, is harmless.
//
// The built-in network is a Network value (defaults and validation in
// Network.Resolve):
//
//	node netns:  podbox0 bridge 10.89.0.1/16 ─┬─ pbx<hash(A)> ⇄ eth0 10.89.0.2 (sandbox A's netns)
//	                                          └─ pbx<hash(B)> ⇄ eth0 10.89.0.3 (sandbox B's netns)
//
// Network.Setup attaches a sandbox (namespace pin, bridge, lease, veth,
// address, default route) and on error undoes what it did; Network.Teardown
// detaches it (pin, veth, lease), normally leaving the veth pair to the
// kernel, which deletes it with the namespace; SetupLoopbackOnly serves sandboxes without a
// network. The bridge is node infrastructure: ensured by every Setup, never
// deleted here. InspectExternal reads, and never changes, a namespace that
// someone else attached to a bridge of the node (containerd's CRI, through
// CNI): its address, veth, bridge and subnet.
//
// The node namespace need not be the caller's (Network.NodeNetNS), which is
// how tests run in a throwaway node: all link, address and route work goes
// through netlink handles bound to a namespace, never the netlink package's
// functions, which act on whatever namespace the calling thread is in; the
// per-thread rest (/proc/sys/net) goes through InNetNS.
//
// Package nodenet (below this one) owns the node's place among other nodes:
// its pod CIDR, which becomes the Network's bridge subnet, its peers, and the
// host-gw routes or VXLAN overlay that reach their pods.
package netsetup
