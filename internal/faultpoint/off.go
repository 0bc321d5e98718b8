//go:build !podbox_faults

package faultpoint

// Point does nothing: fault injection is compiled into test builds only
// (build tag podbox_faults).
func Point(string) {}
