// Package faultpoint lets the fault-injection tests kill a podbox process
// (the CLI, the shim) at a named step of its work, to prove that whatever
// that step leaves is listed truthfully and removed by one
// `podbox sandbox rm -f`.
//
// Point(name) marks the boundary between two steps. In a binary built with
// the build tag podbox_faults, a process whose environment has
// PODBOX_FAULT=name (or name:N, the Nth time it gets there) sends itself
// SIGKILL there: no deferred undo, no answer, as a crash or an OOM kill
// would end it; with PODBOX_FAULT_HOLD=DIR as well it waits there instead
// (its PID in DIR/held, until a test has done what it wanted at that
// moment and removes the file). Built without the tag, as every release binary is, Point is
// an empty function the compiler removes: no environment lookup, no init
// work, and the variable's name is not in the binary.
//
// It owns nothing else: which steps are marked is the business of the
// packages that call it.
package faultpoint
