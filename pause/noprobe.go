//go:build !podbox_probe

package pause

// probe is a test build's hook (probe.go); the pause itself has none.
func probe() {}
