//go:build linux

package main

import (
	"fmt"
	"html"
	"strings"
)

// Colours of the contestants in the plot, in allContestants order.
var palette = map[string]string{
	"lvsd-nat":     "#1f77b4",
	"lvsd-nat-pkt": "#17becf",
	"lvsd-dr-pkt":  "#2ca02c",
	"lvsd-tun-pkt": "#98df8a",
	"lvsd-dr":      "#4a9fe0",
	"lvsd-tun":     "#9cc7ee",
	"nft":          "#2ca02c",
	"haproxy":      "#ff7f0e",
	"direct":       "#7f7f7f",
}

// svg draws one panel per metric: a horizontal bar per contestant at the
// median, a line from min to max, and the median as text. Each panel has
// its own scale, from 0.
func (r *report) svg() string {
	const (
		width  = 760
		left   = 90  // contestant labels
		barMax = 520 // longest bar
		rowH   = 22
		titleH = 28
		gap    = 14
	)
	ms := r.activeMetrics()
	cs := r.b.f.only
	panelH := titleH + rowH*len(cs) + gap
	height := 56 + panelH*len(ms) + 20
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="10" y="22" font-size="15" font-weight="bold">lvsd bench: median, min–max over %d round(s) of %v</text>`+"\n", r.b.f.rounds, r.b.f.duration)
	w(`<text x="10" y="40" fill="#444">%s</text>`+"\n", html.EscapeString(fmt.Sprintf("%s, %d cores, Linux %s, %s", r.machine.CPU, r.machine.Cores, r.machine.Kernel, r.machine.Date)))
	y := 56
	for _, m := range ms {
		w(`<text x="10" y="%d" font-size="13" font-weight="bold">%s (%s)</text>`+"\n", y+16, html.EscapeString(m.title), html.EscapeString(m.unit))
		top := 0.0
		sums := map[string]summary{}
		for _, c := range cs {
			s := r.b.summarize(m.key, c)
			sums[c] = s
			if s.n > 0 && s.max > top {
				top = s.max
			}
		}
		if top <= 0 {
			top = 1
		}
		scale := float64(barMax) / top
		ry := y + titleH
		for _, c := range cs {
			s := sums[c]
			cy := ry + rowH/2
			w(`<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-8, cy, c)
			switch {
			case s.na != "":
				w(`<text x="%d" y="%d" dominant-baseline="middle" fill="#888">n/a</text>`+"\n", left, cy)
			case s.n == 0:
				w(`<text x="%d" y="%d" dominant-baseline="middle" fill="#c00">failed</text>`+"\n", left, cy)
			default:
				bw := s.med * scale
				w(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, ry+3, bw, rowH-6, palette[c])
				if s.n > 1 {
					x0, x1 := float64(left)+s.min*scale, float64(left)+s.max*scale
					w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-width="1.2"/>`+"\n", x0, cy, x1, cy)
					w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x0, cy-5, x0, cy+5)
					w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x1, cy-5, x1, cy+5)
				}
				tx := float64(left) + max(bw, s.max*scale) + 6
				w(`<text x="%.1f" y="%d" dominant-baseline="middle">%s</text>`+"\n", tx, cy, m.format(s.med))
			}
			ry += rowH
		}
		w(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`+"\n", left, y+titleH, left, ry)
		y += panelH
	}
	w("</svg>\n")
	return sb.String()
}
