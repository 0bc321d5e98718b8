// Package integration holds podbox's end-to-end tests: real runc, real
// namespaces, real containerd and crictl, every one of them run inside a
// throwaway "node" network namespace (package testnode) and checked for leaks
// afterwards (package leakcheck). The machine's own network namespace is never
// changed and no traffic leaves the namespaces a test creates.
package integration
