// Package netsetup owns a node's pod networking: network namespaces (create,
// pin, open, remove), the node bridge, each sandbox's veth pair, addresses and
// routes, and (in package ipam) the address leases behind them.
//
// It never knows about containers, OCI specs or shims: its callers hand it a
// sandbox ID and a namespace path and get back an address. Every step is an
// idempotent "ensure" so that running setup or teardown twice, or teardown of a
// half-built sandbox, is harmless.
package netsetup
