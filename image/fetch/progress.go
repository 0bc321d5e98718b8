package fetch

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/podbox/podbox/image/store"
)

// Progress hears about each layer of a pull or a load. Calls come from
// several goroutines at once.
type Progress interface {
	// Layer says a layer starts; total is its size in bytes, -1 if unknown.
	Layer(id string, total int64)
	Advance(id string, n int64)
	// LayerDone says the layer is stored; existed when it was already.
	LayerDone(id string, existed bool)
}

// Quiet reports nothing.
type Quiet struct{}

func (Quiet) Layer(string, int64)    {}
func (Quiet) Advance(string, int64)  {}
func (Quiet) LayerDone(string, bool) {}

type layerState struct {
	id       string
	total    int64
	done     int64
	start    time.Time
	end      time.Time
	finished bool
	existed  bool
}

// Plain writes one line per finished layer, for logs and pipes.
type Plain struct {
	W   io.Writer
	Now func() time.Time

	mu     sync.Mutex
	layers map[string]*layerState
}

func (p *Plain) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Plain) Layer(id string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.layers == nil {
		p.layers = map[string]*layerState{}
	}
	p.layers[id] = &layerState{id: id, total: total, start: p.now()}
}

func (p *Plain) Advance(id string, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.layers[id]; l != nil {
		l.done += n
	}
}

func (p *Plain) LayerDone(id string, existed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.layers[id]
	if l == nil {
		return
	}
	if existed {
		fmt.Fprintf(p.W, "layer %s: already present\n", id)
		return
	}
	d := p.now().Sub(l.start)
	fmt.Fprintf(p.W, "layer %s: %s in %s (%s)\n", id, store.FormatSize(l.done), d.Round(time.Millisecond), rate(l.done, d))
}

// Terminal redraws one line per layer in place (bytes, total, speed), as
// docker pull does on a terminal. Start begins the redraws; Stop draws the
// final state.
type Terminal struct {
	W        io.Writer
	Interval time.Duration

	mu     sync.Mutex
	order  []*layerState
	byID   map[string]*layerState
	drawn  int
	stop   chan struct{}
	closed chan struct{}
}

// Start redraws every Interval (100 ms if zero) until Stop.
func (t *Terminal) Start() {
	if t.Interval == 0 {
		t.Interval = 100 * time.Millisecond
	}
	t.stop, t.closed = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.closed)
		tick := time.NewTicker(t.Interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				t.draw()
			case <-t.stop:
				return
			}
		}
	}()
}

// Stop ends the redraws and draws the last state.
func (t *Terminal) Stop() {
	if t.stop != nil {
		close(t.stop)
		<-t.closed
		t.stop = nil
	}
	t.draw()
}

func (t *Terminal) Layer(id string, total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = map[string]*layerState{}
	}
	l := &layerState{id: id, total: total, start: time.Now()}
	t.byID[id] = l
	t.order = append(t.order, l)
}

func (t *Terminal) Advance(id string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.byID[id]; l != nil {
		l.done += n
	}
}

func (t *Terminal) LayerDone(id string, existed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.byID[id]; l != nil {
		l.finished, l.existed, l.end = true, existed, time.Now()
	}
}

func (t *Terminal) draw() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", t.drawn) // back to the first layer's line
	}
	now := time.Now()
	for _, l := range t.order {
		b.WriteString("\x1b[2K") // clear the line
		b.WriteString(layerLine(l, now))
		b.WriteByte('\n')
	}
	t.drawn = len(t.order)
	io.WriteString(t.W, b.String())
}

// layerLine is one layer's line of the terminal display.
func layerLine(l *layerState, now time.Time) string {
	switch {
	case l.existed:
		return fmt.Sprintf("%s  already present", l.id)
	case l.finished:
		return fmt.Sprintf("%s  done      %s in %s", l.id, store.FormatSize(l.done), l.end.Sub(l.start).Round(time.Millisecond))
	}
	total := "?"
	if l.total >= 0 {
		total = store.FormatSize(l.total)
	}
	return fmt.Sprintf("%s  pulling   %s / %s  %s", l.id, store.FormatSize(l.done), total, rate(l.done, now.Sub(l.start)))
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return store.FormatSize(int64(float64(n)/d.Seconds())) + "/s"
}
