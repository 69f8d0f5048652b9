package main

import (
	"fmt"
	"io"
	"strings"
)

// printTable writes the results as a markdown table: one row per trace and size, one column
// per cache and the optimum, then each cache's mean over all rows.
func printTable(w io.Writer, cfg config, res []result) {
	head := "| trace | size | entries |"
	sep := "|---|---:|---:|"
	for _, i := range cfg.impls {
		head += " " + i.Name + " |"
		sep += "---:|"
	}
	fmt.Fprintln(w, head+" optimum |")
	fmt.Fprintln(w, sep+"---:|")
	sums := make([]float64, len(cfg.impls)+1)
	for _, r := range res {
		var row strings.Builder
		fmt.Fprintf(&row, "| %s | %s | %d |", r.trace.Name, r.size, r.entries)
		for j, hr := range r.ratios {
			fmt.Fprintf(&row, " %.2f%% |", 100*hr)
			sums[j] += hr
		}
		fmt.Fprintln(w, row.String())
	}
	if len(res) > 1 {
		row := "| mean | | |"
		for _, s := range sums {
			row += fmt.Sprintf(" %.2f%% |", 100*s/float64(len(res)))
		}
		fmt.Fprintln(w, row)
	}
}
