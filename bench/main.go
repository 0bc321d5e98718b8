// Command bench measures podbox against containerd 1.6 + runc (CRI, bridge
// CNI, driven by crictl) on the same machine in one run, as issue #6
// defines: sandbox ready, join, teardown, memory per idle sandbox, scale,
// parallel creates, and the netsetup/IPAM micro-benchmarks; and what later
// issues add: join from an image and pull (#13), published ports (#14),
// each next to the peer's way of doing it. It writes
// results/latest.json, results/latest.md and results/scale.png and prints
// the table.
//
// Everything runs inside a node network namespace the program creates and
// removes: the first process makes the namespace, then re-executes itself
// under `nsenter --net=PIN`, so the measuring process and every command it
// starts (podbox, crictl, runc, containerd) live in the node without paying
// for an nsenter each. The machine's own network namespace is never
// changed. Whatever a run starts it removes, also when a phase fails.
//
//	bench [-runs 60] [-scale 1000] [-burst 32] [-mem 1,10,100] [-micro] [-phases ready,ports] [-bin bin] [-out bench/results]
//
// Run it as root (make bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podbox/podbox/netsetup"
)

// Environment of the re-executed child: the node namespace's pin and the
// run's work directory.
const (
	envNode    = "PODBOX_BENCH_NODE"
	envWorkdir = "PODBOX_BENCH_WORKDIR"
)

// config is the run's flags.
type config struct {
	bin, out, repo     string
	readme             string
	runs, warmup       int
	scale, burst       int
	burstRounds        int
	memN               []int
	pullMiB            []int // the pull image's layers, MiB each
	micro              bool
	microBenchtime     string
	scaleWindow, every int
	idleWindow         time.Duration
	// criPods is how many idle pods of each handler the CRI memory
	// figures hold at once.
	criPods int
	// criPolls is how many rounds of crictl statsp + inspectp the CRI
	// pods get before the second memory figure.
	criPolls int
	// phases are the phases to run (keys of phaseKeys); nil is all.
	phases []string
}

// phaseKeys names every phase for -phases, in the order a run takes them.
var phaseKeys = []string{"ready", "join", "join-image", "pull", "memory", "burst", "play", "cri", "ports", "scale", "micro"}

// selected reports whether the run includes the phase named key.
func (c config) selected(key string) bool {
	return c.phases == nil || slices.Contains(c.phases, key)
}

// parsePhases reads -phases: phase keys separated by commas; empty is all.
func parsePhases(v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains(phaseKeys, s) {
			return nil, fmt.Errorf("-phases %q: unknown phase %q (phases: %s)", v, s, strings.Join(phaseKeys, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// positiveList parses a flag's comma-separated positive numbers.
func positiveList(flag, v string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want positive numbers separated by commas", flag, v)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.bin, "bin", "bin", "directory holding podbox, containerd-shim-podbox-v1 and podbox-pause (make build)")
	fs.StringVar(&c.out, "out", "bench/results", "directory for latest.json, latest.md and scale.png")
	fs.StringVar(&c.repo, "repo", ".", "podbox checkout, for the micro-benchmarks (go test -bench)")
	fs.StringVar(&c.readme, "readme", "", "README whose marked benchmark section gets the new table (empty: none)")
	fs.IntVar(&c.runs, "runs", 60, "samples per latency figure (sandbox ready, join, teardown), interleaved")
	fs.IntVar(&c.warmup, "warmup", 2, "unrecorded rounds before the latency samples")
	fs.IntVar(&c.scale, "scale", 1000, "podbox sandboxes to create in the scale run")
	fs.IntVar(&c.burst, "burst", 32, "sandboxes created at once in the concurrency run")
	fs.IntVar(&c.burstRounds, "burst-rounds", 3, "rounds of the concurrency run")
	fs.IntVar(&c.criPods, "cri-pods", 15, "idle pods of each handler for the CRI memory figures")
	fs.IntVar(&c.criPolls, "cri-polls", 100, "rounds of crictl statsp + inspectp of the idle CRI pods before their memory is measured again")
	fs.DurationVar(&c.idleWindow, "idle-window", time.Second, "how long the scale run watches its idle sandboxes' CPU at each checkpoint")
	mem := fs.String("mem", "1,10,100", "numbers of idle sandboxes for the memory figures")
	pull := fs.String("pull-mib", "6,10,14", "the pull figure's image: one layer of random bytes per size, in MiB")
	fs.BoolVar(&c.micro, "micro", true, "run the netsetup and IPAM micro-benchmarks")
	phases := fs.String("phases", "", "run only these phases, separated by commas ("+strings.Join(phaseKeys, ", ")+"); empty: all")
	fs.StringVar(&c.microBenchtime, "micro-benchtime", "1s", "go test -benchtime of the micro-benchmarks")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.memN, err = positiveList("-mem", *mem); err != nil {
		return c, err
	}
	if c.pullMiB, err = positiveList("-pull-mib", *pull); err != nil {
		return c, err
	}
	if c.phases, err = parsePhases(*phases); err != nil {
		return c, err
	}
	if c.runs < 1 || c.criPolls < 0 || c.scale < 0 || c.burst < 1 || c.burstRounds < 1 || c.warmup < 0 {
		return c, errors.New("-runs, -burst and -burst-rounds must be at least 1, -scale, -warmup and -cri-polls at least 0")
	}
	c.scaleWindow = max(1, c.scale/20)
	c.every = c.scaleWindow
	for _, p := range []*string{&c.bin, &c.out, &c.repo, &c.readme} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if os.Getenv(envNode) != "" {
		os.Exit(child(cfg))
	}
	os.Exit(parent())
}

// parent makes the node namespace and the work directory, runs the child
// in the namespace, and removes both whatever the child did.
func parent() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (network namespaces, runc, containerd)")
		return 2
	}
	work, err := os.MkdirTemp("", "podbox-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	pin := filepath.Join(work, "node-netns")
	code := 1
	if err := netsetup.CreateNetNS(pin); err != nil {
		fmt.Fprintln(os.Stderr, "bench: node namespace:", err)
	} else {
		code = runChild(pin, work)
		if err := netsetup.RemoveNetNS(pin); err != nil {
			fmt.Fprintln(os.Stderr, "bench: remove node namespace:", err)
			code = 1
		}
	}
	if err := os.RemoveAll(work); err != nil {
		fmt.Fprintln(os.Stderr, "bench: remove work directory:", err)
		code = 1
	}
	return code
}

// runChild re-executes this program inside the node namespace. ^C reaches
// the child too (same process group), which then cleans up; the parent
// only waits for it.
func runChild(pin, work string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + pin, "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), envNode+"="+pin, envWorkdir+"="+work)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return max(ee.ExitCode(), 1)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// child runs the benchmark inside the node namespace.
func child(cfg config) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pin, work := os.Getenv(envNode), os.Getenv(envWorkdir)
	if err := checkInNode(pin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	start := time.Now()
	res, err := run(ctx, cfg, pin, work)
	if res != nil {
		// Cleanup included: run's deferred teardown has finished.
		res.Seconds = time.Since(start).Seconds()
		res.Machine.LoadEnd = loadavg()
		if err == nil && len(res.Errors) > 0 {
			err = fmt.Errorf("cleanup: %s", strings.Join(res.Errors, "; "))
		}
		if werr := writeResults(cfg.out, cfg.readme, res); werr != nil {
			fmt.Fprintln(os.Stderr, "bench:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// checkInNode refuses to run unless this process is in the namespace
// pinned at pin: nothing below may ever touch the machine's own network.
func checkInNode(pin string) error {
	var self, node syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return err
	}
	if err := syscall.Stat(pin, &node); err != nil {
		return fmt.Errorf("node namespace %s: %w", pin, err)
	}
	if self.Ino != node.Ino || self.Dev != node.Dev {
		return fmt.Errorf("not running in the node namespace %s (refusing to touch the machine's own network)", pin)
	}
	return nil
}
