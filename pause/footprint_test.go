package pause_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxAnonymousKiB is the target for the running pause's anonymous memory.
const maxAnonymousKiB = 600

// BenchmarkPauseFootprint reports what one sandbox's pause costs: the size of
// the binary built as the Makefile builds it, and the Pss and anonymous
// memory of a running, idle pause (from /proc/PID/smaps_rollup). It is a
// report, not a test: the memory figures vary a little from run to run with
// how many runtime threads were started. Run it with
//
//	go test -run '^$' -bench Pause -benchtime 1x ./pause/...
func BenchmarkPauseFootprint(b *testing.B) {
	bin := buildPause(b, "bench")
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	var pss, anon, threads int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := startPause(b, bin, nil, nil)
		p.awaitReady(b)
		r := settledRollup(b, p.pid())
		pss += r["Pss"]
		anon += r["Anonymous"]
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(p.pid()) + "/task")
		if err != nil {
			b.Fatalf("podbox-pause (pid %d) threads: %v", p.pid(), err)
		}
		threads += len(tasks)
		p.stop(b, syscall.SIGTERM)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(0, "ns/op") // the time of a loop that starts and stops processes means nothing
	b.ReportMetric(float64(fi.Size()), "binary-bytes")
	b.ReportMetric(float64(pss)/n, "Pss-KiB")
	b.ReportMetric(float64(anon)/n, "Anonymous-KiB")
	b.ReportMetric(float64(threads)/n, "threads")
	b.Logf("podbox-pause: binary %d bytes (target ≤ %d); running idle: Pss %.0f KiB, Anonymous %.0f KiB (target ≤ %d), %.1f threads",
		fi.Size(), maxBinarySize, float64(pss)/n, float64(anon)/n, maxAnonymousKiB, float64(threads)/n)
}

// settledRollup reads /proc/PID/smaps_rollup (values in KiB) until two reads
// in a row agree, so that the figures are those of the idle process rather
// than of its start-up.
func settledRollup(tb testing.TB, pid int) map[string]int {
	tb.Helper()
	deadline := time.Now().Add(patience)
	prev := smapsRollup(tb, pid)
	for {
		time.Sleep(50 * time.Millisecond)
		cur := smapsRollup(tb, pid)
		if cur["Pss"] == prev["Pss"] && cur["Anonymous"] == prev["Anonymous"] || time.Now().After(deadline) {
			return cur
		}
		prev = cur
	}
}

// smapsRollup reads /proc/PID/smaps_rollup into a map from field name to KiB.
func smapsRollup(tb testing.TB, pid int) map[string]int {
	tb.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/smaps_rollup"
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	fields := make(map[string]int)
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB")); err == nil {
			fields[k] = kib
		}
	}
	for _, k := range []string{"Pss", "Anonymous"} {
		if _, ok := fields[k]; !ok {
			tb.Fatalf("%s has no %s line", path, k)
		}
	}
	return fields
}
