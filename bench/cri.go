package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/podbox/podbox/bench/mem"
	"github.com/podbox/podbox/bench/peer"
	"github.com/podbox/podbox/bench/report"
	"github.com/podbox/podbox/bench/tb"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/runtime/memtrim"
	"github.com/podbox/podbox/sandbox"
)

// criFigures name one containerd's CRI figures.
type criFigures struct {
	ready, teardown, memory, polled, label string
}

var (
	criFigs16 = criFigures{report.FigCRIReady, report.FigCRITeardown, report.FigCRIMemory, report.FigCRIPolled, "containerd 1.6"}
	criFigs2  = criFigures{report.FigCRI2Ready, report.FigCRI2Teardown, report.FigCRI2Memory, report.FigCRI2Polled, "containerd 2 (podbox: sandboxer shim)"}
)

// criPath measures issue #16's CRI path on one containerd, podbox's handler
// against runc's, interleaved: `crictl runp` until the pod is ready, its
// teardown (`crictl stopp` + `rmp`), and the PSS per idle pod (the shim and
// everything below it) with -cri-pods pods of one handler at a time (15,
// as the hand measurement took).
func (b *bench) criPath(ctx context.Context, c *peer.CRI, f criFigures) error {
	handlers := map[string]string{report.Podbox: peer.PodboxHandler, report.Peer: peer.Handler}
	ready, teardown := samples{}, samples{}
	runs := min(b.cfg.runs, 30)
	for i := -b.cfg.warmup; i < runs; i++ {
		for _, w := range rotated(i+b.cfg.warmup, report.Podbox, report.Peer) {
			id, d, err := c.RunPodWith(ctx, handlers[w])
			if err != nil {
				return fmt.Errorf("%s handler: %w", handlers[w], err)
			}
			td, err := c.RemovePod(ctx, id)
			if err != nil {
				return fmt.Errorf("%s handler: %w", handlers[w], err)
			}
			if i >= 0 {
				ready[w] = append(ready[w], d)
				teardown[w] = append(teardown[w], td)
			}
		}
	}
	b.addFigure(f.ready, "CRI pod ready, "+f.label+": crictl runp --runtime podbox / --runtime runc", ready)
	b.addFigure(f.teardown, "CRI pod teardown, "+f.label+": crictl stopp + rmp, podbox / runc handler", teardown)

	perPod, polled := map[string][]float64{}, map[string][]float64{}
	for _, w := range []string{report.Podbox, report.Peer} {
		if err := b.criMemory(ctx, c, handlers[w], w, perPod, polled); err != nil {
			return err
		}
	}
	b.addKiB(f.memory, fmt.Sprintf("PSS per idle CRI pod with %d pods, %s (the shim and its children)", b.cfg.criPods, f.label), perPod)
	b.addKiB(f.polled, fmt.Sprintf("PSS per CRI pod with %d pods after %d rounds of crictl statsp + inspectp, %s", b.cfg.criPods, b.cfg.criPolls, f.label), polled)
	logf("CRI %s: runp p50 podbox %v, runc %v; PSS per pod podbox %.0f KiB, runc %.0f KiB; after polling %.0f KiB, %.0f KiB", f.label,
		median(ready[report.Podbox]), median(ready[report.Peer]), mean(perPod[report.Podbox]), mean(perPod[report.Peer]),
		mean(polled[report.Podbox]), mean(polled[report.Peer]))
	return nil
}

// It then polls the pods as a kubelet does, only faster: -cri-polls rounds
// of `crictl statsp` (each shim's stats) and `crictl inspectp` of every pod,
// and measures again once they have been quiet for a while (polled): a
// shim's memory after the requests of its life, not just after its create.
func (b *bench) criMemory(ctx context.Context, c *peer.CRI, handler, series string, out, polled map[string][]float64) (err error) {
	shimBinary := "containerd-shim-runc-v2"
	if handler == peer.PodboxHandler {
		shimBinary = "containerd-shim-podbox-v1"
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			if _, rerr := c.RemovePod(ctx, id); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	for range b.cfg.criPods {
		id, _, err := c.RunPodWith(ctx, handler)
		if err != nil {
			return fmt.Errorf("%s handler: %w", handler, err)
		}
		ids = append(ids, id)
	}
	// A shim of a pod removed just before may still be on its way out.
	var procs map[int][]int
	for deadline := time.Now().Add(settle); ; {
		procs = c.ProcessesOf(shimBinary)
		if len(procs) == b.cfg.criPods || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(procs) != b.cfg.criPods {
		return fmt.Errorf("%d pods of handler %s run by %d %s processes, want one each", b.cfg.criPods, handler, len(procs), shimBinary)
	}
	var pids []int
	var groups [][2]int // index range in pids of each pod's processes
	for shim, kids := range procs {
		start := len(pids)
		pids = append(append(pids, shim), kids...)
		groups = append(groups, [2]int{start, len(pids)})
	}
	measure := func(into map[string][]float64) error {
		rs, err := mem.Settled(pids, settle)
		if err != nil {
			return err
		}
		for _, g := range groups {
			total := 0
			for _, r := range rs[g[0]:g[1]] {
				total += r.PSS
			}
			into[series] = append(into[series], float64(total))
		}
		return nil
	}
	if err := measure(out); err != nil {
		return err
	}
	for range b.cfg.criPolls {
		if _, _, err := c.Cmd(ctx, "statsp"); err != nil {
			return fmt.Errorf("%s handler: %w", handler, err)
		}
		if _, _, err := c.Cmd(ctx, append([]string{"inspectp"}, ids...)...); err != nil {
			return fmt.Errorf("%s handler: %w", handler, err)
		}
	}
	// Quiet for longer than a podbox shim waits before it trims
	// (memtrim.DefaultQuiet), as between a kubelet's polls.
	time.Sleep(memtrim.DefaultQuiet + time.Second)
	return measure(polled)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// criPodboxOptions is the environment containerd hands podbox's shim for
// the CRI phase: a state root of its own under the run's directory, its
// sandboxes' cgroups under a parent of their own, the pause from the
// build. The root and cgroup are removed with the run (criCleanup).
func (b *bench) criPodboxOptions(work, tag string) []string {
	return []string{
		"PODBOX_ROOT=" + filepath.Join(work, "cri-podbox"),
		"PODBOX_CGROUP_PARENT=" + tag + "-cri-podbox",
		"PODBOX_PAUSE=" + filepath.Join(b.cfg.bin, "podbox-pause"),
	}
}

// cri2 runs the CRI phase on containerd 2 with podbox's sandboxer = "shim",
// a daemon of its own started for it and stopped after.
func (b *bench) cri2(ctx context.Context, pin, work, tag, pauseTar string, env []string) (err error) {
	t := tb.New("containerd2", work, os.Stderr)
	defer func() {
		for _, e := range t.Close() {
			err = errors.Join(err, fmt.Errorf("containerd 2 cleanup: %s", e))
		}
		if cerr := (sandbox.Cgroup{Path: tag + "-peer2"}).Remove(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	c, err := peer.Start(t, &testnode.Node{Path: pin}, peer.Options{
		PauseRef: pauseRef, PauseTar: pauseTar, ImageRef: imageRef, ImageTar: b.imageTar, CgroupParent: tag + "-peer2",
		PodboxShimDir: b.cfg.bin, PodboxEnv: env, V2: true})
	if err != nil {
		return err
	}
	return b.criPath(ctx, c, criFigs2)
}
