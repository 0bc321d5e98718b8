// Package report owns the benchmark's results: the machine-readable record
// (bench/results/latest.json), the judgement of each figure against the
// targets of issue #6, and the Markdown table of that judgement. It measures
// nothing and starts nothing; everything here is a pure function of a
// Result, so the table and the JSON are unit-tested.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/podbox/podbox/bench/stats"
)

// Series names of a Figure: who was measured.
const (
	Podbox = "podbox"
	Peer   = "containerd-runc" // containerd 1.6 CRI, io.containerd.runc.v2, bridge CNI, driven by crictl
	Floor  = "floor"           // runc run -d plus netsetup, no daemon, no CLI
	// PodboxRootfs is podbox run from a root filesystem directory, beside
	// podbox run from an image (Podbox) in the image figures.
	PodboxRootfs = "podbox-rootfs"
	// PodboxPorts is podbox sandbox create -p (and its removal), beside a
	// plain create (Podbox) in the published-ports figures; there the peer
	// runs pods with a port mapping and portmap in its chain.
	PodboxPorts = "podbox-ports"
)

// Figure IDs the table reads.
const (
	FigReady     = "ready"      // sandbox create until pause runs and network is up (ms)
	FigJoin      = "join"       // container start in a ready sandbox (ms)
	FigTeardown  = "teardown"   // sandbox removal (ms)
	FigBurst     = "burst"      // each of the parallel creates (ms)
	FigBurstWall = "burst-wall" // all parallel creates, one sample per round (ms)
	FigBurstCPU  = "burst-cpu"  // the node's busy CPU time per create in a round of parallel creates (ms)
	FigPausePSS  = "pause-pss"  // one idle pause (KiB)
	FigPauseAnon = "pause-anon" // one idle pause, anonymous memory (KiB)
	FigShimAnon  = "shim-anon"  // one idle shim, anonymous memory (KiB)
	FigJoinImage = "join-image" // container start from an image in a ready sandbox (ms)
	FigPull      = "pull"       // pull of a 3-layer image from a loopback registry, unpacked (ms)
	// Issue #14's: sandbox create with a published port (ms), and the
	// removal of that sandbox (ms).
	FigPorts         = "ports"
	FigPortsTeardown = "ports-teardown"
	// Issue #15's: a pod of three containers from a manifest until every
	// container runs (ms).
	FigPlay = "play"
	// Issue #16's CRI path: a pod through crictl on one containerd, the
	// podbox handler against runc's (ms, ms, KiB per idle pod), on
	// containerd 1.6 and on 2.x with podbox's sandboxer = "shim".
	FigCRIReady     = "cri-ready"
	FigCRITeardown  = "cri-teardown"
	FigCRIMemory    = "cri-memory"
	FigCRIPolled    = "cri-memory-polled"
	FigCRI2Ready    = "cri2-ready"
	FigCRI2Teardown = "cri2-teardown"
	FigCRI2Memory   = "cri2-memory"
	FigCRI2Polled   = "cri2-memory-polled"
)

// FigMemory is the ID of the per-sandbox memory figure with n idle
// sandboxes: every sample is one sandbox's shim + pause PSS in KiB.
func FigMemory(n int) string { return fmt.Sprintf("memory-%d", n) }

// Result is one run of the benchmark.
type Result struct {
	Machine Machine   `json:"machine"`
	Config  Config    `json:"config"`
	Started time.Time `json:"started"`
	// Seconds is the wall time of the whole run, setup and cleanup included.
	Seconds float64  `json:"seconds"`
	Figures []Figure `json:"figures"`
	Scale   Scale    `json:"scale"`
	Micro   []Micro  `json:"micro,omitempty"`
	// Errors are failures the run survived (a phase that could not finish,
	// a cleanup step that had to force), verbatim.
	Errors []string `json:"errors,omitempty"`
	// Table is Rows(this result), stored so readers need not recompute it.
	Table []Row `json:"table"`
}

// Machine says where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	MemoryKiB  int    `json:"memoryKiB"`
	OS         string `json:"os"`
	Go         string `json:"go"`
	Podbox     string `json:"podbox"`
	Runc       string `json:"runc"`
	Containerd string `json:"containerd"`
	Crictl     string `json:"crictl"`
	CgroupMode string `json:"cgroupMode"`
	// LoadStart and LoadEnd are /proc/loadavg when the run started and
	// ended: the machine may be shared, and a busy one slows every figure.
	LoadStart string `json:"loadStart"`
	LoadEnd   string `json:"loadEnd"`
}

// Config is what the run was asked to do.
type Config struct {
	Runs    int   `json:"runs"`
	Scale   int   `json:"scale"`
	Burst   int   `json:"burst"`
	Rounds  int   `json:"burstRounds"`
	MemoryN []int `json:"memoryN"`
	Micro   bool  `json:"micro"`
	// CRIPolls is how many rounds of stats and status requests the CRI
	// pods get before their memory is measured again.
	CRIPolls int `json:"criPolls,omitempty"`
	// Phases are the phases the run was limited to (bench -phases); empty
	// is every phase, so that a partial run's table says why rows are
	// missing.
	Phases []string `json:"phases,omitempty"`
}

// Figure is one measured quantity, summarised per series (Podbox, Peer,
// Floor, or a finer breakdown such as "podbox-shim").
type Figure struct {
	ID     string                   `json:"id"`
	Title  string                   `json:"title"`
	Unit   string                   `json:"unit"`
	Series map[string]stats.Summary `json:"series"`
}

// Scale is the run of podbox sandboxes up to Config.Scale.
type Scale struct {
	Target  int `json:"target"`
	Reached int `json:"reached"`
	// Failure is the error of create number Reached+1, if the run stopped
	// early.
	Failure string `json:"failure,omitempty"`
	// CreateMs holds every create's latency; index i is the (i+1)-th
	// sandbox.
	CreateMs    []float64    `json:"createMs"`
	Windows     []Window     `json:"windows"`
	Checkpoints []Checkpoint `json:"checkpoints"`
	// BendAt is the first sandbox count whose window's p50 is more than
	// twice the first window's, 0 if none.
	BendAt int    `json:"bendAt"`
	Bend   string `json:"bend"`
	// Teardown summarises every `sandbox rm -f` of the scale run;
	// TeardownSeconds is their total wall time.
	Teardown         stats.Summary `json:"teardown"`
	TeardownSeconds  float64       `json:"teardownSeconds"`
	TeardownFailures []string      `json:"teardownFailures,omitempty"`
}

// Window summarises the create latency of sandboxes From..To (1-based,
// inclusive).
type Window struct {
	From   int           `json:"from"`
	To     int           `json:"to"`
	Create stats.Summary `json:"createMs"`
}

// Checkpoint is the cost of Count idle podbox sandboxes: PSSKiB sums
// shim + pause of all of them, NodeUsedKiB is how much MemAvailable fell
// since before the first (page cache, kernel objects and all), and
// IdleCPUPercent is the CPU all their shims and pauses used over one
// second with nothing asked of them (100 = one core).
type Checkpoint struct {
	Count          int     `json:"count"`
	PSSKiB         int     `json:"pssKiB"`
	NodeUsedKiB    int     `json:"nodeUsedKiB"`
	IdleCPUPercent float64 `json:"idleCPUPercent"`
}

// Micro is one `go test -bench` result line.
type Micro struct {
	Package string             `json:"package"`
	Name    string             `json:"name"`
	Iter    int                `json:"iterations"`
	Metrics map[string]float64 `json:"metrics"`
}

// Windows cuts create latencies into windows of size samples (the last
// may be shorter) and summarises each.
func Windows(createMs []float64, size int) []Window {
	if size <= 0 {
		size = 1
	}
	var out []Window
	for from := 0; from < len(createMs); from += size {
		to := min(from+size, len(createMs))
		out = append(out, Window{From: from + 1, To: to, Create: stats.Summarize(createMs[from:to])})
	}
	return out
}

// Bend finds where create latency bends: the first window whose p50 is at
// least bendRatio times the first window's. It returns the first sandbox
// count of that window (0 if there is none) and a sentence saying so.
func Bend(ws []Window) (int, string) {
	if len(ws) < 2 {
		return 0, "too few sandboxes to tell"
	}
	base := ws[0].Create.P50
	for _, w := range ws[1:] {
		if r := w.Create.P50 / base; r >= bendRatio {
			return w.From, fmt.Sprintf("create p50 bends at sandboxes %d-%d: %.1f ms, %.2f× the %.1f ms of the first %d",
				w.From, w.To, w.Create.P50, r, base, ws[0].To)
		}
	}
	last := ws[len(ws)-1]
	return 0, fmt.Sprintf("no bend: create p50 %.1f ms for the first %d, %.1f ms for sandboxes %d-%d (%.2f×)",
		base, ws[0].To, last.Create.P50, last.From, last.To, last.Create.P50/base)
}

// bendRatio is how far a window's create p50 must rise above the first
// window's to count as a bend: half again, well clear of the run-to-run
// noise of a window's p50 here (about 10%).
const bendRatio = 1.5

// Figure returns the figure with id, or nil.
func (r *Result) Figure(id string) *Figure {
	for i := range r.Figures {
		if r.Figures[i].ID == id {
			return &r.Figures[i]
		}
	}
	return nil
}

// series returns the summary of series in figure id; ok is false when it
// was not measured.
func (r *Result) series(id, series string) (stats.Summary, bool) {
	f := r.Figure(id)
	if f == nil {
		return stats.Summary{}, false
	}
	s, ok := f.Series[series]
	return s, ok && s.N > 0
}

// WriteJSON writes r, indented, to path (atomically: temp file + rename).
func WriteJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results %s: encode: %w", path, err)
	}
	return writeFile(path, append(b, '\n'))
}

// ReadJSON reads a Result written by WriteJSON.
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("results %s: decode: %w", path, err)
	}
	return &r, nil
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("results %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("results %s: %w", path, err)
	}
	return nil
}

// WriteMarkdown writes the table of r with a line on the machine to path.
func WriteMarkdown(path string, r *Result) error {
	return writeFile(path, []byte(Markdown(r)))
}

// Markdown renders r's table, preceded by the machine and the run's size.
func Markdown(r *Result) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Measured %s on %s, %d cores, %.1f GiB, kernel %s (%s, cgroup %s); podbox %s, runc %s, containerd %s, crictl %s, %s.\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), m.CPU, m.Cores, float64(m.MemoryKiB)/(1<<20), m.Kernel, m.OS, m.CgroupMode,
		m.Podbox, m.Runc, m.Containerd, m.Crictl, m.Go)
	if m.LoadStart != "" {
		fmt.Fprintf(&b, "Load average (1, 5, 15 min) at the start %s, at the end %s.\n", m.LoadStart, m.LoadEnd)
	}
	fmt.Fprintf(&b, "Runs per latency figure: %d (interleaved); parallel creates: %d, %d rounds; scale: %d sandboxes; memory at N = %s.\n\n",
		r.Config.Runs, r.Config.Burst, r.Config.Rounds, r.Config.Scale, joinInts(r.Config.MemoryN))
	if len(r.Config.Phases) > 0 {
		fmt.Fprintf(&b, "Only these phases ran: %s.\n\n", strings.Join(r.Config.Phases, ", "))
	}
	b.WriteString(Table(r.Table))
	if r.Scale.Bend != "" {
		fmt.Fprintf(&b, "\nScale: %s.\n", r.Scale.Bend)
	}
	if r.Scale.Failure != "" {
		fmt.Fprintf(&b, "Scale stopped at %d sandboxes: %s\n", r.Scale.Reached, r.Scale.Failure)
	}
	for _, f := range r.Scale.TeardownFailures {
		fmt.Fprintf(&b, "Scale teardown failure: %s\n", f)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "Error: %s\n", e)
	}
	return b.String()
}

// Table renders rows as a Markdown table.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| figure | podbox | peer | ratio | target | met? |\n")
	b.WriteString("| --- | ---: | ---: | ---: | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n",
			cell(r.Figure), cell(r.Podbox), cell(r.Peer), cell(r.Ratio), cell(r.Target), cell(string(r.Met)))
	}
	return b.String()
}

// cell keeps a value from breaking the table: pipes escaped, empty shown as
// a dash.
func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// Markers of the generated part of a README's benchmark section.
const (
	ReadmeBegin = "<!-- bench:begin (written by make bench; do not edit) -->"
	ReadmeEnd   = "<!-- bench:end -->"
)

// UpdateReadme replaces what lies between ReadmeBegin and ReadmeEnd in the
// file at path with md. A file without both markers, in that order, is an
// error and is left alone.
func UpdateReadme(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("readme %s: %w", path, err)
	}
	s := string(b)
	i, j := strings.Index(s, ReadmeBegin), strings.Index(s, ReadmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("readme %s: no %q … %q section to replace", path, ReadmeBegin, ReadmeEnd)
	}
	out := s[:i+len(ReadmeBegin)] + "\n" + strings.TrimRight(md, "\n") + "\n" + s[j:]
	return writeFile(path, []byte(out))
}
