// Package sandbox owns the pod-like sandbox: its model and lifecycle (create
// the network namespace and network, launch the pause process, join container
// specs to its namespaces, stop, remove) and its on-disk state under the state
// root, from which a crashed shim's sandbox can still be listed and removed.
//
// It never speaks ttrpc and never parses CLI flags: the shim services in
// package runtime and the CLI in cmd/podbox drive it.
package sandbox
