// Package nat owns podbox's own nftables table (ip podbox) and what it
// translates: published ports, the -p specs users write, forwarded from a
// node's host ports to sandbox addresses in the kernel's packet path (DNAT
// at prerouting for traffic from other hosts, at output for the node's own,
// masquerade where the reply would otherwise not come back through the
// node: hairpin from a sandbox of the same bridge, and the node's
// loopback, with one pair of such rules for each bridge that ports are
// published through, podbox's own or a CNI bridge beside it); and egress,
// the masquerade of traffic from the pod network to anywhere outside the
// cluster, so that it leaves with the node's address.
//
// Every forwarding rule carries the ID of the sandbox it belongs to, so that
// removing a sandbox removes exactly its rules, whoever removes it (the shim,
// the CLI after a shim crash); Reset removes the table. It never touches any
// other table or chain, and it knows nothing of containers or shims.
package nat
