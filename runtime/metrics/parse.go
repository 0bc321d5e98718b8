package metrics

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Parsers of the cgroup file formats. Each takes the file's text and its
// name (for errors), so the formats are tested on fixture strings.

// maxV1 and maxV2 are what a "max" (no limit) file reads as. They follow
// containerd's cgroups library, so podbox's numbers mean what runc-shim's
// mean: 0 in v1 metrics (for backward compatibility), the largest uint64 in
// v2.
const (
	maxV1 = 0
	maxV2 = math.MaxUint64
)

// readFile returns a cgroup file's text, and ok=false if the file does not
// exist (its controller is not enabled, or the kernel lacks the feature).
//
// It does not use os.ReadFile: a cgroup file gives its size as 4096 (or 0)
// whatever it holds, and os.ReadFile would allocate that much for a value of
// a few bytes, dozens of times per stats request; that garbage is what an
// idle shim's heap grew by under a kubelet's polling.
func readFile(path string) (text string, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	var small [256]byte
	b := small[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return string(b), true, nil
		}
		if err != nil {
			return "", false, err
		}
	}
}

// parseUint parses a single-value file ("1234\n" or "max"). A negative value
// (v1 reports -1 for "no limit" in a few files) reads as 0, as in
// containerd's cgroups library.
func parseUint(text, name string, unlimited uint64) (uint64, error) {
	s := strings.TrimSpace(text)
	if s == "max" {
		return unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		i, ierr := strconv.ParseInt(s, 10, 64)
		if (ierr == nil && i < 0) || (errors.Is(ierr, strconv.ErrRange) && strings.HasPrefix(s, "-")) {
			return 0, nil
		}
		return 0, fmt.Errorf("%s: %q is not a number", name, s)
	}
	return v, nil
}

// parseKeyed parses a flat keyed file: "key value" per line (memory.stat,
// cpu.stat, cpuacct.stat, memory.events, memory.oom_control).
func parseKeyed(text, name string) (map[string]uint64, error) {
	kv := map[string]uint64{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: malformed line %q", name, line)
		}
		v, err := parseUint(f[1], name, maxV2)
		if err != nil {
			return nil, err
		}
		kv[f[0]] = v
	}
	return kv, nil
}

// setFields copies kv into m's uint64 fields of the same name (after
// renaming by alias), so that every key the kernel and the proto share is
// carried without a hand-written line per key. Keys the proto lacks are
// ignored: kernels add keys over time.
func setFields(m proto.Message, kv map[string]uint64, alias map[string]string) {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for k, v := range kv {
		if a, ok := alias[k]; ok {
			k = a
		}
		fd := fields.ByName(protoreflect.Name(k))
		if fd == nil || fd.Kind() != protoreflect.Uint64Kind || fd.Cardinality() == protoreflect.Repeated {
			continue
		}
		r.Set(fd, protoreflect.ValueOfUint64(v))
	}
}

// device is a block device's major and minor numbers.
type device struct{ major, minor uint64 }

// parsePartitions reads /proc/partitions into device names ("/dev/sda"),
// which v1 blkio entries carry as containerd's cgroups library fills them.
func parsePartitions(text string) map[device]string {
	names := map[device]string{}
	for _, line := range strings.Split(text, "\n") {
		// "major minor  #blocks  name"; the header and blank line fail to parse.
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		maj, err1 := strconv.ParseUint(f[0], 10, 64)
		mnr, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		names[device{maj, mnr}] = "/dev/" + f[3]
	}
	return names
}

// parseDevNum parses "8:16".
func parseDevNum(s, name string) (device, error) {
	a, b, ok := strings.Cut(s, ":")
	maj, err1 := strconv.ParseUint(a, 10, 64)
	mnr, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return device{}, fmt.Errorf("%s: bad device %q", name, s)
	}
	return device{maj, mnr}, nil
}

// parseBlkio parses a v1 blkio statistics file:
//
//	8:0 Read 4096
//	8:0 Write 0
//	8:0 Total 4096
//	Total 4096
//
// (files without an operation, like blkio.time_recursive, have "8:0 1234").
func parseBlkio(text, name string, devices map[device]string) ([]*stats1.BlkIOEntry, error) {
	var entries []*stats1.BlkIOEntry
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (len(f) == 2 && f[0] == "Total") {
			continue
		}
		if len(f) != 2 && len(f) != 3 {
			return nil, fmt.Errorf("%s: malformed line %q", name, line)
		}
		dev, err := parseDevNum(f[0], name)
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed line %q", name, line)
		}
		e := &stats1.BlkIOEntry{Device: devices[dev], Major: dev.major, Minor: dev.minor, Value: v}
		if len(f) == 3 {
			e.Op = f[1]
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// parseIOStat parses v2 io.stat:
//
//	8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
func parseIOStat(text, name string) ([]*stats2.IOEntry, error) {
	var entries []*stats2.IOEntry
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dev, err := parseDevNum(f[0], name)
		if err != nil {
			return nil, err
		}
		e := &stats2.IOEntry{Major: dev.major, Minor: dev.minor}
		kv := map[string]uint64{}
		for _, p := range f[1:] {
			k, s, ok := strings.Cut(p, "=")
			v, err := strconv.ParseUint(s, 10, 64)
			if !ok || err != nil {
				return nil, fmt.Errorf("%s: malformed field %q in line %q", name, p, line)
			}
			kv[k] = v
		}
		setFields(e, kv, nil)
		entries = append(entries, e)
	}
	return entries, nil
}

// parsePSI parses a v2 pressure file (cpu.pressure, memory.pressure,
// io.pressure):
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
func parsePSI(text, name string) (*stats2.PSIStats, error) {
	psi := &stats2.PSIStats{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		d := &stats2.PSIData{}
		for _, p := range f[1:] {
			k, s, ok := strings.Cut(p, "=")
			if !ok {
				return nil, fmt.Errorf("%s: malformed field %q", name, p)
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(s, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(s, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(s, 64)
			case "total":
				d.Total, err = strconv.ParseUint(s, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: malformed field %q", name, p)
			}
		}
		switch f[0] {
		case "some":
			psi.Some = d
		case "full":
			psi.Full = d
		default:
			return nil, fmt.Errorf("%s: malformed line %q", name, line)
		}
	}
	return psi, nil
}

// parsePerCPU parses cpuacct.usage_percpu: nanoseconds per CPU, one line.
func parsePerCPU(text, name string) ([]uint64, error) {
	var out []uint64
	for _, s := range strings.Fields(text) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", name, s)
		}
		out = append(out, v)
	}
	return out, nil
}
