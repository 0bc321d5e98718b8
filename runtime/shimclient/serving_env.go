package shimclient

import "strings"

// servingEnv is the environment of a serving shim process: env with the Go
// runtime settings that keep an idle shim small, each unless env sets it
// already. They must be in the environment because the runtime reads them at
// startup, before any package initialisation allocates; set later, from
// code, they would come after the costs they are meant to avoid.
//
//   - GOMAXPROCS=1: a shim is idle nearly always and its requests are
//     sequential and syscall-bound. Each further P costs an mcache holding
//     a span of every size class it allocated, a GC worker goroutine and,
//     in bursts, more threads, each with its own g0 and signal stacks:
//     0.3 to 0.8 MiB of anonymous memory per idle shim here, even when the
//     shim drops back to one P once its sandbox is built. The price is
//     about 1 ms of a sandbox's create, whose network and pause goroutines
//     then take turns on the one P (a goroutine in a system call keeps it
//     until sysmon takes it back).
//   - GODEBUG=memprofilerate=0: nobody profiles a shim's heap, and the
//     sampled allocations each touch the profiler's bucket table.
//
// An existing GODEBUG is extended in place: the runtime reads the first
// entry of a name, so a second one appended after it would be ignored.
func servingEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	var maxprocs, godebug bool
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "GOMAXPROCS="):
			maxprocs = true
		case strings.HasPrefix(kv, "GODEBUG=") && !godebug:
			godebug = true
			if v := strings.TrimPrefix(kv, "GODEBUG="); !strings.Contains(v, "memprofilerate=") {
				if v == "" {
					kv = "GODEBUG=memprofilerate=0"
				} else {
					kv += ",memprofilerate=0"
				}
			}
		}
		out = append(out, kv)
	}
	if !maxprocs {
		out = append(out, "GOMAXPROCS=1")
	}
	if !godebug {
		out = append(out, "GODEBUG=memprofilerate=0")
	}
	return out
}
