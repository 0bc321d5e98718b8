package fetch

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Now that the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPlain(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := &Plain{W: &out, Now: clock.now}
	p.Layer("aaaaaaaaaaaa", 3000)
	p.Layer("bbbbbbbbbbbb", 10)
	p.Layer("cccccccccccc", -1)
	p.Advance("aaaaaaaaaaaa", 1000)
	p.Advance("aaaaaaaaaaaa", 2000)
	p.Advance("unknown", 5) // ignored
	if out.Len() != 0 {
		t.Errorf("Plain wrote before a layer finished: %q", out.String())
	}
	clock.advance(2 * time.Second)
	p.LayerDone("aaaaaaaaaaaa", false)
	p.LayerDone("bbbbbbbbbbbb", true)
	p.LayerDone("unknown", false) // never started: nothing to say
	want := "layer aaaaaaaaaaaa: 3.0 kB in 2s (1.5 kB/s)\n" +
		"layer bbbbbbbbbbbb: already present\n"
	if out.String() != want {
		t.Errorf("Plain wrote\n%q\nwant\n%q", out.String(), want)
	}
	// A layer that took no time has no rate.
	out.Reset()
	p.Advance("cccccccccccc", 7)
	p.LayerDone("cccccccccccc", false)
	if got := out.String(); got != "layer cccccccccccc: 7 B in 2s (3 B/s)\n" {
		t.Errorf("Plain wrote %q", got)
	}
	out.Reset()
	p.Layer("dddddddddddd", 1)
	p.LayerDone("dddddddddddd", false)
	if got := out.String(); got != "layer dddddddddddd: 0 B in 0s (-)\n" {
		t.Errorf("Plain wrote %q", got)
	}
}

// lastFrame is what a terminal shows after out: the lines of the last
// redraw.
func lastFrame(t *testing.T, out string, layers int) []string {
	t.Helper()
	if i := strings.LastIndex(out, fmt.Sprintf("\x1b[%dA", layers)); i >= 0 {
		out = out[i+len(fmt.Sprintf("\x1b[%dA", layers)):]
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		l, ok := strings.CutPrefix(l, "\x1b[2K")
		if !ok {
			t.Errorf("line %q does not clear the line first", l)
		}
		lines = append(lines, l)
	}
	if len(lines) != layers {
		t.Fatalf("last frame %q has %d lines, want %d", out, len(lines), layers)
	}
	return lines
}

func TestTerminal(t *testing.T) {
	var out bytes.Buffer
	term := &Terminal{W: &out}
	term.Layer("aaaaaaaaaaaa", 3000)
	term.Layer("bbbbbbbbbbbb", 10)
	term.Layer("cccccccccccc", -1)
	term.Advance("aaaaaaaaaaaa", 1500)
	term.Advance("cccccccccccc", 42)
	term.draw()
	first := out.String()
	if strings.Contains(first, "\x1b[3A") {
		t.Errorf("the first draw moves the cursor up: %q", first)
	}
	lines := lastFrame(t, first, 3)
	for i, want := range []string{
		"aaaaaaaaaaaa  pulling   1.5 kB / 3.0 kB  ",
		"bbbbbbbbbbbb  pulling   0 B / 10 B  ",
		"cccccccccccc  pulling   42 B / ?  ",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}

	term.Advance("aaaaaaaaaaaa", 1500)
	term.LayerDone("aaaaaaaaaaaa", false)
	term.LayerDone("bbbbbbbbbbbb", true)
	term.LayerDone("cccccccccccc", false)
	term.Stop() // never started: draws the final state
	second := strings.TrimPrefix(out.String(), first)
	if !strings.HasPrefix(second, "\x1b[3A") {
		t.Errorf("the redraw does not go back up 3 lines: %q", second)
	}
	lines = lastFrame(t, out.String(), 3)
	for i, want := range []string{
		"aaaaaaaaaaaa  done      3.0 kB in ",
		"bbbbbbbbbbbb  already present",
		"cccccccccccc  done      42 B in ",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("final line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the Terminal's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTerminalRedraws(t *testing.T) {
	var out syncBuffer
	term := &Terminal{W: &out, Interval: time.Millisecond}
	term.Start()
	var wg sync.WaitGroup
	ids := []string{"layer-one", "layer-two", "layer-three"}
	for _, id := range ids {
		term.Layer(id, 1000)
	}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				term.Advance(id, 100)
				time.Sleep(time.Millisecond)
			}
			term.LayerDone(id, false)
		}()
	}
	wg.Wait()
	term.Stop()
	got := out.String()
	if !strings.Contains(got, "pulling") {
		t.Errorf("no redraw while pulling: %q", got)
	}
	lines := lastFrame(t, got, 3)
	for i, id := range ids {
		if !strings.HasPrefix(lines[i], id+"  done      1.0 kB in ") {
			t.Errorf("final line %d = %q", i, lines[i])
		}
	}
	// Nothing is drawn after Stop.
	n := len(out.String())
	time.Sleep(5 * time.Millisecond)
	if len(out.String()) != n {
		t.Errorf("the terminal redrew after Stop")
	}
}

func TestQuiet(t *testing.T) {
	var p Progress = Quiet{}
	p.Layer("x", 1)
	p.Advance("x", 1)
	p.LayerDone("x", true)
	if (&Options{}).progress() != (Quiet{}) {
		t.Errorf("default progress is not Quiet")
	}
}
