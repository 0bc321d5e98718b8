package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/podbox/podbox/sandbox"
)

// v1Controllers are the v1 controllers whose statistics Read reports.
func v1Controllers() []string { return []string{"memory", "cpu", "cpuacct", "pids", "blkio"} }

// userHZ is the unit of cpuacct.stat: the kernel reports it in USER_HZ
// ticks, which Linux fixes at 100 for user space on every architecture.
const userHZ = 100

// v1MemoryAlias renames memory.stat keys to the v1 MemoryStat fields whose
// names differ.
func v1MemoryAlias() map[string]string {
	return map[string]string{
		"pgpgin":                   "pg_pg_in",
		"pgpgout":                  "pg_pg_out",
		"pgfault":                  "pg_fault",
		"pgmajfault":               "pg_maj_fault",
		"total_pgpgin":             "total_pg_pg_in",
		"total_pgpgout":            "total_pg_pg_out",
		"total_pgfault":            "total_pg_fault",
		"total_pgmajfault":         "total_pg_maj_fault",
		"hierarchical_memsw_limit": "hierarchical_swap_limit",
	}
}

// readV1 reads the cgroup cg in each v1 controller hierarchy it exists in,
// at its path there. A controller that is not mounted, or where the cgroup
// was not created, is left out; a cgroup found in none is an error.
func (h hierarchies) readV1(cg sandbox.CgroupPaths) (*stats1.Metrics, error) {
	m := &stats1.Metrics{}
	found := false
	name := cg.In("memory")
	for _, ctrl := range v1Controllers() {
		mount := h.v1[ctrl]
		if mount == "" {
			continue
		}
		dir := filepath.Join(mount, rel(cg.In(ctrl)))
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("cgroup %s: metrics: %w", name, err)
		}
		found = true
		var err error
		switch ctrl {
		case "memory":
			err = readV1Memory(dir, m)
		case "cpu":
			err = readV1Throttling(dir, m)
		case "cpuacct":
			err = readV1CPUAcct(dir, m)
		case "pids":
			err = readV1Pids(dir, m)
		case "blkio":
			err = h.readV1Blkio(dir, m)
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: metrics: %w", name, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroup %s: metrics: not in any cgroup v1 hierarchy: %w", name, os.ErrNotExist)
	}
	return m, nil
}

func readV1Memory(dir string, m *stats1.Metrics) error {
	p := filepath.Join(dir, "memory.stat")
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return err
	}
	kv, err := parseKeyed(text, p)
	if err != nil {
		return err
	}
	m.Memory = &stats1.MemoryStat{
		Usage:     &stats1.MemoryEntry{},
		Swap:      &stats1.MemoryEntry{},
		Kernel:    &stats1.MemoryEntry{},
		KernelTCP: &stats1.MemoryEntry{},
	}
	setFields(m.Memory, kv, v1MemoryAlias())
	for _, e := range []struct {
		prefix string
		entry  *stats1.MemoryEntry
	}{
		{"memory.", m.Memory.Usage},
		{"memory.memsw.", m.Memory.Swap}, // absent without swap accounting
		{"memory.kmem.", m.Memory.Kernel},
		{"memory.kmem.tcp.", m.Memory.KernelTCP},
	} {
		for _, f := range []struct {
			file string
			v    *uint64
		}{
			{"usage_in_bytes", &e.entry.Usage},
			{"max_usage_in_bytes", &e.entry.Max},
			{"limit_in_bytes", &e.entry.Limit},
			{"failcnt", &e.entry.Failcnt},
		} {
			if err := readUintFile(filepath.Join(dir, e.prefix+f.file), maxV1, f.v); err != nil {
				return err
			}
		}
	}
	p = filepath.Join(dir, "memory.oom_control")
	if text, ok, err := readFile(p); err != nil {
		return err
	} else if ok {
		kv, err := parseKeyed(text, p)
		if err != nil {
			return err
		}
		m.MemoryOomControl = &stats1.MemoryOomControl{}
		setFields(m.MemoryOomControl, kv, nil)
	}
	return nil
}

// readUintFile reads a single-number file into v; a missing file leaves v
// alone.
func readUintFile(p string, unlimited uint64, v *uint64) error {
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return err
	}
	n, err := parseUint(text, p, unlimited)
	if err != nil {
		return err
	}
	*v = n
	return nil
}

func cpuStat(m *stats1.Metrics) *stats1.CPUStat {
	if m.CPU == nil {
		m.CPU = &stats1.CPUStat{Usage: &stats1.CPUUsage{}, Throttling: &stats1.Throttle{}}
	}
	return m.CPU
}

// readV1Throttling reads the cpu controller's cpu.stat (CFS throttling).
func readV1Throttling(dir string, m *stats1.Metrics) error {
	p := filepath.Join(dir, "cpu.stat")
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return err
	}
	kv, err := parseKeyed(text, p)
	if err != nil {
		return err
	}
	setFields(cpuStat(m).Throttling, kv, map[string]string{
		"nr_periods":     "periods",
		"nr_throttled":   "throttled_periods",
		"throttled_time": "throttled_time",
	})
	return nil
}

// readV1CPUAcct reads CPU usage in nanoseconds: total, per CPU, and the
// user/system split (which the kernel gives in ticks).
func readV1CPUAcct(dir string, m *stats1.Metrics) error {
	u := cpuStat(m).Usage
	if err := readUintFile(filepath.Join(dir, "cpuacct.usage"), maxV1, &u.Total); err != nil {
		return err
	}
	p := filepath.Join(dir, "cpuacct.usage_percpu")
	if text, ok, err := readFile(p); err != nil {
		return err
	} else if ok {
		if u.PerCPU, err = parsePerCPU(text, p); err != nil {
			return err
		}
	}
	p = filepath.Join(dir, "cpuacct.stat")
	if text, ok, err := readFile(p); err != nil {
		return err
	} else if ok {
		kv, err := parseKeyed(text, p)
		if err != nil {
			return err
		}
		u.User = kv["user"] * (1e9 / userHZ)
		u.Kernel = kv["system"] * (1e9 / userHZ)
	}
	return nil
}

func readV1Pids(dir string, m *stats1.Metrics) error {
	if _, err := os.Stat(filepath.Join(dir, "pids.current")); err != nil {
		return nil // the hierarchy's root cgroup has no pids files
	}
	p := &stats1.PidsStat{}
	if err := readUintFile(filepath.Join(dir, "pids.current"), maxV1, &p.Current); err != nil {
		return err
	}
	if err := readUintFile(filepath.Join(dir, "pids.max"), maxV1, &p.Limit); err != nil {
		return err
	}
	m.Pids = p
	return nil
}

// readV1Blkio reads bytes and operations per device. Which files count
// depends on the I/O scheduler: CFQ fills blkio.io_*, BFQ blkio.bfq.io_*, and
// with neither (mq-deadline, none: most current disks) only the throttle
// layer's blkio.throttle.io_* see the I/O. The first that has entries wins.
func (h hierarchies) readV1Blkio(dir string, m *stats1.Metrics) error {
	var devices map[device]string
	if text, ok, err := readFile(h.partitions); err == nil && ok {
		devices = parsePartitions(text)
	}
	b := &stats1.BlkIOStat{}
	for _, s := range []struct {
		name  string
		entry *[]*stats1.BlkIOEntry
	}{
		{"io_service_bytes_recursive", &b.IoServiceBytesRecursive},
		{"io_serviced_recursive", &b.IoServicedRecursive},
	} {
		for _, layer := range []string{"blkio.", "blkio.bfq.", "blkio.throttle."} {
			p := filepath.Join(dir, layer+s.name)
			text, ok, err := readFile(p)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			entries, err := parseBlkio(text, p, devices)
			if err != nil {
				return err
			}
			if len(entries) > 0 {
				*s.entry = entries
				break
			}
		}
	}
	m.Blkio = b
	return nil
}
