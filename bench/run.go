package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podbox/podbox/bench/floor"
	"github.com/podbox/podbox/bench/peer"
	"github.com/podbox/podbox/bench/plot"
	"github.com/podbox/podbox/bench/report"
	"github.com/podbox/podbox/bench/subject"
	"github.com/podbox/podbox/bench/tb"
	"github.com/podbox/podbox/integration/containerd"
	"github.com/podbox/podbox/integration/rootfs"
	"github.com/podbox/podbox/integration/testnode"
	"github.com/podbox/podbox/netsetup"
	"github.com/podbox/podbox/sandbox"
)

// Image references of the run; they live only in the throwaway
// containerd.
const (
	pauseRef = "localhost/podbox/pause:bench"
	imageRef = "docker.io/podbox/busybox:bench"
)

// bench is one run in progress.
type bench struct {
	cfg    config
	pb     *subject.Podbox
	cri    *peer.CRI
	fl     *floor.Floor
	rootfs string
	// imageTar is the busybox image of rootfs's files, as an archive
	// (what the peer imported, and podbox loads).
	imageTar string
	work     string // the run's directory, removed at the end
	res      *report.Result
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// run sets up podbox, the peer and the floor in the node, runs every phase
// and tears everything down. A phase that fails is recorded in the result
// and the next phase still runs; the returned error says whether any
// failed.
func run(ctx context.Context, cfg config, pin, work string) (*report.Result, error) {
	started := time.Now()
	tag := filepath.Base(work) // unique per run: names cgroups
	b := &bench{cfg: cfg, work: work, res: &report.Result{
		Started: started.UTC(),
		Config: report.Config{Runs: cfg.runs, Scale: cfg.scale, Burst: cfg.burst, Rounds: cfg.burstRounds, MemoryN: cfg.memN, Micro: cfg.micro, CRIPolls: cfg.criPolls,
			Phases: cfg.phases},
	}}
	fail := func(phase string, err error) {
		msg := fmt.Sprintf("%s: %v", phase, err)
		logf("FAILED %s", msg)
		b.res.Errors = append(b.res.Errors, msg)
	}

	// Everything registered on t (the containerd daemon, temporary
	// directories) is undone by t.Close, last first; podbox's and the
	// floor's own cleanups run before it.
	t := tb.New("bench", work, os.Stderr)
	defer func() {
		for _, e := range t.Close() {
			b.res.Errors = appendNew(b.res.Errors, "cleanup: "+e)
		}
	}()

	logf("work directory %s, node namespace %s", work, pin)
	if err := netsetup.InNetNS(pin, bringLoUp); err != nil {
		return b.res, err
	}
	// podbox's state root lives where its default (/run/podbox) does: under
	// /run, a runtime directory whose IP leases need no fsync (see
	// ipam.Volatile). The work directory may be anywhere.
	pbRoot, err := os.MkdirTemp("/run", "podbox-bench-")
	if err != nil {
		return b.res, err
	}
	defer func() {
		if err := os.RemoveAll(pbRoot); err != nil {
			b.res.Errors = appendNew(b.res.Errors, "cleanup: "+err.Error())
		}
	}()
	logf("podbox state root %s", pbRoot)
	b.pb, err = subject.New(cfg.bin, pbRoot, tag+"-podbox")
	if err != nil {
		return b.res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, m := range b.pb.Cleanup(cctx) {
			logf("cleanup: %s", m)
		}
	}()
	b.fl = &floor.Floor{Runc: "runc", Dir: filepath.Join(work, "floor"), CgroupParent: tag + "-floor",
		Net: netsetup.Network{Bridge: "pbxfloor0", Subnet: netip.MustParsePrefix("10.90.0.0/16"), StateRoot: filepath.Join(work, "floor")}}
	if err := b.fl.Prepare(filepath.Join(cfg.bin, "podbox-pause")); err != nil {
		return b.res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, m := range b.fl.Cleanup(cctx) {
			logf("cleanup: %s", m)
		}
	}()
	b.rootfs = filepath.Join(work, "rootfs")
	if err := rootfs.BuildBusybox(b.rootfs, "bench\n"); err != nil {
		return b.res, err
	}

	// The peer: containerd with podbox's pause as its sandbox image and a
	// busybox image, both made here (nothing can be pulled).
	logf("starting containerd (peer)")
	pauseTar := filepath.Join(work, "pause.tar")
	if _, _, err := b.pb.Cmd(ctx, "pause-image", "--ref", pauseRef, "-o", pauseTar); err != nil {
		return b.res, err
	}
	if err := tb.Run(func() { b.imageTar = containerd.BusyboxImage(t, imageRef) }); err != nil {
		return b.res, err
	}
	peerT := tb.New("containerd", work, os.Stderr)
	peerCgroup := tag + "-peer"
	closePeer := func() {
		for _, e := range peerT.Close() {
			b.res.Errors = appendNew(b.res.Errors, "peer cleanup: "+e)
		}
		if err := (sandbox.Cgroup{Path: peerCgroup}).Remove(); err != nil {
			b.res.Errors = append(b.res.Errors, fmt.Sprintf("peer cleanup: cgroup %s: %v", peerCgroup, err))
		}
	}
	defer closePeer() // a no-op when already closed
	// The peer's containerd also has podbox's shim as handler "podbox",
	// for the CRI phase; its state lives apart from the CLI's.
	criPodbox := b.criPodboxOptions(work, tag)
	defer func() {
		// What podbox's shim made under CRI goes with the pods; its
		// cgroup parent stays, empty, until here.
		if err := (sandbox.Cgroup{Path: tag + "-cri-podbox"}).Remove(); err != nil {
			b.res.Errors = append(b.res.Errors, fmt.Sprintf("CRI cleanup: cgroup %s-cri-podbox: %v", tag, err))
		}
	}()
	b.cri, err = peer.Start(peerT, &testnode.Node{Path: pin}, peer.Options{
		PauseRef: pauseRef, PauseTar: pauseTar, ImageRef: imageRef, ImageTar: b.imageTar, CgroupParent: peerCgroup,
		PodboxShimDir: cfg.bin, PodboxEnv: criPodbox})
	if err != nil {
		return b.res, err
	}
	b.res.Machine = machine(ctx, b)

	phases := []struct {
		key, name string
		fn        func(context.Context) error
	}{
		{"ready", "sandbox ready and teardown", b.ready},
		{"join", "join", b.join},
		{"join-image", "join from an image", b.joinImage},
		{"pull", "pull", b.pull},
		{"memory", "memory", b.memory},
		{"burst", "parallel creates", b.burst},
		{"play", "a pod from a manifest", b.play},
		{"cri", "CRI path, containerd 1.6", func(ctx context.Context) error { return b.criPath(ctx, b.cri, criFigs16) }},
		// Last of the peer's: it changes the peer's CNI chain while it
		// runs, and a failed restore must not reach another phase.
		{"ports", "published ports", b.ports},
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			break
		}
		if !cfg.selected(p.key) {
			continue
		}
		logf("phase: %s", p.name)
		if err := p.fn(ctx); err != nil {
			fail(p.name, err)
		}
	}
	// The peer is done: stop containerd before the scale run, so that an
	// idle daemon does not share the two cores with podbox.
	logf("stopping containerd")
	closePeer()
	if ctx.Err() == nil && cfg.selected("cri") {
		// containerd 2 with podbox's sandboxer = "shim", on its own.
		logf("phase: CRI path, containerd 2")
		if err := b.cri2(ctx, pin, work, tag, pauseTar, criPodbox); err != nil {
			fail("CRI path, containerd 2", err)
		}
	}
	if ctx.Err() == nil && cfg.scale > 0 && cfg.selected("scale") {
		logf("phase: scale to %d", cfg.scale)
		if err := b.scale(ctx); err != nil {
			fail("scale", err)
		}
	}
	if ctx.Err() == nil && cfg.micro && cfg.selected("micro") {
		logf("phase: micro-benchmarks")
		if err := b.microBench(ctx); err != nil {
			fail("micro-benchmarks", err)
		}
	}
	if ctx.Err() != nil {
		fail("run", ctx.Err())
	}
	if len(b.res.Errors) > 0 {
		return b.res, fmt.Errorf("%d failures: %s", len(b.res.Errors), strings.Join(b.res.Errors, "; "))
	}
	return b.res, nil
}

func appendNew(list []string, s string) []string {
	for _, v := range list {
		if strings.HasSuffix(s, v) {
			return list
		}
	}
	return append(list, s)
}

// bringLoUp runs inside the node namespace (netsetup.InNetNS).
func bringLoUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node lo: %w", err)
	}
	return netlink.LinkSetUp(lo)
}

// writeResults writes the JSON, the Markdown table and the plot, puts the
// table into readme's marked section (if readme is set), and prints it.
func writeResults(dir, readme string, r *report.Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.Table = report.Rows(r)
	var errs []error
	errs = append(errs, report.WriteJSON(filepath.Join(dir, "latest.json"), r))
	errs = append(errs, report.WriteMarkdown(filepath.Join(dir, "latest.md"), r))
	if len(r.Scale.CreateMs) > 0 {
		m := r.Machine
		errs = append(errs, plot.Scale(filepath.Join(dir, "scale.png"), r.Scale, fmt.Sprintf("%d cores, %s", m.Cores, m.Kernel)))
	}
	md := report.Markdown(r)
	if readme != "" {
		errs = append(errs, report.UpdateReadme(readme, md))
	}
	fmt.Println()
	fmt.Print(md)
	return errors.Join(errs...)
}

// machine describes the node the run is on.
func machine(ctx context.Context, b *bench) report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Podbox: b.pb.Version(ctx), LoadStart: loadavg()}
	if cpu, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(cpu), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if v, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(v))
	}
	if v, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(string(v), "MemTotal: %d kB", &m.MemoryKiB)
	}
	if v, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(v), "\n") {
			if s, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(s, `"`)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "runc", "--version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) >= 3 {
			m.Runc = f[2]
		}
	}
	m.Containerd, m.Crictl = b.cri.Versions(ctx)
	switch {
	case exists("/sys/fs/cgroup/cgroup.controllers"):
		m.CgroupMode = "v2"
	case exists("/sys/fs/cgroup/unified"):
		m.CgroupMode = "v1 (hybrid)"
	default:
		m.CgroupMode = "v1"
	}
	return m
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
