// Package memtrim returns the memory an idle server no longer needs to the
// kernel: once requests stop for a while, it runs one garbage collection
// and releases every free page (debug.FreeOSMemory).
//
// A shim is idle nearly all its life, and a Go runtime left alone gives
// back little: the heap grows to at least 4 MiB of garbage before its first
// collection, and the background scavenger then keeps about that much. A
// kubelet polling a pod's stats would so leave every shim several MiB
// larger than its live data (measured: an idle CRI pod's shim from 1.8 MiB
// of anonymous memory to 7 MiB after a few hundred stats requests).
//
// A collection is not free either: the first one allocates the collector's
// own metadata, more than half a MiB here, for good. So a Trimmer leaves a
// process that has never collected alone until it has allocated
// FirstAfter bytes (a shim just after its sandbox's create stays as it is),
// and afterwards trims once the process has allocated Every bytes since
// the last trim and Quiet has passed without a request.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
)

// Defaults of a Trimmer's thresholds.
const (
	DefaultQuiet      = 2 * time.Second
	DefaultFirstAfter = 2 << 20
	DefaultEvery      = 256 << 10
)

// Trimmer watches a server's requests and trims memory after each burst.
type Trimmer struct {
	// Quiet is how long no request may be in flight before a trim.
	Quiet time.Duration
	// FirstAfter is how much a process that has never collected must
	// have allocated for a first trim.
	FirstAfter uint64
	// Every is how much must have been allocated since the last trim (or
	// collection) for another one.
	Every uint64
	// Waits are the full ttrpc method names of requests that block until
	// something happens (a task's Wait): they do not count as work in
	// flight, or a shim serving one would never trim.
	Waits []string
	// free is what a trim does: debug.FreeOSMemory, replaced in tests.
	free func()

	mu       sync.Mutex
	inFlight int
	timer    *time.Timer
	// base is the allocation counter at the last trim.
	base uint64
}

// New returns a Trimmer with the default thresholds.
func New() *Trimmer {
	return &Trimmer{Quiet: DefaultQuiet, FirstAfter: DefaultFirstAfter, Every: DefaultEvery, free: debug.FreeOSMemory}
}

// Intercept is a ttrpc server interceptor that counts requests in flight
// and schedules a trim when the last one ends.
func (t *Trimmer) Intercept(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	if slices.Contains(t.Waits, info.FullMethod) {
		return m(ctx, u)
	}
	t.begin()
	defer t.end()
	return m(ctx, u)
}

func (t *Trimmer) begin() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inFlight++
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (t *Trimmer) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inFlight--
	if t.inFlight > 0 {
		return
	}
	if t.timer == nil {
		t.timer = time.AfterFunc(t.Quiet, t.maybeTrim)
		return
	}
	t.timer.Reset(t.Quiet)
}

// maybeTrim trims if nothing started meanwhile and enough was allocated.
func (t *Trimmer) maybeTrim() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inFlight > 0 {
		return
	}
	allocated, cycles := readCounters()
	if !t.due(allocated, cycles) {
		return
	}
	t.free()
	t.base, _ = readCounters()
}

// due says whether a trim is worth it, from the bytes allocated so far and
// the number of collections so far.
func (t *Trimmer) due(allocated, cycles uint64) bool {
	since := allocated - t.base
	if cycles == 0 {
		return since >= t.FirstAfter
	}
	return since >= t.Every
}

var samples = []string{"/gc/heap/allocs:bytes", "/gc/cycles/total:gc-cycles"}

// readCounters reads the runtime's cumulative allocation and collection
// counters (runtime/metrics: no stop of the world, unlike ReadMemStats).
func readCounters() (allocated, cycles uint64) {
	s := []metrics.Sample{{Name: samples[0]}, {Name: samples[1]}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		allocated = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		cycles = s[1].Value.Uint64()
	}
	return allocated, cycles
}
