package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// readV2 reads the cgroup rel of the unified tree. A controller that is not
// enabled for the cgroup has no files there, and its section stays nil.
func (h hierarchies) readV2(rel, name string) (*stats2.Metrics, error) {
	dir := filepath.Join(h.v2, rel)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cgroup %s: metrics: no cgroup %s: %w", name, dir, os.ErrNotExist)
		}
		return nil, fmt.Errorf("cgroup %s: metrics: %w", name, err)
	}
	m := &stats2.Metrics{}
	for _, read := range []func(string, *stats2.Metrics) error{readV2Pids, readV2CPU, readV2Memory, readV2IO} {
		if err := read(dir, m); err != nil {
			return nil, fmt.Errorf("cgroup %s: metrics: %w", name, err)
		}
	}
	return m, nil
}

// readKeyedFile reads a flat keyed file; ok is false if it does not exist.
func readKeyedFile(p string) (kv map[string]uint64, ok bool, err error) {
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return nil, false, err
	}
	kv, err = parseKeyed(text, p)
	return kv, err == nil, err
}

func readPSIFile(p string) (*stats2.PSIStats, error) {
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return nil, err
	}
	return parsePSI(text, p)
}

func readV2Pids(dir string, m *stats2.Metrics) error {
	if _, err := os.Stat(filepath.Join(dir, "pids.current")); err != nil {
		return nil // pids controller not enabled here
	}
	p := &stats2.PidsStat{}
	if err := readUintFile(filepath.Join(dir, "pids.current"), maxV2, &p.Current); err != nil {
		return err
	}
	if err := readUintFile(filepath.Join(dir, "pids.max"), maxV2, &p.Limit); err != nil {
		return err
	}
	m.Pids = p
	return nil
}

// readV2CPU reads cpu.stat, whose usage keys exist even without the cpu
// controller; its keys are the proto's field names.
func readV2CPU(dir string, m *stats2.Metrics) error {
	kv, ok, err := readKeyedFile(filepath.Join(dir, "cpu.stat"))
	if err != nil || !ok {
		return err
	}
	m.CPU = &stats2.CPUStat{}
	setFields(m.CPU, kv, nil)
	m.CPU.PSI, err = readPSIFile(filepath.Join(dir, "cpu.pressure"))
	return err
}

func readV2Memory(dir string, m *stats2.Metrics) error {
	kv, ok, err := readKeyedFile(filepath.Join(dir, "memory.stat"))
	if err != nil || !ok {
		return err
	}
	// Kernels from 5.9 split these counters into _anon and _file; the
	// proto has the older sums.
	for _, k := range []string{"workingset_refault", "workingset_activate"} {
		if _, ok := kv[k]; !ok {
			kv[k] = kv[k+"_anon"] + kv[k+"_file"]
		}
	}
	s := &stats2.MemoryStat{}
	setFields(s, kv, nil)
	for _, f := range []struct {
		file string
		v    *uint64
	}{
		{"memory.current", &s.Usage},
		{"memory.max", &s.UsageLimit},
		{"memory.peak", &s.MaxUsage}, // kernel 5.19 and later
		{"memory.swap.current", &s.SwapUsage},
		{"memory.swap.max", &s.SwapLimit},
		{"memory.swap.peak", &s.SwapMaxUsage},
	} {
		if err := readUintFile(filepath.Join(dir, f.file), maxV2, f.v); err != nil {
			return err
		}
	}
	if s.PSI, err = readPSIFile(filepath.Join(dir, "memory.pressure")); err != nil {
		return err
	}
	m.Memory = s
	if ev, ok, err := readKeyedFile(filepath.Join(dir, "memory.events")); err != nil {
		return err
	} else if ok {
		m.MemoryEvents = &stats2.MemoryEvents{}
		setFields(m.MemoryEvents, ev, nil)
	}
	return nil
}

func readV2IO(dir string, m *stats2.Metrics) error {
	p := filepath.Join(dir, "io.stat")
	text, ok, err := readFile(p)
	if err != nil || !ok {
		return err
	}
	entries, err := parseIOStat(text, p)
	if err != nil {
		return err
	}
	m.Io = &stats2.IOStat{Usage: entries}
	m.Io.PSI, err = readPSIFile(filepath.Join(dir, "io.pressure"))
	return err
}
