// Package multinode holds the integration test of pods across nodes (issue
// #5): the seed's topology built from network namespaces the test creates —
// a "router" namespace with the LAN bridge and gateway 10.100.0.1, and two
// node namespaces 10.100.0.2 and 10.100.0.3 attached to it by veths — with
// podbox run on each node under its own state root and cgroup parent, in
// host-gw, gateway and vxlan modes.
//
// It never touches the machine's own network namespace: every link, address,
// route and sysctl it makes lives in a namespace it created and removes, and
// every packet it sends stays inside them.
package multinode
