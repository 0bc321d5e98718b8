// Package shim is podbox's per-sandbox shim: the `start` and `delete` steps of
// containerd's shim protocol, and the serving process that answers
// containerd's Sandbox API (for the sandbox: pause, network, state) and Task
// API (for the containers joined to it) over ttrpc. The podbox CLI and
// containerd are both its clients; see docs/shim-protocol.md.
//
// It owns the shim process's life: when it starts serving, which sandbox it
// serves, and when it exits. The sandbox itself is package sandbox's, and
// running containers is package runc's; the shim only puts them behind the
// API.
package shim
