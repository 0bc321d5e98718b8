package plot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/podbox/podbox/bench/report"
)

func TestScaleWritesPNG(t *testing.T) {
	s := report.Scale{Target: 6, Reached: 6, CreateMs: []float64{10, 11, 12, 13, 20, 40},
		Checkpoints: []report.Checkpoint{{Count: 3, PSSKiB: 3000, NodeUsedKiB: 6000}, {Count: 6, PSSKiB: 6000, NodeUsedKiB: 12000}}}
	s.Windows = report.Windows(s.CreateMs, 3)
	path := filepath.Join(t.TempDir(), "scale.png")
	if err := Scale(path, s, "test machine"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 400 {
		t.Errorf("plot is %v, want at least 400×400", b)
	}
	if err := Scale(filepath.Join(t.TempDir(), "empty.png"), report.Scale{}, "x"); err == nil {
		t.Error("Scale of a run without creates succeeded, want an error")
	}
}
