package metrics

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/podbox/podbox/sandbox"
)

const v1MemoryStat = `cache 13033472
rss 4571136
rss_huge 2097152
shmem 9138176
mapped_file 7507968
dirty 40960
writeback 0
workingset_refault_file 5315
swap 0
pgpgin 37703
pgpgout 33405
pgfault 45622
pgmajfault 3
inactive_anon 0
active_anon 1531904
inactive_file 274432
active_file 3620864
unevictable 12177408
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 2641567744
total_rss 18739200
total_pgpgin 54757926
total_pgfault 62827022
total_pgmajfault 14497
`

const v2CPUStat = `usage_usec 1030000
user_usec 700000
system_usec 330000
core_sched.force_idle_usec 0
nr_periods 10
nr_throttled 2
throttled_usec 5000
nr_bursts 1
burst_usec 7
`

const v2MemoryStat = `anon 5513216
file 8192
kernel 344064
kernel_stack 32768
pagetables 53248
sock 0
shmem 0
file_mapped 0
file_dirty 0
file_writeback 0
anon_thp 0
inactive_anon 5505024
active_anon 8192
inactive_file 8192
active_file 0
unevictable 0
slab_reclaimable 60000
slab_unreclaimable 90000
slab 150000
workingset_refault_anon 3
workingset_refault_file 4
workingset_activate_anon 1
workingset_activate_file 2
workingset_nodereclaim 0
pgfault 1520
pgmajfault 1
thp_fault_alloc 0
`

const v2IOStat = `8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
253:1 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0
`

const v1Blkio = `8:0 Read 4096
8:0 Write 8192
8:0 Sync 12288
8:0 Async 0
8:0 Discard 0
8:0 Total 12288
Total 12288
`

const partitions = `major minor  #blocks  name

   8        0  268435456 sda
   8        1  268434432 sda1
 253        1      10240 dm-1
`

const psi = `some avg10=1.50 avg60=0.25 avg300=0.00 total=12345
full avg10=0.00 avg60=0.00 avg300=0.00 total=678
`

// protoDiff returns "" if want and got are equal, else both in text form.
func protoDiff(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	return "-" + prototext.Format(want) + "\n+" + prototext.Format(got)
}

func TestParseV1MemoryStat(t *testing.T) {
	kv, err := parseKeyed(v1MemoryStat, "memory.stat")
	if err != nil {
		t.Fatal(err)
	}
	got := &stats1.MemoryStat{}
	setFields(got, kv, v1MemoryAlias())
	want := &stats1.MemoryStat{
		Cache: 13033472, RSS: 4571136, RSSHuge: 2097152, MappedFile: 7507968, Dirty: 40960,
		PgPgIn: 37703, PgPgOut: 33405, PgFault: 45622, PgMajFault: 3,
		ActiveAnon: 1531904, InactiveFile: 274432, ActiveFile: 3620864, Unevictable: 12177408,
		HierarchicalMemoryLimit: 9223372036854771712, HierarchicalSwapLimit: 9223372036854771712,
		TotalCache: 2641567744, TotalRSS: 18739200, TotalPgPgIn: 54757926, TotalPgFault: 62827022,
		TotalPgMajFault: 14497,
	}
	if d := protoDiff(want, got); d != "" {
		t.Errorf("memory.stat (-want +got):\n%s", d)
	}
}

func TestParseV2CPUStat(t *testing.T) {
	kv, err := parseKeyed(v2CPUStat, "cpu.stat")
	if err != nil {
		t.Fatal(err)
	}
	got := &stats2.CPUStat{}
	setFields(got, kv, nil)
	want := &stats2.CPUStat{UsageUsec: 1030000, UserUsec: 700000, SystemUsec: 330000,
		NrPeriods: 10, NrThrottled: 2, ThrottledUsec: 5000, NrBursts: 1, BurstUsec: 7}
	if d := protoDiff(want, got); d != "" {
		t.Errorf("cpu.stat (-want +got):\n%s", d)
	}
}

func TestParseKeyedRejectsGarbage(t *testing.T) {
	for _, text := range []string{"usage_usec\n", "usage_usec 1 2\n", "usage_usec ten\n"} {
		if _, err := parseKeyed(text, "/x/cpu.stat"); err == nil || !strings.Contains(err.Error(), "/x/cpu.stat") {
			t.Errorf("parseKeyed(%q): %v, want an error naming the file", text, err)
		}
	}
}

func TestParseIOStat(t *testing.T) {
	got, err := parseIOStat(v2IOStat, "io.stat")
	if err != nil {
		t.Fatal(err)
	}
	want := &stats2.IOStat{Usage: []*stats2.IOEntry{
		{Major: 8, Minor: 0, Rbytes: 1459200, Wbytes: 314773504, Rios: 192, Wios: 353},
		{Major: 253, Minor: 1, Rbytes: 4096, Rios: 1},
	}}
	if d := protoDiff(want, &stats2.IOStat{Usage: got}); d != "" {
		t.Errorf("io.stat (-want +got):\n%s", d)
	}
	if _, err := parseIOStat("8:0 rbytes\n", "io.stat"); err == nil {
		t.Error("malformed io.stat parsed")
	}
}

func TestParseBlkio(t *testing.T) {
	devs := parsePartitions(partitions)
	if devs[device{8, 1}] != "/dev/sda1" || devs[device{253, 1}] != "/dev/dm-1" || len(devs) != 3 {
		t.Fatalf("partitions: %v", devs)
	}
	got, err := parseBlkio(v1Blkio, "blkio.throttle.io_service_bytes_recursive", devs)
	if err != nil {
		t.Fatal(err)
	}
	var want []*stats1.BlkIOEntry
	for _, e := range []struct {
		op string
		v  uint64
	}{{"Read", 4096}, {"Write", 8192}, {"Sync", 12288}, {"Async", 0}, {"Discard", 0}, {"Total", 12288}} {
		want = append(want, &stats1.BlkIOEntry{Op: e.op, Device: "/dev/sda", Major: 8, Minor: 0, Value: e.v})
	}
	if d := protoDiff(&stats1.BlkIOStat{IoServiceBytesRecursive: want}, &stats1.BlkIOStat{IoServiceBytesRecursive: got}); d != "" {
		t.Errorf("blkio (-want +got):\n%s", d)
	}
	// Files without an operation column, and the empty "Total 0" of an
	// idle cgroup.
	got, err = parseBlkio("8:1 1234\n", "blkio.time_recursive", devs)
	if err != nil || len(got) != 1 || got[0].Value != 1234 || got[0].Op != "" || got[0].Device != "/dev/sda1" {
		t.Errorf("blkio without op: %v, %v", got, err)
	}
	if got, err := parseBlkio("Total 0\n", "x", devs); err != nil || len(got) != 0 {
		t.Errorf("idle blkio: %v, %v", got, err)
	}
	if _, err := parseBlkio("sda Read 1\n", "x", devs); err == nil {
		t.Error("blkio with a bad device parsed")
	}
}

func TestParsePSI(t *testing.T) {
	got, err := parsePSI(psi, "cpu.pressure")
	if err != nil {
		t.Fatal(err)
	}
	want := &stats2.PSIStats{
		Some: &stats2.PSIData{Avg10: 1.5, Avg60: 0.25, Total: 12345},
		Full: &stats2.PSIData{Total: 678},
	}
	if d := protoDiff(want, got); d != "" {
		t.Errorf("psi (-want +got):\n%s", d)
	}
}

func TestParseUint(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  uint64
		want uint64
		ok   bool
	}{
		{"1234\n", maxV1, 1234, true},
		{"max\n", maxV1, 0, true},
		{"max\n", maxV2, math.MaxUint64, true},
		{"-1\n", maxV1, 0, true},
		{"9223372036854771712\n", maxV1, 9223372036854771712, true},
		{"lots\n", maxV1, 0, false},
		{"-lots\n", maxV1, 0, false},
	} {
		got, err := parseUint(c.in, "f", c.max)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseUint(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// tree writes files (path → content) below a temp root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestMountedHierarchies(t *testing.T) {
	hybrid := `25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`
	pure := `25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
90 26 0:24 / /mnt/other\040cg rw - cgroup2 cgroup2 rw
`
	root := tree(t, map[string]string{"hybrid": hybrid, "pure": pure, "none": "25 30 0:23 / /sys rw - sysfs sysfs rw\n"})

	h, err := mountedHierarchiesIn(t, filepath.Join(root, "hybrid"))
	if err != nil {
		t.Fatal(err)
	}
	if !h.isV1() || h.v1["cpu"] != "/sys/fs/cgroup/cpu,cpuacct" || h.v1["cpuacct"] != "/sys/fs/cgroup/cpu,cpuacct" ||
		h.v1["memory"] != "/sys/fs/cgroup/memory" || h.v1["blkio"] != "" || h.v2 != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid host read as %+v", h)
	}

	h, err = mountedHierarchiesIn(t, filepath.Join(root, "pure"))
	if err != nil {
		t.Fatal(err)
	}
	if h.isV1() || h.v2 != "/sys/fs/cgroup" {
		t.Errorf("pure v2 host read as %+v", h)
	}
	if got := sandbox.UnescapeMount(`/mnt/other\040cg`); got != "/mnt/other cg" {
		t.Errorf("unescape: %q", got)
	}

	if _, err := mountedHierarchiesIn(t, filepath.Join(root, "none")); err == nil {
		t.Error("a host without cgroups read without error")
	}
}

// TestReadV1Tree reads a fake v1 host (separate cpu and cpuacct mounts, as
// on Debian 12) end to end, without root.
func TestReadV1Tree(t *testing.T) {
	cg := "podbox/sb/ctr"
	root := tree(t, map[string]string{
		"memory/" + cg + "/memory.stat":                              v1MemoryStat,
		"memory/" + cg + "/memory.usage_in_bytes":                    "5000000\n",
		"memory/" + cg + "/memory.max_usage_in_bytes":                "6000000\n",
		"memory/" + cg + "/memory.limit_in_bytes":                    "9223372036854771712\n",
		"memory/" + cg + "/memory.failcnt":                           "0\n",
		"memory/" + cg + "/memory.kmem.usage_in_bytes":               "300000\n",
		"memory/" + cg + "/memory.oom_control":                       "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"cpu/" + cg + "/cpu.stat":                                    "nr_periods 4\nnr_throttled 1\nthrottled_time 99\nnr_bursts 0\nburst_time 0\n",
		"cpuacct/" + cg + "/cpuacct.usage":                           "1500000000\n",
		"cpuacct/" + cg + "/cpuacct.usage_percpu":                    "1000000000 500000000 \n",
		"cpuacct/" + cg + "/cpuacct.stat":                            "user 100\nsystem 50\n",
		"pids/" + cg + "/pids.current":                               "3\n",
		"pids/" + cg + "/pids.max":                                   "max\n",
		"blkio/" + cg + "/blkio.throttle.io_serviced_recursive":      "Total 0\n",
		"blkio/" + cg + "/blkio.throttle.io_service_bytes_recursive": v1Blkio,
		"blkio/" + cg + "/blkio.bfq.io_service_bytes_recursive":      "Total 0\n",
		"partitions": partitions,
	})
	h := hierarchies{v1: map[string]string{}, partitions: filepath.Join(root, "partitions")}
	for _, c := range v1Controllers() {
		h.v1[c] = filepath.Join(root, c)
	}
	msg, err := h.read(sandbox.CgroupPaths{Path: cg})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := msg.(*stats1.Metrics)
	if !ok {
		t.Fatalf("v1 host gave %T", msg)
	}
	if m.Memory.Usage.Usage != 5000000 || m.Memory.Usage.Max != 6000000 || m.Memory.Usage.Limit != 9223372036854771712 ||
		m.Memory.Kernel.Usage != 300000 || m.Memory.Cache != 13033472 || m.MemoryOomControl.OomKill != 2 {
		t.Errorf("memory: %v %v", m.Memory, m.MemoryOomControl)
	}
	wantCPU := &stats1.CPUStat{
		Usage:      &stats1.CPUUsage{Total: 1500000000, User: 1000000000, Kernel: 500000000, PerCPU: []uint64{1000000000, 500000000}},
		Throttling: &stats1.Throttle{Periods: 4, ThrottledPeriods: 1, ThrottledTime: 99},
	}
	if d := protoDiff(wantCPU, m.CPU); d != "" {
		t.Errorf("cpu (-want +got):\n%s", d)
	}
	if m.Pids.Current != 3 || m.Pids.Limit != 0 {
		t.Errorf("pids: %v", m.Pids)
	}
	if n := len(m.Blkio.IoServiceBytesRecursive); n != 6 || m.Blkio.IoServiceBytesRecursive[0].Device != "/dev/sda" {
		t.Errorf("blkio: %v", m.Blkio)
	}

	// A leading slash means the same path; a missing one is an error naming it.
	if _, err := h.read(sandbox.CgroupPaths{Path: "/" + cg}); err != nil {
		t.Errorf("read /%s: %v", cg, err)
	}
	_, err = h.read(sandbox.CgroupPaths{Path: "podbox/sb/gone"})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "podbox/sb/gone") {
		t.Errorf("missing cgroup: %v, want ErrNotExist naming it", err)
	}

	// A container runc placed by a relative cgroupsPath, below a shim
	// that is in another memory cgroup than elsewhere: each hierarchy is
	// read at the container's path there.
	split := sandbox.CgroupPaths{Path: "/", ByController: map[string]string{
		"memory": "/" + cg, "cpu": "/svc/" + cg, "cpuacct": "/svc/" + cg, "pids": "/svc/" + cg, "blkio": "/svc/" + cg,
	}}
	for _, c := range []string{"cpu", "cpuacct", "pids", "blkio"} {
		if err := os.Rename(filepath.Join(root, c, "podbox"), filepath.Join(root, c, "svc")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, c, "svc", "podbox"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(root, c, "svc", "sb"), filepath.Join(root, c, "svc", "podbox", "sb")); err != nil {
			t.Fatal(err)
		}
	}
	msg, err = h.read(split)
	if err != nil {
		t.Fatal(err)
	}
	if m := msg.(*stats1.Metrics); m.Memory.Usage.Usage != 5000000 || m.CPU.Usage.Total != 1500000000 || m.Pids.Current != 3 {
		t.Errorf("cgroup with a path per hierarchy: memory %v, cpu %v, pids %v", m.Memory.Usage, m.CPU.Usage, m.Pids)
	}
}

func TestReadV2Tree(t *testing.T) {
	cg := "podbox/sb"
	root := tree(t, map[string]string{
		cg + "/cpu.stat":            v2CPUStat,
		cg + "/cpu.pressure":        psi,
		cg + "/memory.stat":         v2MemoryStat,
		cg + "/memory.current":      "5600000\n",
		cg + "/memory.max":          "max\n",
		cg + "/memory.peak":         "7000000\n",
		cg + "/memory.swap.current": "0\n",
		cg + "/memory.swap.max":     "max\n",
		cg + "/memory.events":       "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
		cg + "/pids.current":        "2\n",
		cg + "/pids.max":            "100\n",
		cg + "/io.stat":             v2IOStat,
		// a cgroup whose parent enables no controllers: only cpu.stat
		cg + "/bare/cpu.stat": "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
	})
	h := hierarchies{v1: map[string]string{}, v2: root}
	msg, err := h.read(sandbox.CgroupPaths{Path: cg})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := msg.(*stats2.Metrics)
	if !ok {
		t.Fatalf("v2 host gave %T", msg)
	}
	if m.CPU.UsageUsec != 1030000 || m.CPU.NrThrottled != 2 || m.CPU.PSI.Some.Total != 12345 {
		t.Errorf("cpu: %v", m.CPU)
	}
	mem := m.Memory
	if mem.Usage != 5600000 || mem.UsageLimit != math.MaxUint64 || mem.MaxUsage != 7000000 || mem.SwapLimit != math.MaxUint64 ||
		mem.Anon != 5513216 || mem.Slab != 150000 || mem.WorkingsetRefault != 7 || mem.WorkingsetActivate != 3 || mem.Pgmajfault != 1 {
		t.Errorf("memory: %v", mem)
	}
	if m.MemoryEvents.Max != 4 || m.MemoryEvents.OomKill != 1 {
		t.Errorf("memory events: %v", m.MemoryEvents)
	}
	if m.Pids.Current != 2 || m.Pids.Limit != 100 {
		t.Errorf("pids: %v", m.Pids)
	}
	if len(m.Io.Usage) != 2 || m.Io.Usage[0].Wbytes != 314773504 {
		t.Errorf("io: %v", m.Io)
	}

	msg, err = h.read(sandbox.CgroupPaths{Path: cg + "/bare"})
	if err != nil {
		t.Fatal(err)
	}
	if m := msg.(*stats2.Metrics); m.CPU.UsageUsec != 5 || m.Memory != nil || m.Pids != nil || m.Io != nil {
		t.Errorf("bare cgroup: %v", m)
	}

	_, err = h.read(sandbox.CgroupPaths{Path: "podbox/gone"})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "podbox/gone") {
		t.Errorf("missing cgroup: %v, want ErrNotExist naming it", err)
	}
}

func TestToMetricRoundTrip(t *testing.T) {
	for _, c := range []struct {
		m   proto.Message
		url string
	}{
		{&stats1.Metrics{Pids: &stats1.PidsStat{Current: 3}}, "io.containerd.cgroups.v1.Metrics"},
		{&stats2.Metrics{Pids: &stats2.PidsStat{Current: 4}}, "io.containerd.cgroups.v2.Metrics"},
	} {
		metric, err := ToMetric("ctr1", c.m)
		if err != nil {
			t.Fatal(err)
		}
		if metric.ID != "ctr1" || metric.Timestamp == nil || metric.Data.TypeUrl != c.url {
			t.Errorf("metric: id %q, timestamp %v, type URL %q; want ctr1, a time, %q", metric.ID, metric.Timestamp, metric.Data.TypeUrl, c.url)
		}
		// containerd decodes by the type URL alone.
		v, err := typeurl.UnmarshalAny(metric.Data)
		if err != nil {
			t.Fatalf("typeurl cannot decode %q: %v", metric.Data.TypeUrl, err)
		}
		if !proto.Equal(v.(proto.Message), c.m) {
			t.Errorf("round trip: %v, want %v", v, c.m)
		}
	}
	if _, err := ToMetric("x", nil); err == nil {
		t.Error("ToMetric(nil) succeeded")
	}
}

// mountedHierarchiesIn is mountedHierarchies of the mountinfo file at path.
func mountedHierarchiesIn(t *testing.T, path string) (hierarchies, error) {
	t.Helper()
	ms, err := sandbox.CgroupMounts(path)
	if err != nil {
		t.Fatal(err)
	}
	return mountedHierarchies(ms)
}

// readFile returns a file's whole text whatever its size, across the growth
// of its buffer, and ok=false for a missing file.
func TestReadFileWhole(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 255, 256, 257, 5000} {
		want := strings.Repeat("x", n)
		p := filepath.Join(dir, strconv.Itoa(n))
		if err := os.WriteFile(p, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, ok, err := readFile(p)
		if err != nil || !ok || got != want {
			t.Errorf("readFile of %d bytes: %d bytes, ok %v, err %v", n, len(got), ok, err)
		}
	}
	if _, ok, err := readFile(filepath.Join(dir, "missing")); ok || err != nil {
		t.Errorf("readFile of a missing file: ok %v, err %v; want false, nil", ok, err)
	}
}
