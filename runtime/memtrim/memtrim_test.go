package memtrim

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
)

func TestDue(t *testing.T) {
	tr := &Trimmer{FirstAfter: 2000, Every: 100, base: 0}
	for _, tc := range []struct {
		allocated, cycles, base uint64
		want                    bool
	}{
		{1999, 0, 0, false}, // never collected: a fresh process is left alone
		{2000, 0, 0, true},
		{150, 1, 0, true}, // collected before: the collector's metadata is paid
		{1050, 3, 1000, false},
		{1100, 3, 1000, true},
	} {
		tr.base = tc.base
		if got := tr.due(tc.allocated, tc.cycles); got != tc.want {
			t.Errorf("due(allocated %d, cycles %d) after a trim at %d = %v, want %v", tc.allocated, tc.cycles, tc.base, got, tc.want)
		}
	}
}

// newTestTrimmer trims at every quiet moment, reporting on the returned
// channel, for each trim, how many requests were in flight then.
func newTestTrimmer(quiet time.Duration) (*Trimmer, chan int) {
	trims := make(chan int, 10)
	tr := &Trimmer{Quiet: quiet, Waits: []string{"/svc/Wait"}}
	tr.free = func() { trims <- tr.inFlight } // tr.mu is held
	return tr, trims
}

func call(tr *Trimmer, method string, release <-chan struct{}) {
	tr.Intercept(context.Background(), func(any) error { return nil }, &ttrpc.UnaryServerInfo{FullMethod: method},
		func(context.Context, func(any) error) (any, error) {
			<-release
			return nil, nil
		})
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func TestTrimAfterQuiet(t *testing.T) {
	tr, trims := newTestTrimmer(20 * time.Millisecond)
	// A Wait that never ends does not hold trims off.
	go call(tr, "/svc/Wait", make(chan struct{}))
	call(tr, "/svc/State", closed())
	select {
	case <-trims:
	case <-time.After(10 * time.Second):
		t.Fatal("no trim after the last request ended")
	}
	// One trim per burst: nothing more until another request.
	select {
	case <-trims:
		t.Fatal("a second trim without a request in between")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestNoTrimWhileBusy(t *testing.T) {
	tr, trims := newTestTrimmer(50 * time.Millisecond)
	release := make(chan struct{})
	// Stats schedules a trim; Create, in flight across that moment,
	// must hold it off until it ends.
	call(tr, "/svc/Stats", closed())
	done := make(chan struct{})
	go func() { call(tr, "/svc/Create", release); close(done) }()
	time.Sleep(300 * time.Millisecond)
	close(release)
	<-done
	for deadline := time.After(10 * time.Second); ; {
		select {
		case n := <-trims:
			if n != 0 {
				t.Fatalf("trimmed with %d requests in flight", n)
			}
			if tr.busy() {
				continue
			}
			return
		case <-deadline:
			t.Fatal("no trim after the busy request ended")
		}
	}
}

func (t *Trimmer) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inFlight > 0
}
