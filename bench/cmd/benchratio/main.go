// Command benchratio turns go test -bench output with sub-benchmarks named .../impl=NAME into a
// markdown table of throughput relative to a reference implementation, paired per repetition:
// the n-th result of each implementation is divided by the n-th result of the reference, and the
// table shows the median of those ratios with their range, then the median ops/s. Pairing
// results that ran seconds apart, rather than comparing medians taken minutes apart, keeps the
// load of a shared machine from favouring one implementation.
//
//	go run ./cmd/benchratio [-ref otter] < throughput.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
)

var line = regexp.MustCompile(`^Benchmark(\S+)/impl=([\w.-]+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op`)

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	ref := flag.String("ref", "otter", "reference implementation")
	flag.Parse()
	ns := map[string]map[string][]float64{} // benchmark -> impl -> ns/op per repetition
	var benches, impls []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			continue
		}
		if ns[m[1]] == nil {
			ns[m[1]] = map[string][]float64{}
			benches = append(benches, m[1])
		}
		if !slices.Contains(impls, m[2]) {
			impls = append(impls, m[2])
		}
		ns[m[1]][m[2]] = append(ns[m[1]][m[2]], v)
	}
	fmt.Print("| benchmark |")
	for _, impl := range impls {
		fmt.Printf(" %s |", impl)
	}
	fmt.Print("\n|---|")
	for range impls {
		fmt.Print("---:|")
	}
	fmt.Println()
	for _, b := range benches {
		fmt.Printf("| %s |", b)
		base := ns[b][*ref]
		for _, impl := range impls {
			xs := ns[b][impl]
			n := min(len(xs), len(base))
			if n == 0 {
				fmt.Print(" – |")
				continue
			}
			ratios := make([]float64, n)
			for i := range n {
				ratios[i] = base[i] / xs[i] // throughput ratio: > 1 is faster than the reference
			}
			fmt.Printf(" %.2f× (%.2f–%.2f), %.1fM ops/s |", median(ratios), slices.Min(ratios), slices.Max(ratios), 1e3/median(xs))
		}
		fmt.Println()
	}
	fmt.Printf("\nEach cell: median over the repetitions of (ns/op of %s) / (ns/op of the implementation)\nin the same repetition, its range, and the median throughput.\n", *ref)
}
