package report

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podbox/podbox/bench/stats"
)

func sum(vs ...float64) stats.Summary { return stats.Summarize(vs) }

// sample is a run where podbox meets every target but the memory at N=10.
func sample() *Result {
	r := &Result{
		Machine: Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.1.0", MemoryKiB: 24 << 20, Podbox: "v0", Runc: "1.1.5", Containerd: "1.6.20", Crictl: "v1.34.0", Go: "go1.26", OS: "Debian 12", CgroupMode: "v1"},
		Config:  Config{Runs: 3, Scale: 4, Burst: 2, MemoryN: []int{1, 10}},
		Started: time.Date(2026, 11, 24, 22, 0, 0, 0, time.UTC),
		Figures: []Figure{
			{ID: FigReady, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(8, 9, 10), Peer: sum(80, 84, 90), Floor: sum(4, 5, 6)}},
			{ID: FigJoin, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(11, 12), Peer: sum(40, 50), Floor: sum(10, 10)}},
			{ID: FigJoinImage, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(12, 13), Peer: sum(40, 50), PodboxRootfs: sum(11, 12)}},
			{ID: FigPull, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(300, 320), Peer: sum(400, 420)}},
			{ID: FigTeardown, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(7), Peer: sum(70)}},
			{ID: FigPorts, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(9, 10, 12), PodboxPorts: sum(9.5, 10.5, 13), Peer: sum(95, 100, 140)}},
			{ID: FigPortsTeardown, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(7, 8), PodboxPorts: sum(8, 9), Peer: sum(80, 90)}},
			{ID: FigMemory(1), Unit: "KiB", Series: map[string]stats.Summary{Podbox: sum(1000), Peer: sum(4000)}},
			{ID: FigMemory(10), Unit: "KiB", Series: map[string]stats.Summary{Podbox: sum(3000, 3000), Peer: sum(4000, 4000)}},
			{ID: FigPauseAnon, Unit: "KiB", Series: map[string]stats.Summary{Podbox: sum(500)}},
			{ID: FigPausePSS, Unit: "KiB", Series: map[string]stats.Summary{Podbox: sum(700)}},
			{ID: FigBurst, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(20, 30), Peer: sum(500, 900)}},
			{ID: FigBurstWall, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(35, 30, 90), Peer: sum(950, 1000, 900)}},
			{ID: FigBurstCPU, Unit: "ms", Series: map[string]stats.Summary{Podbox: sum(12, 14, 13), Peer: sum(52, 50, 54)}},
		},
		Scale: Scale{Target: 4, Reached: 4, CreateMs: []float64{9, 10, 11, 12}, TeardownSeconds: 0.04, Teardown: sum(10, 10, 10, 10),
			Checkpoints: []Checkpoint{{Count: 4, PSSKiB: 4096, NodeUsedKiB: 8192}}},
	}
	r.Scale.Windows = Windows(r.Scale.CreateMs, 2)
	r.Table = Rows(r)
	return r
}

func TestRowsJudgeTargets(t *testing.T) {
	r := sample()
	got := map[string]Row{}
	for _, row := range r.Table {
		got[row.Figure] = row
	}
	tests := []struct {
		figure string
		met    Verdict
		podbox string
		peer   string
		ratio  string
	}{
		{"sandbox ready, p50", Met, "9.0 ms", "84.0 ms", "9.3× faster"},
		{"sandbox ready, p99", Info, "10.0 ms", "90.0 ms", "9.0× faster"},
		{"join (container start), p50", Met, "11.0 ms", "40.0 ms", "3.6× faster"},
		{"join from an image, p50", Met, "12.0 ms", "40.0 ms", "3.3× faster"},
		{"pull of a 3-layer image, p50", Met, "300.0 ms", "400.0 ms", "0.75×"},
		{"teardown, p50", Met, "7.0 ms", "70.0 ms", "10.0× faster"},
		{"sandbox create -p, p50", Met, "10.5 ms (plain 10.0 ms: +0.5 ms)", "100.0 ms", "9.5× faster"},
		{"sandbox create -p, p90", Info, "13.0 ms (plain 12.0 ms: +1.0 ms)", "140.0 ms", "10.8× faster"},
		{"teardown with ports, p50", Info, "8.0 ms (plain 7.0 ms: +1.0 ms)", "80.0 ms", "10.0× faster"},
		{"teardown with ports, p90", Info, "9.0 ms (plain 8.0 ms: +1.0 ms)", "90.0 ms", "10.0× faster"},
		{"memory per idle sandbox, N=1 (PSS shim + pause)", Info, "1000 KiB", "4000 KiB", "0.25×"},
		{"memory per idle sandbox, N=10 (PSS shim + pause)", Missed, "3000 KiB", "4000 KiB", "0.75×"},
		{"pause alone, anonymous", Met, "500 KiB", "", ""},
		{"2 parallel creates, p99", Info, "30.0 ms", "900.0 ms", "30.0× faster"},
		{"2 parallel creates, wall time (median of 3 rounds)", Met, "35.0 ms", "950.0 ms", "27.1× faster"},
		// 2 creates × 13 ms ÷ 2 cores: the least wall time the CPU allows.
		{"2 parallel creates, node CPU time per create (median of 3 rounds)", Missed, "13.0 ms (2 × it ÷ 2 cores = 13.0 ms)", "52.0 ms", "0.25×"},
		{"4 sandboxes: ready", Met, "4 / 4", "", ""},
		{"4 sandboxes: create p99 at 3-4 vs p50 at 1-2", Met, "12.0 ms vs 9.0 ms", "", "1.33×"},
		{"4 sandboxes: teardown of all", Met, "0.0 s (p50 10.0 ms, p99 10.0 ms)", "", ""},
	}
	for _, tt := range tests {
		row, ok := got[tt.figure]
		if !ok {
			t.Errorf("no row %q; rows: %+v", tt.figure, r.Table)
			continue
		}
		if row.Met != tt.met || row.Podbox != tt.podbox || row.Peer != tt.peer || row.Ratio != tt.ratio {
			t.Errorf("row %q = %+v, want met %q podbox %q peer %q ratio %q", tt.figure, row, tt.met, tt.podbox, tt.peer, tt.ratio)
		}
	}
	r.Machine.Cores = 1
	cpuRow := "2 parallel creates, node CPU time per create (median of 3 rounds)"
	rows := Rows(r)
	if i := slices.IndexFunc(rows, func(row Row) bool { return row.Figure == cpuRow }); i < 0 {
		t.Errorf("on one core, no row %q", cpuRow)
	} else if got := rows[i].Podbox; got != "13.0 ms (2 × it ÷ 1 cores = 26.0 ms)" {
		t.Errorf("on one core, row %q = %q, want the CPU of both creates", cpuRow, got)
	}
}

func TestRowsMissTargets(t *testing.T) {
	r := sample()
	r.Figures[0].Series[Podbox] = sum(12)  // ready p50 above 10 ms
	r.Figures[1].Series[Podbox] = sum(13)  // join 1.3× the floor
	r.Figures[2].Series[Podbox] = sum(14)  // join from an image 1.22× --rootfs
	r.Figures[3].Series[Podbox] = sum(450) // pull slower than ctr's
	// -p adds 1.2 ms to the plain create's 10 ms.
	r.Figure(FigPorts).Series[PodboxPorts] = sum(11.2)
	r.Scale.Reached = 3
	r.Scale.Failure = "create 4: no free address"
	r.Table = Rows(r)
	for _, fig := range []string{"sandbox ready, p50", "join (container start), p50", "join from an image, p50", "pull of a 3-layer image, p50",
		"sandbox create -p, p50", "4 sandboxes: ready", "4 sandboxes: create p99 at 3-4 vs p50 at 1-2"} {
		found := false
		for _, row := range r.Table {
			if row.Figure == fig {
				found = true
				if row.Met != Missed {
					t.Errorf("row %q: met %q, want %q", fig, row.Met, Missed)
				}
			}
		}
		if !found {
			t.Errorf("no row %q", fig)
		}
	}
	if md := Markdown(r); !strings.Contains(md, "Scale stopped at 3 sandboxes: create 4: no free address") {
		t.Errorf("Markdown does not report the scale failure:\n%s", md)
	}
}

func TestRowsNotMeasured(t *testing.T) {
	r := &Result{Config: Config{Burst: 32, MemoryN: []int{100}}}
	rows := Rows(r)
	want := []string{"sandbox ready, p50", "join (container start), p50", "join from an image, p50",
		"pull of a 3-layer image, p50", "teardown, p50", "sandbox create -p, p50", "teardown with ports, p50", "pod of 3 containers from a manifest, p50",
		"CRI pod ready (crictl runp), containerd 1.6, p50", "CRI memory per idle pod, containerd 1.6",
		"CRI pod ready (crictl runp), containerd 2, sandboxer shim, p50", "CRI memory per idle pod, containerd 2, sandboxer shim",
		"memory per idle sandbox, N=100 (PSS shim + pause)", "shim alone, anonymous", "pause alone, anonymous",
		"32 parallel creates, wall time", "32 parallel creates, node CPU time per create", "scale"}
	if len(rows) != len(want) {
		t.Fatalf("Rows of an empty result: %d rows %+v, want %d", len(rows), rows, len(want))
	}
	for i, row := range rows {
		if row.Figure != want[i] || row.Met != NotMeasured {
			t.Errorf("row %d = %+v, want %q not measured", i, row, want[i])
		}
	}
}

func TestTableMarkdown(t *testing.T) {
	got := Table([]Row{
		{Figure: "a", Podbox: "1 ms", Peer: "2 ms", Ratio: "2.0× faster", Target: "≤ 10 ms", Met: Met},
		{Figure: "pipe|d", Met: Info},
	})
	want := "| figure | podbox | peer | ratio | target | met? |\n" +
		"| --- | ---: | ---: | ---: | --- | --- |\n" +
		"| a | 1 ms | 2 ms | 2.0× faster | ≤ 10 ms | yes |\n" +
		"| pipe\\|d | — | — | — | — | — |\n"
	if got != want {
		t.Errorf("Table =\n%s\nwant\n%s", got, want)
	}
	md := Markdown(sample())
	for _, s := range []string{"Test CPU, 2 cores, 24.0 GiB, kernel 6.1.0", "| sandbox ready, p50 | 9.0 ms | 84.0 ms |", "2026-11-24 22:00 UTC"} {
		if !strings.Contains(md, s) {
			t.Errorf("Markdown lacks %q:\n%s", s, md)
		}
	}
	if strings.Contains(md, "Only these phases ran") {
		t.Errorf("Markdown of a run of every phase names phases:\n%s", md)
	}
	partial := sample()
	partial.Config.Phases = []string{"ports"}
	if md := Markdown(partial); !strings.Contains(md, "Only these phases ran: ports.") {
		t.Errorf("Markdown of a -phases run does not say so:\n%s", md)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	r.Micro = []Micro{{Package: "netsetup/ipam", Name: "BenchmarkLeaseRelease/tmpfs/leases=0", Iter: 100, Metrics: map[string]float64{"ns/op": 1234}}}
	path := filepath.Join(t.TempDir(), "latest.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", back, r)
	}
	if f := back.Figure(FigReady); f == nil || f.Series[Peer].P50 != 84 {
		t.Errorf("Figure(ready) after the round trip = %+v", f)
	}
}

func TestWindowsAndBend(t *testing.T) {
	flat := []float64{10, 10, 11, 10, 12, 11, 10}
	ws := Windows(flat, 3)
	if len(ws) != 3 || ws[0].From != 1 || ws[0].To != 3 || ws[2].From != 7 || ws[2].To != 7 || ws[2].Create.N != 1 {
		t.Fatalf("Windows(7 samples, 3) = %+v", ws)
	}
	if at, why := Bend(ws); at != 0 || !strings.HasPrefix(why, "no bend") {
		t.Errorf("Bend of flat latency = %d %q", at, why)
	}
	bent := []float64{10, 10, 10, 10, 25, 30, 40, 50}
	if at, why := Bend(Windows(bent, 2)); at != 5 || !strings.Contains(why, "bends at sandboxes 5-6") {
		t.Errorf("Bend of bent latency = %d %q, want 5", at, why)
	}
	// Not doubled, but more than half again: a bend too.
	rising := []float64{10, 10, 12, 12, 16, 17}
	if at, why := Bend(Windows(rising, 2)); at != 5 || !strings.Contains(why, "1.60×") {
		t.Errorf("Bend of latency rising 1.6× = %d %q, want 5", at, why)
	}
}

func TestUpdateReadme(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	orig := "# x\n\n## Benchmarks\n\nintro\n" + ReadmeBegin + "\nold table\n" + ReadmeEnd + "\n\n## Next\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateReadme(path, "| new | table |\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# x\n\n## Benchmarks\n\nintro\n" + ReadmeBegin + "\n| new | table |\n" + ReadmeEnd + "\n\n## Next\n"
	if string(got) != want {
		t.Errorf("README after update:\n%s\nwant\n%s", got, want)
	}
	if err := os.WriteFile(path, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateReadme(path, "x"); err == nil {
		t.Error("UpdateReadme of a file without markers succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "no markers\n" {
		t.Errorf("UpdateReadme changed a file without markers: %q", got)
	}
}

// The scale run is judged below the VM's memory step, which shows as the
// bend: the windows from the bend on are not the count's.
func TestScaleJudgedBelowTheBend(t *testing.T) {
	s := Scale{Target: 6, Reached: 6, CreateMs: []float64{10, 10, 11, 11, 40, 40}}
	s.Windows = Windows(s.CreateMs, 2)
	s.BendAt, s.Bend = Bend(s.Windows)
	if s.BendAt != 5 {
		t.Fatalf("bend at %d, want 5", s.BendAt)
	}
	for _, row := range scaleRows(s) {
		if strings.Contains(row.Figure, "create p99") {
			if !strings.Contains(row.Figure, "at 3-4") || row.Met != Met || !strings.Contains(row.Target, "below the memory step at 5") {
				t.Errorf("scale row %+v: want the window before the bend, met", row)
			}
			return
		}
	}
	t.Error("no create p99 row")
}
