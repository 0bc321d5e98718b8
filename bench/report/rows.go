package report

import "fmt"

// Verdict says whether a row met its target.
type Verdict string

const (
	Met         Verdict = "yes"
	Missed      Verdict = "**no**"
	NotMeasured Verdict = "not measured"
	Info        Verdict = "" // a row that has no target
)

func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// Row is one line of the table: a figure for podbox and its peer, their
// ratio, the target of issue #6 and whether it was met.
type Row struct {
	Figure string  `json:"figure"`
	Podbox string  `json:"podbox"`
	Peer   string  `json:"peer"`
	Ratio  string  `json:"ratio"`
	Target string  `json:"target"`
	Met    Verdict `json:"met"`
}

// Targets of issue #6.
const (
	targetReadyMs       = 10.0
	targetReadySpeedup  = 8.0
	targetJoinOverFloor = 1.2
	targetJoinSpeedup   = 3.0
	targetTeardownMs    = 10.0
	// Issue #16's decisions: shim + pause PSS per sandbox at the largest N
	// (100) ≤ 0.55× the peer's, an idle shim's anonymous memory ≤ 700 KiB,
	// and, instead of a parallel burst's p99 against the sequential p50
	// (which only a shared process could meet), the node's CPU time per
	// create ≤ 0.2× the peer's.
	targetMemoryRatio    = 0.55
	targetShimAnonKiB    = 700
	targetBurstCPURatio  = 0.2
	targetPauseAnonKiB   = 600.0
	targetBurstWallRatio = 5.0
	targetScaleP99       = 2.0 // p99 at the last window ÷ p50 at the first
	targetScaleTeardownS = 30.0
	// Issue #13's: images.
	targetJoinImageOverRootfs = 1.1
	targetJoinImageSpeedup    = 3.0
	targetPullRatio           = 1.0 // × ctr images pull
	// Issue #14's: a published port adds at most this to sandbox create.
	targetPortsOverPlainMs = 1.0
	// Issue #15: podbox play of a 3-container pod against crictl runp and
	// three create + start.
	targetPlaySpeedup = 5.0
	// Issue #16: through CRI, against the runc handler of the same
	// containerd.
	targetCRISpeedup     = 1.5
	targetCRIMemoryRatio = 0.6
)

func ms(v float64) string  { return fmt.Sprintf("%.1f ms", v) }
func kib(v float64) string { return fmt.Sprintf("%.0f KiB", v) }

// over is a cell of a with what it adds to plain: "10.2 ms (plain 9.8 ms:
// +0.4 ms)".
func over(a, plain float64) string {
	return fmt.Sprintf("%s (plain %s: %+.1f ms)", ms(a), ms(plain), a-plain)
}

// faster is how many times a is faster than b (b ÷ a), as a cell.
func faster(a, b float64) string {
	if a <= 0 {
		return ""
	}
	return fmt.Sprintf("%.1f× faster", b/a)
}

// Rows judges r against the targets, one row per figure, in a fixed order.
// A figure that was not measured still gets its row, marked NotMeasured, so
// that a missing phase is visible rather than silently absent.
func Rows(r *Result) []Row {
	var rows []Row
	add := func(row Row) { rows = append(rows, row) }
	missing := func(figure, target string) {
		add(Row{Figure: figure, Target: target, Met: NotMeasured})
	}

	// Sandbox ready.
	const readyTarget = "≤ 10 ms and ≥ 8× faster than crictl runp"
	pb, okP := r.series(FigReady, Podbox)
	peer, okR := r.series(FigReady, Peer)
	floor, okF := r.series(FigReady, Floor)
	if okP && okR {
		add(Row{Figure: "sandbox ready, p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: readyTarget, Met: verdict(pb.P50 <= targetReadyMs && peer.P50/pb.P50 >= targetReadySpeedup)})
		add(Row{Figure: "sandbox ready, p99", Podbox: ms(pb.P99), Peer: ms(peer.P99), Ratio: faster(pb.P99, peer.P99), Met: Info})
	} else {
		missing("sandbox ready, p50", readyTarget)
	}
	if okP && okF {
		add(Row{Figure: "sandbox ready, p50 vs floor (runc run -d + veth)", Podbox: ms(pb.P50), Peer: "floor " + ms(floor.P50),
			Ratio: fmt.Sprintf("%.2f× the floor", pb.P50/floor.P50), Met: Info})
	}

	// Join.
	pb, okP = r.series(FigJoin, Podbox)
	peer, okR = r.series(FigJoin, Peer)
	floor, okF = r.series(FigJoin, Floor)
	if okP && okR && okF {
		add(Row{Figure: "join (container start), p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: fmt.Sprintf("≤ 1.2× raw runc run -d of the same spec (%s: %.2f×) and ≥ 3× faster than crictl create+start", ms(floor.P50), pb.P50/floor.P50),
			Met:    verdict(pb.P50 <= targetJoinOverFloor*floor.P50 && peer.P50/pb.P50 >= targetJoinSpeedup)})
	} else {
		missing("join (container start), p50", "≤ 1.2× raw runc run -d of the same spec and ≥ 3× faster than crictl create+start")
	}

	// Join from an image.
	const joinImageTarget = "≤ 1.1× podbox run --rootfs of the same files and ≥ 3× faster than crictl create+start"
	pb, okP = r.series(FigJoinImage, Podbox)
	peer, okR = r.series(FigJoinImage, Peer)
	rootfs, okF := r.series(FigJoinImage, PodboxRootfs)
	if okP && okR && okF {
		add(Row{Figure: "join from an image, p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: fmt.Sprintf("≤ 1.1× podbox run --rootfs (%s: %.2f×) and ≥ 3× faster than crictl create+start", ms(rootfs.P50), pb.P50/rootfs.P50),
			Met:    verdict(pb.P50 <= targetJoinImageOverRootfs*rootfs.P50 && peer.P50/pb.P50 >= targetJoinImageSpeedup)})
	} else {
		missing("join from an image, p50", joinImageTarget)
	}

	// Pull.
	const pullTarget = "≤ 1.0× ctr images pull of the same image"
	pb, okP = r.series(FigPull, Podbox)
	peer, okR = r.series(FigPull, Peer)
	if okP && okR {
		add(Row{Figure: "pull of a 3-layer image, p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: fmt.Sprintf("%.2f×", pb.P50/peer.P50),
			Target: pullTarget, Met: verdict(pb.P50 <= targetPullRatio*peer.P50)})
	} else {
		missing("pull of a 3-layer image, p50", pullTarget)
	}

	// Teardown.
	pb, okP = r.series(FigTeardown, Podbox)
	peer, okR = r.series(FigTeardown, Peer)
	if okP && okR {
		add(Row{Figure: "teardown, p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: "≤ 10 ms", Met: verdict(pb.P50 <= targetTeardownMs)})
	} else {
		missing("teardown, p50", "≤ 10 ms")
	}

	// Published ports: create and removal with -p against a plain create
	// and removal in the same rounds, and against crictl runp and stopp +
	// rmp of a pod with a port mapping, portmap in the peer's chain.
	const portsTarget = "≤ +1 ms over plain sandbox create"
	ports, okP := r.series(FigPorts, PodboxPorts)
	plain, okF := r.series(FigPorts, Podbox)
	peer, okR = r.series(FigPorts, Peer)
	if okP && okF && okR {
		add(Row{Figure: "sandbox create -p, p50", Podbox: over(ports.P50, plain.P50), Peer: ms(peer.P50), Ratio: faster(ports.P50, peer.P50),
			Target: portsTarget, Met: verdict(ports.P50-plain.P50 <= targetPortsOverPlainMs)})
		add(Row{Figure: "sandbox create -p, p90", Podbox: over(ports.P90, plain.P90), Peer: ms(peer.P90), Ratio: faster(ports.P90, peer.P90), Met: Info})
	} else {
		missing("sandbox create -p, p50", portsTarget)
	}
	ports, okP = r.series(FigPortsTeardown, PodboxPorts)
	plain, okF = r.series(FigPortsTeardown, Podbox)
	peer, okR = r.series(FigPortsTeardown, Peer)
	if okP && okF && okR {
		add(Row{Figure: "teardown with ports, p50", Podbox: over(ports.P50, plain.P50), Peer: ms(peer.P50), Ratio: faster(ports.P50, peer.P50), Met: Info})
		add(Row{Figure: "teardown with ports, p90", Podbox: over(ports.P90, plain.P90), Peer: ms(peer.P90), Ratio: faster(ports.P90, peer.P90), Met: Info})
	} else {
		missing("teardown with ports, p50", "")
	}

	// A pod from a manifest.
	const playTarget = "≥ 5× faster than crictl runp + 3 × (create + start)"
	pb, okP = r.series(FigPlay, Podbox)
	peer, okR = r.series(FigPlay, Peer)
	if okP && okR {
		add(Row{Figure: "pod of 3 containers from a manifest, p50", Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: playTarget, Met: verdict(peer.P50/pb.P50 >= targetPlaySpeedup)})
	} else {
		missing("pod of 3 containers from a manifest, p50", playTarget)
	}

	// The CRI path: the podbox handler against runc's on one containerd.
	for _, c := range []struct{ ready, teardown, memory, polled, label string }{
		{FigCRIReady, FigCRITeardown, FigCRIMemory, FigCRIPolled, "containerd 1.6"},
		{FigCRI2Ready, FigCRI2Teardown, FigCRI2Memory, FigCRI2Polled, "containerd 2, sandboxer shim"},
	} {
		const readyTarget, memTarget = "≥ 1.5× faster than the runc handler", "≤ 0.6× the runc handler's"
		pb, okP = r.series(c.ready, Podbox)
		peer, okR = r.series(c.ready, Peer)
		if okP && okR {
			add(Row{Figure: "CRI pod ready (crictl runp), " + c.label + ", p50", Podbox: ms(pb.P50), Peer: "runc handler " + ms(peer.P50),
				Ratio: faster(pb.P50, peer.P50), Target: readyTarget, Met: verdict(peer.P50/pb.P50 >= targetCRISpeedup)})
		} else {
			missing("CRI pod ready (crictl runp), "+c.label+", p50", readyTarget)
		}
		pb, okP = r.series(c.teardown, Podbox)
		peer, okR = r.series(c.teardown, Peer)
		if okP && okR {
			add(Row{Figure: "CRI pod teardown (stopp + rmp), " + c.label + ", p50", Podbox: ms(pb.P50), Peer: "runc handler " + ms(peer.P50),
				Ratio: faster(pb.P50, peer.P50), Met: Info})
		}
		pb, okP = r.series(c.memory, Podbox)
		peer, okR = r.series(c.memory, Peer)
		if okP && okR {
			add(Row{Figure: "CRI memory per idle pod (PSS of its shim and children), " + c.label, Podbox: kib(pb.Mean), Peer: "runc handler " + kib(peer.Mean),
				Ratio: fmt.Sprintf("%.2f×", pb.Mean/peer.Mean), Target: memTarget, Met: verdict(pb.Mean <= targetCRIMemoryRatio*peer.Mean)})
		} else {
			missing("CRI memory per idle pod, "+c.label, memTarget)
		}
		pb, okP = r.series(c.polled, Podbox)
		peer, okR = r.series(c.polled, Peer)
		if okP && okR {
			add(Row{Figure: fmt.Sprintf("CRI memory per pod after %d rounds of statsp + inspectp, %s", r.Config.CRIPolls, c.label),
				Podbox: kib(pb.Mean), Peer: "runc handler " + kib(peer.Mean), Ratio: fmt.Sprintf("%.2f×", pb.Mean/peer.Mean), Met: Info})
		}
	}

	// Memory per idle sandbox: judged at the largest N, where what the
	// sandboxes share is spread thinnest.
	const memoryTarget = "≤ 0.55× containerd-shim-runc-v2 + pause"
	largest := 0
	for _, n := range r.Config.MemoryN {
		largest = max(largest, n)
	}
	for _, n := range r.Config.MemoryN {
		figure := fmt.Sprintf("memory per idle sandbox, N=%d (PSS shim + pause)", n)
		pb, okP = r.series(FigMemory(n), Podbox)
		peer, okR = r.series(FigMemory(n), Peer)
		if !okP || !okR {
			if n == largest {
				missing(figure, memoryTarget)
			}
			continue
		}
		row := Row{Figure: figure, Podbox: kib(pb.Mean), Peer: kib(peer.Mean), Ratio: fmt.Sprintf("%.2f×", pb.Mean/peer.Mean), Met: Info}
		if n == largest {
			row.Target, row.Met = memoryTarget, verdict(pb.Mean <= targetMemoryRatio*peer.Mean)
		}
		add(row)
	}
	if anon, ok := r.series(FigShimAnon, Podbox); ok {
		row := Row{Figure: "shim alone, anonymous", Podbox: kib(anon.Mean), Target: "≤ 700 KiB", Met: verdict(anon.Mean <= targetShimAnonKiB)}
		if peer, ok := r.series(FigShimAnon, Peer); ok {
			row.Peer, row.Ratio = kib(peer.Mean), fmt.Sprintf("%.2f×", anon.Mean/peer.Mean)
		}
		add(row)
	} else {
		missing("shim alone, anonymous", "≤ 700 KiB")
	}
	if anon, ok := r.series(FigPauseAnon, Podbox); ok {
		add(Row{Figure: "pause alone, anonymous", Podbox: kib(anon.Mean), Target: "≤ 600 KiB", Met: verdict(anon.Mean <= targetPauseAnonKiB)})
	} else {
		missing("pause alone, anonymous", "≤ 600 KiB")
	}
	if pss, ok := r.series(FigPausePSS, Podbox); ok {
		add(Row{Figure: "pause alone, PSS", Podbox: kib(pss.Mean), Met: Info})
	}

	// Parallel creates.
	seq, okSeq := r.series(FigReady, Podbox)
	pb, okP = r.series(FigBurst, Podbox)
	peer, okR = r.series(FigBurst, Peer)
	if okP && okR && okSeq {
		add(Row{Figure: fmt.Sprintf("%d parallel creates, p50", r.Config.Burst), Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50), Met: Info})
		add(Row{Figure: fmt.Sprintf("%d parallel creates, p99", r.Config.Burst), Podbox: ms(pb.P99), Peer: ms(peer.P99), Ratio: faster(pb.P99, peer.P99),
			Target: fmt.Sprintf("(was ≤ 10× the sequential p50: %s, %.1f×; retired, see the CPU row)", ms(seq.P50), pb.P99/seq.P50), Met: Info})
	}
	pb, okP = r.series(FigBurstWall, Podbox)
	peer, okR = r.series(FigBurstWall, Peer)
	if okP && okR {
		add(Row{Figure: fmt.Sprintf("%d parallel creates, wall time (median of %d rounds)", r.Config.Burst, pb.N), Podbox: ms(pb.P50), Peer: ms(peer.P50), Ratio: faster(pb.P50, peer.P50),
			Target: "≥ 5× shorter than the peer's", Met: verdict(peer.P50/pb.P50 >= targetBurstWallRatio)})
	} else {
		missing(fmt.Sprintf("%d parallel creates, wall time", r.Config.Burst), "≥ 5× shorter than the peer's")
	}

	// Why the burst takes as long as it does: with every core busy, the
	// wall time is at least the CPU all creates need, shared by the cores.
	pb, okP = r.series(FigBurstCPU, Podbox)
	peer, okR = r.series(FigBurstCPU, Peer)
	if okP && okR {
		podbox := ms(pb.P50)
		if cores := r.Machine.Cores; cores > 0 {
			podbox += fmt.Sprintf(" (%d × it ÷ %d cores = %s)", r.Config.Burst, cores, ms(pb.P50*float64(r.Config.Burst)/float64(cores)))
		}
		add(Row{Figure: fmt.Sprintf("%d parallel creates, node CPU time per create (median of %d rounds)", r.Config.Burst, pb.N),
			Podbox: podbox, Peer: ms(peer.P50), Ratio: fmt.Sprintf("%.2f×", pb.P50/peer.P50),
			Target: "≤ 0.2× the peer's", Met: verdict(pb.P50 <= targetBurstCPURatio*peer.P50)})
	} else {
		missing(fmt.Sprintf("%d parallel creates, node CPU time per create", r.Config.Burst), "≤ 0.2× the peer's")
	}

	rows = append(rows, scaleRows(r.Scale)...)
	return rows
}

// scaleRows judges the scale run (podbox alone: the peer is not scaled).
func scaleRows(s Scale) []Row {
	if s.Target == 0 {
		return []Row{{Figure: "scale", Target: "all ready", Met: NotMeasured}}
	}
	rows := []Row{{
		Figure: fmt.Sprintf("%d sandboxes: ready", s.Target),
		Podbox: fmt.Sprintf("%d / %d", s.Reached, s.Target),
		Target: "all ready", Met: verdict(s.Reached == s.Target),
	}}
	if len(s.Windows) >= 2 {
		// Judged below the VM's memory step: past it every page the node
		// touches costs its host several times as much (README), which is
		// the machine's, not the count's. The step shows as the bend.
		first, last := s.Windows[0], s.Windows[len(s.Windows)-1]
		for i := len(s.Windows) - 1; i > 0 && s.BendAt > 0 && last.From >= s.BendAt; i-- {
			last = s.Windows[i-1]
		}
		ratio := last.Create.P99 / first.Create.P50
		target := "≤ 2×"
		if last.To < s.Windows[len(s.Windows)-1].To {
			target = fmt.Sprintf("≤ 2× (below the memory step at %d)", s.BendAt)
		}
		rows = append(rows, Row{
			Figure: fmt.Sprintf("%d sandboxes: create p99 at %d-%d vs p50 at 1-%d", s.Target, last.From, last.To, first.To),
			Podbox: ms(last.Create.P99) + " vs " + ms(first.Create.P50), Ratio: fmt.Sprintf("%.2f×", ratio),
			Target: target, Met: verdict(s.Reached == s.Target && ratio <= targetScaleP99),
		})
	}
	if len(s.Checkpoints) > 0 {
		c := s.Checkpoints[len(s.Checkpoints)-1]
		rows = append(rows, Row{
			Figure: fmt.Sprintf("%d sandboxes: memory", c.Count),
			Podbox: fmt.Sprintf("%.0f MiB PSS (%.0f KiB each); node %.0f MiB", float64(c.PSSKiB)/1024, float64(c.PSSKiB)/float64(max(c.Count, 1)), float64(c.NodeUsedKiB)/1024),
			Met:    Info,
		}, Row{
			Figure: fmt.Sprintf("%d sandboxes: CPU of the idle shims + pauses", c.Count),
			Podbox: fmt.Sprintf("%.1f%% of a core", c.IdleCPUPercent),
			Met:    Info,
		})
	}
	if s.Teardown.N > 0 || len(s.TeardownFailures) > 0 {
		podbox := fmt.Sprintf("%.1f s (p50 %s, p99 %s)", s.TeardownSeconds, ms(s.Teardown.P50), ms(s.Teardown.P99))
		if n := len(s.TeardownFailures); n > 0 {
			podbox += fmt.Sprintf("; %d of %d failed", n, s.Reached)
		}
		rows = append(rows, Row{
			Figure: fmt.Sprintf("%d sandboxes: teardown of all", s.Reached),
			Podbox: podbox,
			Target: "≤ 30 s", Met: verdict(s.TeardownSeconds <= targetScaleTeardownS && len(s.TeardownFailures) == 0),
		})
	}
	return rows
}
