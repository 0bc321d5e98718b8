package nodegraph

import (
	"fmt"
	"html"
	"strings"
)

// SVG renders g as an SVG document.
func (g Graph) SVG() []byte {
	ps, edges, size := g.layout()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="monospace" font-size="12">`+"\n",
		size.X, size.Y, size.X, size.Y)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", size.X, size.Y)
	for _, e := range edges {
		p, q, ok := ends(ps, e)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>`+"\n", p.X, p.Y, q.X, q.Y)
		if e.label != "" {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" font-size="10">%s</text>`+"\n", p.X+4, (p.Y+q.Y)/2-3, html.EscapeString(e.label))
		}
	}
	for _, p := range ps {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#f4f7fb" stroke="#234"/>`+"\n", p.r.Min.X, p.r.Min.Y, p.r.Dx(), p.r.Dy())
		for i, l := range append([]string{p.title}, p.lines...) {
			weight := ""
			if i == 0 {
				weight = ` font-weight="bold"`
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d"%s>%s</text>`+"\n", p.r.Min.X+pad, p.r.Min.Y+pad/2+fontAsc+i*lineH, weight, html.EscapeString(l))
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
