package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/integration/leakcheck"
	"github.com/podbox/podbox/integration/testnode"
)

// The soak: create → run → exec → rm cycles of a sandbox, with the leak
// check after every so many, while one resident sandbox lives through them
// all and answers an exec every cycle. It records what a user would watch
// on a node that has run for a while: the time per cycle, the CLI's peak
// memory per command, the memory of each cycle's shim, and the memory,
// descriptors and threads of the long-lived shim. A leaked resource (a
// process, mount, link, lease, cgroup or state file after a cycle's rm, a
// descriptor in the resident shim) fails it; times and memory are figures
// to read, not assertions, on a shared machine.
//
// PODBOX_SOAK_CYCLES (default 50) and PODBOX_SOAK_CHECK_EVERY (default 25)
// size it; `make soak` runs 1000 and checks every 100. PODBOX_SOAK_OUT names
// a file for the figures as JSON.
func TestSoak(t *testing.T) {
	cycles, every := envInt(t, "PODBOX_SOAK_CYCLES", 50), envInt(t, "PODBOX_SOAK_CHECK_EVERY", 25)
	n := newCLINode(t)
	timeBin := testnode.RequireBinary(t, "time") // GNU time, for the CLI's peak memory
	fs := busybox(t)
	n.sandbox("--name", "resident")
	n.mustRun("run", "-d", "--sandbox", "resident", "--name", "keep", "--rootfs", fs, "--", "sleep", "100000")
	resident := shimPID(t, n, "resident")
	// Warm: the node's bridge, the pause root and the first lease pool
	// exist before the snapshot, as they outlive every sandbox.
	baseline := leakcheck.Take(n.leaks)

	rep := soakReport{Cycles: cycles, CheckEvery: every, LoadBefore: loadAvg()}
	rep.Resident = append(rep.Resident, sampleProc(t, resident, 0))
	cmds := map[string]*cmdFigures{}
	var cycleTimes []time.Duration
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		began := time.Now()
		step := func(name, want string, args ...string) string {
			t.Helper()
			r := n.measured(timeBin, args...)
			if r.code != 0 || (want != "" && r.stdout != want) {
				t.Fatalf("cycle %d: podbox %s: exit %d, stdout %q, stderr %q", i, strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			c := cmds[name]
			if c == nil {
				c = &cmdFigures{}
				cmds[name] = c
			}
			c.add(r)
			return r.stdout
		}
		id := strings.TrimSpace(step("sandbox create", "", "sandbox", "create", "--name", "soak"))
		step("run -d", "", "run", "-d", "--sandbox", "soak", "--name", "c", "--rootfs", fs, "--", "sleep", "1000")
		step("exec", "soak\n", "exec", "c", "--", "cat", "/etc/hostname")
		step("exec (resident)", "", "exec", "keep", "--", "true")
		rep.CycleShims = append(rep.CycleShims, sampleProc(t, recordedShim(t, n, id), i))
		step("sandbox rm -f", "", "sandbox", "rm", "-f", "soak")
		cycleTimes = append(cycleTimes, time.Since(began))

		if i%every == 0 || i == cycles {
			if leaks := baseline.Leaks(); len(leaks) > 0 {
				t.Fatalf("after cycle %d:\n  %s", i, strings.Join(leaks, "\n  "))
			}
			rep.LeakChecks++
			rep.Resident = append(rep.Resident, sampleProc(t, resident, i))
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.LoadAfter = loadAvg()
	rep.CycleMs = percentilesMs(cycleTimes)
	rep.Commands = map[string]cmdSummary{}
	for name, c := range cmds {
		rep.Commands[name] = c.summary()
	}
	rep.summarize()

	// A descriptor the resident shim keeps per exec is a leak, not noise:
	// after as many execs as cycles, it would show as that many. A few
	// stay open or close as the shim's idle work comes and goes.
	first, last := rep.Resident[0], rep.Resident[len(rep.Resident)-1]
	if last.FDs > first.FDs+4 {
		t.Errorf("the resident shim held %d descriptors before the soak and %d after %d execs: %v", first.FDs, last.FDs, cycles, rep.Resident)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("soak figures:\n%s", rep.table())
	if out := os.Getenv("PODBOX_SOAK_OUT"); out != "" {
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// measure is one CLI command's outcome and cost.
type measure struct {
	code           int
	stdout, stderr string
	wall           time.Duration
	maxRSSKiB      int64 // the CLI's peak resident set, from wait4's rusage
}

// measured runs podbox args on a thread inside the node (no nsenter before
// it) under GNU time, which reports the ru_maxrss that wait4 gave it for
// the CLI. Not this process's own wait4: Go starts a child with vfork
// semantics, sharing this process's memory until the exec, and the kernel
// counts that memory's peak into the child's ru_maxrss, so every command
// would read as big as the test binary.
func (n *cliNode) measured(timeBin string, args ...string) measure {
	n.t.Helper()
	rss := filepath.Join(n.t.TempDir(), "maxrss")
	cmd := exec.Command(timeBin, append([]string{"-f", "%M", "-o", rss, n.podbox}, args...)...)
	cmd.Env = n.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var err error
	began := time.Now()
	n.inNode(func() { err = cmd.Run() })
	m := measure{wall: time.Since(began), stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		n.t.Fatalf("podbox %s: %v", strings.Join(args, " "), err)
	}
	m.code = cmd.ProcessState.ExitCode()
	b, err := os.ReadFile(rss)
	if err != nil {
		n.t.Fatalf("podbox %s: %v", strings.Join(args, " "), err)
	}
	// The last line: a failed command's status comes before it.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if m.maxRSSKiB, err = strconv.ParseInt(lines[len(lines)-1], 10, 64); err != nil {
		n.t.Fatalf("podbox %s: time wrote %q", strings.Join(args, " "), b)
	}
	return m
}

func shimPID(t *testing.T, n *cliNode, ref string) int {
	t.Helper()
	return int(n.inspect(ref)["shimPid"].(float64))
}

// recordedShim reads the shim's pid from sandbox id's record, without a
// CLI command that would add to the cycle.
func recordedShim(t *testing.T, n *cliNode, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.root, "sandboxes", id, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		ShimPID int `json:"shimPid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.ShimPID == 0 {
		t.Fatalf("sandbox %s: record without a shim pid: %v %s", id, err, b)
	}
	return rec.ShimPID
}

// procSample is a process's memory, descriptors and threads at a cycle.
type procSample struct {
	Cycle   int   `json:"cycle"`
	RSSKiB  int64 `json:"rssKiB"`
	AnonKiB int64 `json:"anonKiB"`
	FDs     int   `json:"fds"`
	Threads int64 `json:"threads"`
}

func sampleProc(t *testing.T, pid, cycle int) procSample {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("shim %d: %v", pid, err)
	}
	s := procSample{Cycle: cycle}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		x, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = x
		case "RssAnon":
			s.AnonKiB = x
		case "Threads":
			s.Threads = x
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("shim %d: %v", pid, err)
	}
	s.FDs = len(fds)
	return s
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cmdFigures collects one command's wall times and CLI peaks.
type cmdFigures struct {
	walls []time.Duration
	rss   []int64
}

func (c *cmdFigures) add(m measure) {
	c.walls = append(c.walls, m.wall)
	c.rss = append(c.rss, m.maxRSSKiB)
}

type cmdSummary struct {
	WallMs     [3]float64 `json:"wallMsP50P90Max"`
	MaxRSSKiB  [3]int64   `json:"cliMaxRSSKiBP50P90Max"`
	FirstRSS   int64      `json:"cliMaxRSSKiBFirstTenthMedian"`
	LastRSS    int64      `json:"cliMaxRSSKiBLastTenthMedian"`
	Executions int        `json:"runs"`
}

func (c *cmdFigures) summary() cmdSummary {
	s := cmdSummary{WallMs: percentilesMs(c.walls), Executions: len(c.rss)}
	sorted := slices.Clone(c.rss)
	slices.Sort(sorted)
	s.MaxRSSKiB = [3]int64{pick(sorted, 0.5), pick(sorted, 0.9), sorted[len(sorted)-1]}
	s.FirstRSS, s.LastRSS = tenthMedians(c.rss)
	return s
}

// tenthMedians are the medians of the first and the last tenth of xs (at
// least one value each): growth over a soak, robust against a noisy run.
func tenthMedians(xs []int64) (first, last int64) {
	k := max(1, len(xs)/10)
	a, b := slices.Clone(xs[:k]), slices.Clone(xs[len(xs)-k:])
	slices.Sort(a)
	slices.Sort(b)
	return pick(a, 0.5), pick(b, 0.5)
}

func pick[T any](sorted []T, q float64) T {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func percentilesMs(ds []time.Duration) [3]float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return [3]float64{ms(pick(s, 0.5)), ms(pick(s, 0.9)), ms(s[len(s)-1])}
}

// soakReport is the soak's figures, as make soak writes them.
type soakReport struct {
	Cycles     int                   `json:"cycles"`
	CheckEvery int                   `json:"leakCheckEvery"`
	LeakChecks int                   `json:"leakChecksPassed"`
	Seconds    float64               `json:"seconds"`
	CycleMs    [3]float64            `json:"cycleMsP50P90Max"`
	LoadBefore string                `json:"loadAverageBefore"`
	LoadAfter  string                `json:"loadAverageAfter"`
	Commands   map[string]cmdSummary `json:"commands"`
	// CycleShims are each cycle's shim, sampled while its sandbox lives
	// (after the run and the exec); Shim* summarize them.
	CycleShims      []procSample `json:"-"`
	ShimRSSFirstKiB int64        `json:"cycleShimRSSKiBFirstTenthMedian"`
	ShimRSSLastKiB  int64        `json:"cycleShimRSSKiBLastTenthMedian"`
	ShimAnonFirst   int64        `json:"cycleShimAnonKiBFirstTenthMedian"`
	ShimAnonLast    int64        `json:"cycleShimAnonKiBLastTenthMedian"`
	// Resident is the long-lived shim before the soak and at every leak
	// check.
	Resident []procSample `json:"residentShim"`
}

func (r *soakReport) summarize() {
	var rss, anon []int64
	for _, s := range r.CycleShims {
		rss, anon = append(rss, s.RSSKiB), append(anon, s.AnonKiB)
	}
	r.ShimRSSFirstKiB, r.ShimRSSLastKiB = tenthMedians(rss)
	r.ShimAnonFirst, r.ShimAnonLast = tenthMedians(anon)
}

func (r *soakReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d cycles in %.1f s (load %s → %s); cycle p50 %.1f ms, p90 %.1f ms, max %.1f ms; %d leak checks, no leak\n",
		r.Cycles, r.Seconds, r.LoadBefore, r.LoadAfter, r.CycleMs[0], r.CycleMs[1], r.CycleMs[2], r.LeakChecks)
	names := make([]string, 0, len(r.Commands))
	for name := range r.Commands {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Fprintf(&b, "%-18s %10s %10s %22s %22s\n", "command", "p50 ms", "p90 ms", "CLI max RSS p50/max", "first→last tenth")
	for _, name := range names {
		c := r.Commands[name]
		fmt.Fprintf(&b, "%-18s %10.1f %10.1f %13d/%d KiB %13d→%d KiB\n", name, c.WallMs[0], c.WallMs[1], c.MaxRSSKiB[0], c.MaxRSSKiB[2], c.FirstRSS, c.LastRSS)
	}
	fmt.Fprintf(&b, "cycle shims (alive, after run+exec): RSS %d→%d KiB, anon %d→%d KiB (first→last tenth, medians)\n",
		r.ShimRSSFirstKiB, r.ShimRSSLastKiB, r.ShimAnonFirst, r.ShimAnonLast)
	for _, s := range r.Resident {
		fmt.Fprintf(&b, "resident shim at cycle %5d: RSS %d KiB, anon %d KiB, %d fds, %d threads\n", s.Cycle, s.RSSKiB, s.AnonKiB, s.FDs, s.Threads)
	}
	return b.String()
}
