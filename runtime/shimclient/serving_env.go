package shimclient

import (
	"slices"
	"strings"
)

// servingEnv is the environment of a serving shim process: env with the Go
// runtime settings that keep an idle shim small, each unless env sets it
// already. They must be in the environment because the runtime reads them at
// startup, before any package initialisation allocates; set later, from
// code, they would come after the costs they are meant to avoid (measured:
// runtime.GOMAXPROCS(1) first thing in the shim still leaves 0.2 MiB more).
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
//
// The settings are the shim's alone: EnvServingSet lists what was set or
// extended, so that the shim puts its environment back as the caller gave
// it (CallerEnv) before it starts anything. runc inherits the shim's
// environment, and runc with GOMAXPROCS=1 takes about 3.5 ms longer to
// create a container.
func servingEnv(env []string) []string {
	out := make([]string, 0, len(env)+3)
	var maxprocs, godebug bool
	var set []string
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, EnvServingSet+"="):
			continue // a stale one, from a caller that is itself a shim
		case strings.HasPrefix(kv, "GOMAXPROCS="):
			maxprocs = true
		case strings.HasPrefix(kv, "GODEBUG=") && !godebug:
			godebug = true
			if v := strings.TrimPrefix(kv, "GODEBUG="); !strings.Contains(v, "memprofilerate=") {
				set = append(set, "GODEBUG")
				if v == "" {
					kv = "GODEBUG=" + memProfileOff
				} else {
					kv += "," + memProfileOff
				}
			}
		}
		out = append(out, kv)
	}
	if !maxprocs {
		out = append(out, "GOMAXPROCS=1")
		set = append(set, "GOMAXPROCS")
	}
	if !godebug {
		out = append(out, "GODEBUG="+memProfileOff)
		set = append(set, "GODEBUG")
	}
	if len(set) > 0 {
		out = append(out, EnvServingSet+"="+strings.Join(set, ","))
	}
	return out
}

const memProfileOff = "memprofilerate=0"

// EnvServingSet lists the variables servingEnv set or extended for a
// serving shim.
const EnvServingSet = "PODBOX_SHIM_SERVING_ENV"

// CallerEnv is env (a serving shim's) as the caller of Bootstrap gave it:
// without the Go runtime settings servingEnv added, which EnvServingSet
// lists. With nothing listed it returns env unchanged.
func CallerEnv(env []string) []string {
	i := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, EnvServingSet+"=") })
	if i < 0 {
		return env
	}
	set := strings.Split(strings.TrimPrefix(env[i], EnvServingSet+"="), ",")
	out := make([]string, 0, len(env))
	for j, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case j == i:
			continue
		case k == "GOMAXPROCS" && slices.Contains(set, k):
			continue
		case k == "GODEBUG" && slices.Contains(set, k):
			if v == memProfileOff {
				continue
			}
			kv = "GODEBUG=" + strings.TrimSuffix(v, ","+memProfileOff)
		}
		out = append(out, kv)
	}
	return out
}
