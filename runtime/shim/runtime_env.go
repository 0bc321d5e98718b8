package shim

import (
	"os"
	"strings"
)

// servingEnv is the environment of the serving shim process: env with the
// Go runtime settings that keep an idle shim small, each unless the caller
// set it already. They must be in the environment because the runtime reads
// them at startup, before any package initialisation allocates; set later,
// from code, they would come after the costs they are meant to avoid.
//
//   - GOMAXPROCS=1: a shim is idle nearly always and its requests are
//     sequential and syscall-bound, so one P is enough (a thread blocked in
//     a syscall does not hold it). Each further P costs an mcache holding a
//     span of every size class it allocated, a GC worker goroutine and, in
//     bursts, more threads, each with its own g0 and signal stacks: about
//     0.6 MiB of anonymous memory per shim here, measured with
//     BenchmarkIdleFootprint.
//   - GODEBUG=memprofilerate=0: nobody profiles a shim's heap, and the
//     sampled allocations each touch the profiler's bucket table.
func servingEnv(env []string) []string {
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		env = append(env, "GOMAXPROCS=1")
	}
	if v, ok := os.LookupEnv("GODEBUG"); !ok {
		env = append(env, "GODEBUG=memprofilerate=0")
	} else if !strings.Contains(v, "memprofilerate=") {
		env = append(env, "GODEBUG="+v+",memprofilerate=0")
	}
	return env
}
