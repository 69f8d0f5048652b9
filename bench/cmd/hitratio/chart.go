package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Chart geometry: one panel per trace, side by side, with the legend under them.
const (
	panelW, panelH = 300, 220
	marginL        = 48
	marginT        = 28
	plotW, plotH   = panelW - marginL - 12, panelH - marginT - 36
	legendH        = 28
)

// colors of the series: one per cache, in the order of localcache.Impls, then the optimum.
var colors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"}

// series is one line of a panel: a name and a hit ratio per size.
type series struct {
	name   string
	ratios []float64
}

// panel is the chart of one trace: hit ratio (y) against cache size (x, log scale).
type panel struct {
	title  string
	sizes  []string // labels
	x      []int    // entries
	series []series
}

// writeCharts writes the charts asked for: with -svg, one chart of every trace; with -svgdir,
// one chart per class.
func writeCharts(cfg config, res []result) error {
	if cfg.svg != "" {
		return writeSVGFile(cfg.svg, "", panels(cfg, res))
	}
	if cfg.svgDir == "" {
		return nil
	}
	var classes []string
	byClass := map[string][]result{}
	for _, r := range res {
		if _, ok := byClass[r.trace.Class]; !ok {
			classes = append(classes, r.trace.Class)
		}
		byClass[r.trace.Class] = append(byClass[r.trace.Class], r)
	}
	for _, c := range classes {
		name := "hitratio-" + strings.NewReplacer("+", "-", " ", "-").Replace(c) + ".svg"
		if err := writeSVGFile(filepath.Join(cfg.svgDir, name), c, panels(cfg, byClass[c])); err != nil {
			return err
		}
	}
	return nil
}

// panels groups results by trace, in order.
func panels(cfg config, res []result) []panel {
	var out []panel
	for _, r := range res {
		if len(out) == 0 || out[len(out)-1].title != r.trace.Name {
			p := panel{title: r.trace.Name}
			for _, i := range cfg.impls {
				p.series = append(p.series, series{name: i.Name})
			}
			p.series = append(p.series, series{name: "optimum"})
			out = append(out, p)
		}
		p := &out[len(out)-1]
		p.sizes = append(p.sizes, r.size.String())
		p.x = append(p.x, r.entries)
		for j, hr := range r.ratios {
			p.series[j].ratios = append(p.series[j].ratios, hr)
		}
	}
	return out
}

func writeSVGFile(path, title string, ps []panel) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	writeSVG(f, title, ps)
	return f.Close()
}

// writeSVG draws the panels as one SVG document.
func writeSVG(w io.Writer, title string, ps []panel) {
	top := 0
	if title != "" {
		top = 24
	}
	width, height := max(1, len(ps))*panelW, top+panelH+legendH
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	if title != "" {
		fmt.Fprintf(w, `<text x="%d" y="17" font-size="14" font-weight="bold">%s</text>`+"\n", 8, esc(title))
	}
	for i, p := range ps {
		drawPanel(w, p, i*panelW, top)
	}
	if len(ps) > 0 {
		drawLegend(w, ps[0].series, top+panelH+8)
	}
	fmt.Fprintln(w, "</svg>")
}

// drawPanel draws one panel at (x0, y0): axes, grid, one polyline per series.
func drawPanel(w io.Writer, p panel, x0, y0 int) {
	lo, hi, step := 0.0, 1.0, 0.2
	for _, st := range []float64{0.01, 0.02, 0.05, 0.1, 0.2} {
		if top := math.Ceil(maxRatio(p)/st-1e-9) * st; top/st <= 6 {
			hi, step = math.Max(top, st), st
			break
		}
	}
	px := func(i int) float64 { return float64(x0+marginL) + xpos(p.x, i)*plotW }
	py := func(r float64) float64 { return float64(y0+marginT) + (1-(r-lo)/(hi-lo))*plotH }
	fmt.Fprintf(w, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0+marginL, y0+16, esc(p.title))
	for r := lo; r <= hi+1e-9; r += step {
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0+marginL, x0+marginL+plotW, py(r), py(r))
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", x0+marginL-4, py(r)+4, 100*r)
	}
	for i, label := range p.sizes {
		fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(i), y0+marginT+plotH+14, esc(label))
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle" fill="#555">cache size</text>`+"\n", x0+marginL+plotW/2, y0+marginT+plotH+28)
	for j, s := range p.series {
		var pts []string
		for i, r := range s.ratios {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(i), py(r)))
		}
		dash := ""
		if s.name == "optimum" {
			dash = ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", colors[j%len(colors)], dash, strings.Join(pts, " "))
		for _, pt := range pts {
			xy := strings.Split(pt, ",")
			fmt.Fprintf(w, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`+"\n", xy[0], xy[1], colors[j%len(colors)])
		}
	}
}

func maxRatio(p panel) float64 {
	m := 0.0
	for _, s := range p.series {
		for _, r := range s.ratios {
			m = math.Max(m, r)
		}
	}
	return m
}

// xpos places size i of xs on [0, 1], on a log scale when the sizes differ.
func xpos(xs []int, i int) float64 {
	if len(xs) < 2 {
		return 0.5
	}
	lo, hi := math.Log(float64(xs[0])), math.Log(float64(xs[len(xs)-1]))
	if hi <= lo {
		return float64(i) / float64(len(xs)-1)
	}
	return (math.Log(float64(xs[i])) - lo) / (hi - lo)
}

func drawLegend(w io.Writer, ss []series, y int) {
	x := marginL
	for j, s := range ss {
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", x, x+18, y+6, y+6, colors[j%len(colors)])
		fmt.Fprintf(w, `<text x="%d" y="%d">%s</text>`+"\n", x+22, y+10, esc(s.name))
		x += 40 + 7*len(s.name)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
