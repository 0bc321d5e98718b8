package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/bench/mem"
	"github.com/podbox/podbox/bench/report"
	"github.com/podbox/podbox/bench/stats"
	"github.com/podbox/podbox/netsetup"
)

// samples collects durations per series of one figure.
type samples map[string][]time.Duration

func (b *bench) addFigure(id, title string, s samples) {
	f := report.Figure{ID: id, Title: title, Unit: "ms", Series: map[string]stats.Summary{}}
	for k, v := range s {
		f.Series[k] = stats.Summarize(stats.Millis(v))
	}
	b.res.Figures = append(b.res.Figures, f)
}

func (b *bench) addKiB(id, title string, s map[string][]float64) {
	f := report.Figure{ID: id, Title: title, Unit: "KiB", Series: map[string]stats.Summary{}}
	for k, v := range s {
		f.Series[k] = stats.Summarize(v)
	}
	b.res.Figures = append(b.res.Figures, f)
}

// rotate returns the order of the three subjects for round i, so that no
// subject always runs first (after the others' teardown) or last.
func rotate(i int) []string {
	return rotated(i, report.Podbox, report.Peer, report.Floor)
}

// rotated returns the order of the subjects who for round i: each runs
// first once every len(who) rounds.
func rotated(i int, who ...string) []string {
	k := i % len(who)
	return slices.Concat(who[k:], who[:k])
}

// ready measures sandbox ready and teardown, interleaved: each round
// creates one podbox sandbox, one CRI pod and one floor sandbox, then
// removes them, in an order that rotates.
func (b *bench) ready(ctx context.Context) error {
	ready, teardown := samples{}, samples{}
	for i := -b.cfg.warmup; i < b.cfg.runs; i++ {
		ids := map[string]string{}
		order := rotate(i + b.cfg.warmup)
		var d time.Duration
		var err error
		for _, who := range order {
			var id string
			switch who {
			case report.Podbox:
				id, d, err = b.pb.Create(ctx)
			case report.Peer:
				id, d, err = b.cri.RunPod(ctx)
			case report.Floor:
				id = fmt.Sprintf("floor-%d", i+b.cfg.warmup)
				d, err = b.fl.Ready(ctx, id)
			}
			if err != nil {
				break
			}
			ids[who] = id
			if i >= 0 {
				ready[who] = append(ready[who], d)
			}
		}
		// Remove what this round made even when a create failed: the
		// next phase must start from an empty node.
		for _, who := range order {
			if ids[who] == "" {
				continue
			}
			var rerr error
			switch who {
			case report.Podbox:
				d, rerr = b.pb.Remove(ctx, ids[who])
			case report.Peer:
				d, rerr = b.cri.RemovePod(ctx, ids[who])
			case report.Floor:
				d, rerr = b.fl.Remove(ctx, ids[who])
			}
			err = errors.Join(err, rerr)
			if rerr == nil && i >= 0 {
				teardown[who] = append(teardown[who], d)
			}
		}
		if err != nil {
			return err
		}
	}
	b.addFigure(report.FigReady, "sandbox ready: podbox sandbox create / crictl runp / runc run -d + veth", ready)
	b.addFigure(report.FigTeardown, "teardown: podbox sandbox rm -f / crictl stopp + rmp / runc kill + delete + veth", teardown)
	return nil
}

// join measures a container's start in a ready sandbox: `podbox run -d`,
// `crictl create` + `crictl start`, raw `runc run -d` into a floor pause's
// namespaces, all of `sleep 3600` from the same busybox files. The floor
// runs the spec podbox gave runc for the same command, taken from a first
// podbox container (not timed), so podbox and floor start the same
// container and differ only by podbox's own work.
func (b *bench) join(ctx context.Context) (err error) {
	cmd := []string{"sleep", "3600"}
	sb, pod, done, err := b.sandboxAndPod(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, done()) }()
	podboxSpec, err := b.podboxSpec(ctx, sb, cmd)
	if err != nil {
		return err
	}
	const floorSB = "floor-join"
	if _, err := b.fl.Ready(ctx, floorSB); err != nil {
		return err
	}
	defer func() {
		if _, rerr := b.fl.Remove(ctx, floorSB); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	floorSpec, err := b.fl.JoinSpec(podboxSpec, floorSB)
	if err != nil {
		return err
	}

	join := samples{}
	for i := -b.cfg.warmup; i < b.cfg.runs; i++ {
		for _, who := range rotate(i + b.cfg.warmup) {
			var d time.Duration
			var err error
			switch who {
			case report.Podbox:
				var cid string
				if cid, d, err = b.pb.Run(ctx, sb, b.rootfs, cmd...); err == nil {
					err = b.pb.RemoveContainer(ctx, cid)
				}
			case report.Peer:
				var cid string
				if cid, d, err = b.cri.StartContainer(ctx, pod, append([]string{"/bin/" + cmd[0]}, cmd[1:]...)...); err == nil {
					err = b.cri.RemoveContainer(ctx, cid)
				}
			case report.Floor:
				id := fmt.Sprintf("floor-ctr-%d", i+b.cfg.warmup)
				if d, err = b.fl.Run(ctx, id, floorSB, floorSpec); err == nil {
					err = b.fl.RemoveContainer(ctx, id)
				}
			}
			if err != nil {
				return err
			}
			if i >= 0 {
				join[who] = append(join[who], d)
			}
		}
	}
	b.addFigure(report.FigJoin, "join: podbox run -d / crictl create + start / runc run -d of podbox's spec", join)
	return nil
}

// sandboxAndPod makes a podbox sandbox and a CRI pod for a phase that
// starts containers in them; done removes both.
func (b *bench) sandboxAndPod(ctx context.Context) (sb, pod string, done func() error, err error) {
	if sb, _, err = b.pb.Create(ctx); err != nil {
		return "", "", nil, err
	}
	if pod, _, err = b.cri.RunPod(ctx); err != nil {
		_, rerr := b.pb.Remove(ctx, sb)
		return "", "", nil, errors.Join(err, rerr)
	}
	return sb, pod, func() error {
		_, perr := b.cri.RemovePod(ctx, pod)
		_, serr := b.pb.Remove(ctx, sb)
		return errors.Join(perr, serr)
	}, nil
}

// podboxSpec runs cmd once in podbox sandbox sb and returns the spec the
// shim gave runc for it; the container is removed again.
func (b *bench) podboxSpec(ctx context.Context, sb string, cmd []string) (*specs.Spec, error) {
	cid, _, err := b.pb.Run(ctx, sb, b.rootfs, cmd...)
	if err != nil {
		return nil, err
	}
	spec, err := b.pb.Spec(cid)
	return spec, errors.Join(err, b.pb.RemoveContainer(ctx, cid))
}

// memory measures the PSS of what each idle sandbox keeps (podbox: shim +
// pause; peer: containerd-shim-runc-v2 + pause) with N sandboxes of one
// kind at a time, for each N of -mem; and the pause alone.
func (b *bench) memory(ctx context.Context) error {
	var errs []error
	for _, n := range b.cfg.memN {
		// A removal that fails after the reading does not void it: the
		// figure is kept and the failure reported next to it.
		perSandbox := map[string][]float64{}
		if err := b.podboxMemory(ctx, n, perSandbox); err != nil {
			errs = append(errs, fmt.Errorf("podbox, N=%d: %w", n, err))
		}
		if err := b.peerMemory(ctx, n, perSandbox); err != nil {
			errs = append(errs, fmt.Errorf("peer, N=%d: %w", n, err))
		}
		if ctx.Err() != nil {
			break
		}
		b.addKiB(report.FigMemory(n), fmt.Sprintf("PSS per idle sandbox with %d sandboxes (shim + pause)", n), perSandbox)
		logf("memory N=%d: podbox %.0f KiB, peer %.0f KiB per sandbox", n, mean(perSandbox[report.Podbox]), mean(perSandbox[report.Peer]))
		if b.res.Figure(report.FigPausePSS) == nil {
			// The first N (1 by default): the pause alone pays its
			// text, as a pod's only pause would.
			b.addKiB(report.FigPausePSS, "PSS of one idle pause", map[string][]float64{
				report.Podbox: perSandbox["podbox-pause"], report.Peer: perSandbox["containerd-runc-pause"]})
			b.addKiB(report.FigPauseAnon, "anonymous memory of one idle pause", map[string][]float64{
				report.Podbox: perSandbox["podbox-pause-anon"], report.Peer: perSandbox["containerd-runc-pause-anon"]})
			b.addKiB(report.FigShimAnon, "anonymous memory of one idle shim", map[string][]float64{
				report.Podbox: perSandbox["podbox-shim-anon"], report.Peer: perSandbox["containerd-runc-shim-anon"]})
		}
	}
	return errors.Join(errs...)
}

func mean(v []float64) float64 { return stats.Summarize(v).Mean }

// settle is how long memory readings may take to stop moving.
const settle = 5 * time.Second

func (b *bench) podboxMemory(ctx context.Context, n int, out map[string][]float64) (err error) {
	var ids []string
	defer func() {
		for _, id := range ids {
			if _, rerr := b.pb.Remove(ctx, id); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	var pids []int
	for range n {
		id, _, err := b.pb.Create(ctx)
		if err != nil {
			return err
		}
		ids = append(ids, id)
		shim, pause, err := b.pb.Processes(id)
		if err != nil {
			return err
		}
		pids = append(pids, shim, pause)
	}
	rs, err := mem.Settled(pids, settle)
	if err != nil {
		return err
	}
	for i := 0; i < len(rs); i += 2 {
		shim, pause := rs[i], rs[i+1]
		out[report.Podbox] = append(out[report.Podbox], float64(shim.PSS+pause.PSS))
		out["podbox-shim"] = append(out["podbox-shim"], float64(shim.PSS))
		out["podbox-pause"] = append(out["podbox-pause"], float64(pause.PSS))
		out["podbox-pause-anon"] = append(out["podbox-pause-anon"], float64(pause.Anonymous))
		out["podbox-shim-anon"] = append(out["podbox-shim-anon"], float64(shim.Anonymous))
	}
	return nil
}

func (b *bench) peerMemory(ctx context.Context, n int, out map[string][]float64) (err error) {
	var ids []string
	defer func() {
		for _, id := range ids {
			if _, rerr := b.cri.RemovePod(ctx, id); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	for range n {
		id, _, err := b.cri.RunPod(ctx)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	// A shim of a pod removed just before may still be on its way out;
	// give it a moment rather than count it.
	var procs map[int][]int
	for deadline := time.Now().Add(settle); ; {
		procs = b.cri.Processes()
		if len(procs) == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(procs) != n {
		return fmt.Errorf("%d pods run by %d containerd-shim-runc-v2 processes %v, want one each", n, len(procs), procs)
	}
	var pids []int
	for shim, kids := range procs {
		if len(kids) != 1 {
			return fmt.Errorf("containerd-shim-runc-v2 %d has children %v, want the pod's pause alone", shim, kids)
		}
		pids = append(pids, shim, kids[0])
	}
	rs, err := mem.Settled(pids, settle)
	if err != nil {
		return err
	}
	for i := 0; i < len(rs); i += 2 {
		shim, pause := rs[i], rs[i+1]
		out[report.Peer] = append(out[report.Peer], float64(shim.PSS+pause.PSS))
		out["containerd-runc-shim"] = append(out["containerd-runc-shim"], float64(shim.PSS))
		out["containerd-runc-pause"] = append(out["containerd-runc-pause"], float64(pause.PSS))
		out["containerd-runc-pause-anon"] = append(out["containerd-runc-pause-anon"], float64(pause.Anonymous))
		out["containerd-runc-shim-anon"] = append(out["containerd-runc-shim-anon"], float64(shim.Anonymous))
	}
	return nil
}

// burst creates -burst sandboxes at once (one command each), for podbox
// and then for the peer, and removes them; -burst-rounds times, so that one
// unlucky moment on a shared machine does not make the figure. Every create
// is a sample of FigBurst, every round's wall time one of FigBurstWall, and
// the node's busy CPU time over the round, per create, one of FigBurstCPU:
// with every core busy, the wall time (and so the p99) can be no shorter
// than creates × CPU per create ÷ cores.
func (b *bench) burst(ctx context.Context) error {
	each, wall, cpu := samples{}, samples{}, samples{}
	for round := range b.cfg.burstRounds {
		for _, who := range []string{report.Podbox, report.Peer} {
			r, err := b.burstRound(ctx, who)
			each[who] = append(each[who], r.each...)
			wall[who] = append(wall[who], r.wall)
			cpu[who] = append(cpu[who], r.cpuEach)
			logf("%d parallel creates, %s, round %d: %s wall, %s CPU per create", b.cfg.burst, who, round+1,
				r.wall.Round(time.Millisecond), r.cpuEach.Round(100*time.Microsecond))
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", who, round+1, err)
			}
		}
	}
	b.addFigure(report.FigBurst, fmt.Sprintf("each of %d parallel creates", b.cfg.burst), each)
	b.addFigure(report.FigBurstWall, fmt.Sprintf("wall time of %d parallel creates", b.cfg.burst), wall)
	b.addFigure(report.FigBurstCPU, fmt.Sprintf("node CPU time per create, over %d parallel creates", b.cfg.burst), cpu)
	return nil
}

// burstResult is one round of burst: the duration of each create, the wall
// time of all, and the node's busy CPU time over that wall time divided by
// the number of creates.
type burstResult struct {
	each          []time.Duration
	wall, cpuEach time.Duration
}

// burstRound is one round of burst for who, and what failed (creates,
// removals, or reading the node's CPU time).
func (b *bench) burstRound(ctx context.Context, who string) (burstResult, error) {
	create := func() (string, time.Duration, error) {
		if who == report.Podbox {
			return b.pb.Create(ctx)
		}
		return b.cri.RunPod(ctx)
	}
	ids := make([]string, b.cfg.burst)
	ds := make([]time.Duration, b.cfg.burst)
	errs := make([]error, b.cfg.burst)
	var wg sync.WaitGroup
	busy, busyErr := mem.NodeBusy()
	start := time.Now()
	for i := range b.cfg.burst {
		wg.Go(func() { ids[i], ds[i], errs[i] = create() })
	}
	wg.Wait()
	r := burstResult{each: ds, wall: time.Since(start)}
	if busyErr == nil {
		var after time.Duration
		after, busyErr = mem.NodeBusy()
		r.cpuEach = (after - busy) / time.Duration(b.cfg.burst)
	}
	errs = append(errs, busyErr)
	for _, id := range ids {
		if id == "" {
			continue
		}
		var err error
		if who == report.Podbox {
			_, err = b.pb.Remove(ctx, id)
		} else {
			_, err = b.cri.RemovePod(ctx, id)
		}
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// scale creates podbox sandboxes one after the other up to -scale,
// recording each create and, every few, the memory of all; then removes
// them all, timing each removal. A create that fails ends the climb (and
// is the recorded failure); the removal still runs.
func (b *bench) scale(ctx context.Context) error {
	s := &b.res.Scale
	s.Target = b.cfg.scale
	base, err := mem.AvailableKiB()
	if err != nil {
		return err
	}
	var ids []string
	var pids []int
	for k := 1; k <= b.cfg.scale; k++ {
		id, d, err := b.pb.Create(ctx)
		if err != nil {
			s.Failure = fmt.Sprintf("create %d: %v", k, err)
			logf("scale: %s", s.Failure)
			break
		}
		ids = append(ids, id)
		s.CreateMs = append(s.CreateMs, float64(d)/float64(time.Millisecond))
		shim, pause, err := b.pb.Processes(id)
		if err != nil {
			s.Failure = fmt.Sprintf("sandbox %d: %v", k, err)
			break
		}
		pids = append(pids, shim, pause)
		if k%b.cfg.every == 0 || k == b.cfg.scale {
			c := report.Checkpoint{Count: k}
			for _, pid := range pids {
				r, err := mem.Read(pid)
				if err != nil {
					return fmt.Errorf("scale at %d: %w", k, err)
				}
				c.PSSKiB += r.PSS
			}
			if avail, err := mem.AvailableKiB(); err == nil {
				c.NodeUsedKiB = base - avail
			}
			if c.IdleCPUPercent, err = idleCPU(pids, b.cfg.idleWindow); err != nil {
				return fmt.Errorf("scale at %d: %w", k, err)
			}
			s.Checkpoints = append(s.Checkpoints, c)
			logf("scale: %d sandboxes, last create %.1f ms, PSS %d MiB, node %d MiB, idle CPU %.1f%%", k, s.CreateMs[k-1], c.PSSKiB/1024, c.NodeUsedKiB/1024, c.IdleCPUPercent)
		}
	}
	s.Reached = len(ids)
	s.Windows = report.Windows(s.CreateMs, b.cfg.scaleWindow)
	s.BendAt, s.Bend = report.Bend(s.Windows)

	logf("scale: removing %d sandboxes", len(ids))
	var rm []time.Duration
	start := time.Now()
	for _, id := range ids {
		d, err := b.pb.Remove(ctx, id)
		if err != nil {
			s.TeardownFailures = append(s.TeardownFailures, err.Error())
			continue
		}
		rm = append(rm, d)
	}
	s.TeardownSeconds = time.Since(start).Seconds()
	s.Teardown = stats.Summarize(stats.Millis(rm))
	logf("scale: removed in %.1f s", s.TeardownSeconds)
	var errs []error
	if s.Failure != "" {
		errs = append(errs, fmt.Errorf("reached %d of %d sandboxes: %s", s.Reached, s.Target, s.Failure))
	}
	if n := len(s.TeardownFailures); n > 0 {
		errs = append(errs, fmt.Errorf("%d of %d removals failed, first: %s", n, len(ids), s.TeardownFailures[0]))
	}
	return errors.Join(errs...)
}

// idleCPU returns the CPU pids used over window, in percent of one core.
func idleCPU(pids []int, window time.Duration) (float64, error) {
	total := func() (time.Duration, error) {
		var sum time.Duration
		for _, pid := range pids {
			d, err := mem.CPUTime(pid)
			if err != nil {
				return 0, err
			}
			sum += d
		}
		return sum, nil
	}
	before, err := total()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	time.Sleep(window)
	after, err := total()
	if err != nil {
		return 0, err
	}
	return 100 * float64(after-before) / float64(time.Since(start)), nil
}

// microBench runs the IPAM and netsetup micro-benchmarks with go test and
// records every result line. They run in an empty namespace of their own:
// their test main fails a run during which its caller's namespace changed,
// and the node's does (a bridge loses its carrier when its last port goes)
// even when nothing touches it.
func (b *bench) microBench(ctx context.Context) (err error) {
	pin := filepath.Join(b.work, "micro-netns")
	if err := netsetup.CreateNetNS(pin); err != nil {
		return err
	}
	defer func() {
		if rerr := netsetup.RemoveNetNS(pin); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	pkgs := []string{"./netsetup/ipam/", "./netsetup/"}
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchtime", b.cfg.microBenchtime, "-count", "1"}, pkgs...)
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + pin, "--", "go"}, args...)...)
	cmd.Dir = b.cfg.repo
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	b.res.Micro = parseBench(out.String())
	for _, m := range b.res.Micro {
		logf("micro: %s %s %v", m.Package, m.Name, m.Metrics)
	}
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	if len(b.res.Micro) == 0 {
		return fmt.Errorf("go %s printed no benchmark results:\n%s", strings.Join(args, " "), out.String())
	}
	return nil
}

// parseBench reads `go test -bench` output: "pkg:" lines name the package
// of the Benchmark lines after them, which are NAME-PROCS ITER then pairs
// of VALUE UNIT.
func parseBench(out string) []report.Micro {
	var res []report.Micro
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/podbox/podbox/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		iter, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix
			}
		}
		m := report.Micro{Package: pkg, Name: name, Iter: iter, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			m.Metrics[f[i+1]] = v
		}
		res = append(res, m)
	}
	return res
}
