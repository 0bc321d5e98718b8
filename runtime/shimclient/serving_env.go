package shimclient

import "strings"

// servingEnv is the environment of a serving shim process: env with the Go
// runtime settings that keep an idle shim small, each unless env sets it
// already. They must be in the environment because the runtime reads them at
// startup, before any package initialisation allocates; set later, from
// code, they would come after the costs they are meant to avoid.
//
//   - GOMAXPROCS is left alone: a shim builds its sandbox with a P per CPU
//     and drops to one afterwards (see shim.Config.IdleProcs).
//   - GODEBUG=memprofilerate=0: nobody profiles a shim's heap, and the
//     sampled allocations each touch the profiler's bucket table.
//
// An existing GODEBUG is extended in place: the runtime reads the first
// entry of a name, so a second one appended after it would be ignored.
func servingEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	var godebug bool
	for _, kv := range env {
		if strings.HasPrefix(kv, "GODEBUG=") && !godebug {
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
	if !godebug {
		out = append(out, "GODEBUG=memprofilerate=0")
	}
	return out
}
