package nodegraph

import (
	"image"
	"unicode/utf8"
)

// The layout's units are pixels of the 7×13 font the PNG is drawn with; the
// SVG uses the same coordinates with a monospace font of that size.
const (
	charW   = 7
	lineH   = 16
	pad     = 8
	minGap  = 60
	rowGap  = 18
	margin  = 20
	fontAsc = 11
)

// placed is a box with its rectangle.
type placed struct {
	box
	r image.Rectangle
}

// layout places the columns left to right, each box as wide as its longest
// line, the boxes of a column one under the other; edges run from the right
// middle of one box to the left middle of the next, with room between the
// columns for the longest edge label.
func (g Graph) layout() ([]placed, []edge, image.Point) {
	cols, edges := g.elements()
	colGap := minGap
	for _, e := range edges {
		colGap = max(colGap, utf8.RuneCountInString(e.label)*charW+2*pad)
	}
	var out []placed
	x, height := margin, 0
	for _, col := range cols {
		if len(col) == 0 {
			continue
		}
		w := 0
		for _, b := range col {
			for _, l := range append([]string{b.title}, b.lines...) {
				w = max(w, utf8.RuneCountInString(l)*charW)
			}
		}
		w += 2 * pad
		y := margin
		for _, b := range col {
			h := (1+len(b.lines))*lineH + pad
			out = append(out, placed{box: b, r: image.Rect(x, y, x+w, y+h)})
			y += h + rowGap
		}
		height = max(height, y)
		x += w + colGap
	}
	return out, edges, image.Pt(x-colGap+margin, height-rowGap+margin)
}

func find(ps []placed, id string) (placed, bool) {
	for _, p := range ps {
		if p.id == id {
			return p, true
		}
	}
	return placed{}, false
}

// ends are an edge's end points.
func ends(ps []placed, e edge) (image.Point, image.Point, bool) {
	a, ok1 := find(ps, e.from)
	b, ok2 := find(ps, e.to)
	if !ok1 || !ok2 {
		return image.Point{}, image.Point{}, false
	}
	return image.Pt(a.r.Max.X, (a.r.Min.Y+a.r.Max.Y)/2), image.Pt(b.r.Min.X, (b.r.Min.Y+b.r.Max.Y)/2), true
}
