package nodegraph

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	ink   = color.RGBA{0x22, 0x33, 0x44, 0xff}
	wire  = color.RGBA{0x55, 0x55, 0x55, 0xff}
	paper = color.RGBA{0xf4, 0xf7, 0xfb, 0xff}
)

// PNG renders g as a PNG image, with the same layout as SVG.
func (g Graph) PNG() ([]byte, error) {
	ps, edges, size := g.layout()
	img := image.NewRGBA(image.Rect(0, 0, size.X, size.Y))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for _, e := range edges {
		p, q, ok := ends(ps, e)
		if !ok {
			continue
		}
		line(img, p, q, wire)
		text(img, image.Pt(p.X+4, (p.Y+q.Y)/2-4), e.label, wire)
	}
	for _, p := range ps {
		draw.Draw(img, p.r, image.NewUniform(paper), image.Point{}, draw.Src)
		rect(img, p.r, ink)
		for i, l := range append([]string{p.title}, p.lines...) {
			text(img, image.Pt(p.r.Min.X+pad, p.r.Min.Y+pad/2+fontAsc+i*lineH), l, ink)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func text(img draw.Image, at image.Point, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(at.X, at.Y)}
	d.DrawString(s)
}

func rect(img draw.Image, r image.Rectangle, c color.Color) {
	line(img, r.Min, image.Pt(r.Max.X-1, r.Min.Y), c)
	line(img, image.Pt(r.Max.X-1, r.Min.Y), image.Pt(r.Max.X-1, r.Max.Y-1), c)
	line(img, image.Pt(r.Min.X, r.Max.Y-1), image.Pt(r.Max.X-1, r.Max.Y-1), c)
	line(img, r.Min, image.Pt(r.Min.X, r.Max.Y-1), c)
}

// line draws from p to q (Bresenham).
func line(img draw.Image, p, q image.Point, c color.Color) {
	dx, dy := abs(q.X-p.X), -abs(q.Y-p.Y)
	sx, sy := sign(q.X-p.X), sign(q.Y-p.Y)
	e := dx + dy
	for {
		img.Set(p.X, p.Y, c)
		if p == q {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			p.X += sx
		}
		if e2 <= dx {
			e += dx
			p.Y += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
