package cli

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podbox/podbox/sandbox"
)

// sizeUnit is the multiple a size's suffix stands for (lower-cased):
// docker's (k, m, g, t, p, with an optional b) and Kubernetes' binary ones
// (Ki, Mi, Gi, …, with an optional B), all powers of 1024. Kubernetes'
// decimal suffixes are not among them: docker reads "1G" as 1 GiB, and so
// does podbox, whatever the case.
func sizeUnit(suffix string) (int64, bool) {
	switch strings.TrimSuffix(strings.TrimSuffix(suffix, "b"), "i") {
	case "":
		return 1, suffix == "" || suffix == "b"
	case "k":
		return 1 << 10, true
	case "m":
		return 1 << 20, true
	case "g":
		return 1 << 30, true
	case "t":
		return 1 << 40, true
	case "p":
		return 1 << 50, true
	}
	return 0, false
}

// parseSize parses a size in bytes: a decimal number (fractions allowed,
// "1.5g") and a unit (sizeUnit).
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "kmgtpibKMGTPIB")
	unit, ok := sizeUnit(strings.ToLower(strings.TrimSpace(s[len(num):])))
	num = strings.TrimSpace(num)
	if !ok || num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 {
		return 0, errors.New("malformed size")
	}
	// A whole number is taken exactly: a float64 holds integers only up
	// to 2^53, and a byte count is passed on as it was given.
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/unit {
			return 0, errors.New("size too large")
		}
		return n * unit, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errors.New("malformed size")
	}
	bytes := math.Floor(f * float64(unit))
	if bytes >= math.MaxInt64 {
		return 0, errors.New("size too large")
	}
	return int64(bytes), nil
}

// parseMemory parses --memory: a size of at least sandbox.MinMemory, or 0
// for no limit (docker's meaning).
func parseMemory(flag, s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a size such as 512m, 1g, 512Mi or 1Gi", flag, s)
	}
	if n > 0 && n < sandbox.MinMemory {
		return 0, fmt.Errorf("%s %q: below the minimum of 6 MiB", flag, s)
	}
	return n, nil
}

// parseCPUs parses --cpus: a decimal number of CPUs ("0.5", "2"), or
// Kubernetes' millicores ("500m"), from 0.01 up to the node's CPUs.
func parseCPUs(flag, s string) (float64, error) {
	num, milli := strings.CutSuffix(s, "m")
	if num == "" || strings.Trim(num, "0123456789.") != "" || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("%s %q: want a decimal number of CPUs such as 0.5 or 2, or millicores such as 500m", flag, s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a decimal number of CPUs such as 0.5 or 2", flag, s)
	}
	if milli {
		f /= 1000
	}
	if n := runtime.NumCPU(); f > float64(n) {
		return 0, fmt.Errorf("%s %q: more than the node's %d CPUs", flag, s, n)
	}
	if f < sandbox.MinCPUs {
		return 0, fmt.Errorf("%s %q: want at least %v CPUs", flag, s, sandbox.MinCPUs)
	}
	return f, nil
}

// parseResources parses the limit flags; pidsLimit is --pids-limit, where
// -1 means none, as in docker. The result is nil when nothing is limited.
func parseResources(memory, cpus string, pidsLimit int64) (*sandbox.Resources, error) {
	var r sandbox.Resources
	var err error
	if memory != "" {
		if r.Memory, err = parseMemory("--memory", memory); err != nil {
			return nil, err
		}
	}
	if cpus != "" {
		if r.CPUs, err = parseCPUs("--cpus", cpus); err != nil {
			return nil, err
		}
	}
	switch {
	case pidsLimit > 0:
		r.PidsLimit = pidsLimit
	case pidsLimit < -1:
		return nil, fmt.Errorf("--pids-limit %d: want a positive number, or -1 for no limit", pidsLimit)
	}
	if r.IsZero() {
		return nil, nil
	}
	return &r, nil
}

// specResources is the OCI runtime's form of a container's limits. The
// memory limit covers swap too (as Kubernetes': a container's memory is its
// RAM) where the host can limit swap (swap); elsewhere swap is not
// limited, and runc would fail to write a swap limit.
func specResources(r *sandbox.Resources, swap bool) *specs.LinuxResources {
	var lr specs.LinuxResources
	if r.Memory > 0 {
		limit := r.Memory
		lr.Memory = &specs.LinuxMemory{Limit: &limit}
		if swap {
			lr.Memory.Swap = &limit
		}
	}
	if r.CPUs > 0 {
		quota, period := r.CPUQuota(), uint64(sandbox.CPUPeriod)
		lr.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if r.PidsLimit > 0 {
		limit := r.PidsLimit
		lr.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return &lr
}

// limitAnnotations puts sandbox create's --memory and --cpus into
// CreateSandbox's annotations, in the forms the shim reads: bytes, and a
// decimal number of CPUs.
func (o createOptions) limitAnnotations(ann map[string]string) error {
	r, err := parseResources(o.memory, o.cpus, 0)
	if err != nil || r == nil {
		return err
	}
	if r.Memory > 0 {
		ann[annMemory] = strconv.FormatInt(r.Memory, 10)
	}
	if r.CPUs > 0 {
		ann[annCPUs] = strconv.FormatFloat(r.CPUs, 'f', -1, 64)
	}
	return nil
}
