// Package plot draws the scale run as a PNG: create latency against the
// number of sandboxes (every create, and the p50/p99 of each window) above
// memory against the number of sandboxes. It draws from a report.Scale and
// never measures anything.
package plot

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/podbox/podbox/bench/report"
)

var (
	grey   = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
)

// Scale writes the PNG of s to path, titled with machine.
func Scale(path string, s report.Scale, machine string) error {
	if len(s.CreateMs) == 0 {
		return fmt.Errorf("plot %s: the scale run has no creates to draw", path)
	}
	lat, err := latency(s, machine)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	mem, err := memory(s)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	const w, h = 20 * vg.Centimeter, 22 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	plots := [][]*plot.Plot{{lat}, {mem}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	mem.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: write PNG: %w", path, err)
	}
	return f.Close()
}

func latency(s report.Scale, machine string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("podbox sandbox create latency vs sandboxes (%s)", machine)
	p.X.Label.Text = "sandboxes already running + 1"
	p.Y.Label.Text = "create latency (ms)"
	p.Add(plotter.NewGrid())

	all := make(plotter.XYs, len(s.CreateMs))
	for i, v := range s.CreateMs {
		all[i] = plotter.XY{X: float64(i + 1), Y: v}
	}
	sc, err := plotter.NewScatter(all)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Color = grey
	sc.GlyphStyle.Radius = vg.Points(1)
	p.Add(sc)
	p.Legend.Add("each create", sc)

	if len(s.Windows) > 0 {
		p50 := make(plotter.XYs, len(s.Windows))
		p99 := make(plotter.XYs, len(s.Windows))
		for i, w := range s.Windows {
			mid := float64(w.From+w.To) / 2
			p50[i] = plotter.XY{X: mid, Y: w.Create.P50}
			p99[i] = plotter.XY{X: mid, Y: w.Create.P99}
		}
		for _, l := range []struct {
			name string
			xy   plotter.XYs
			c    color.Color
		}{{"p50 per window", p50, blue}, {"p99 per window", p99, orange}} {
			line, err := plotter.NewLine(l.xy)
			if err != nil {
				return nil, err
			}
			line.Color = l.c
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(l.name, line)
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	return p, nil
}

func memory(s report.Scale) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "memory vs sandboxes"
	p.X.Label.Text = "sandboxes"
	p.Y.Label.Text = "MiB"
	p.Add(plotter.NewGrid())
	pss := make(plotter.XYs, len(s.Checkpoints))
	node := make(plotter.XYs, len(s.Checkpoints))
	for i, c := range s.Checkpoints {
		pss[i] = plotter.XY{X: float64(c.Count), Y: float64(c.PSSKiB) / 1024}
		node[i] = plotter.XY{X: float64(c.Count), Y: float64(c.NodeUsedKiB) / 1024}
	}
	for _, l := range []struct {
		name string
		xy   plotter.XYs
		c    color.Color
	}{{"PSS of every shim + pause", pss, blue}, {"node: fall of MemAvailable", node, orange}} {
		if len(l.xy) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(l.xy)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = l.c, l.c
		points.Radius = vg.Points(2)
		p.Add(line, points)
		p.Legend.Add(l.name, line, points)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	return p, nil
}
