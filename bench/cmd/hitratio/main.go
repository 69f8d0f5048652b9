// Command hitratio prints the hit ratio of each cache in package localcache on a zipf trace and
// on a zipf trace mixed with one-off scans, as a markdown table with percentage points relative
// to otter.
//
//	go run ./cmd/hitratio [-n 2000000] [-capacity 10000] [-seed 1] [-impls store,golang-lru]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/typedcache/groupcache/bench/localcache"
)

func main() {
	n := flag.Int("n", 2_000_000, "requests per trace")
	capacity := flag.Int("capacity", localcache.Keys/10, "cache capacity in entries")
	seed := flag.Uint64("seed", 1, "trace seed")
	only := flag.String("impls", "", "comma-separated implementations to run (default all; otter always runs as the reference)")
	flag.Parse()

	traces := []struct {
		name string
		keys []string
	}{
		{"zipf", localcache.KeysOf[string](localcache.ZipfTrace(*n, *seed))},
		{"zipf+scans", localcache.KeysOf[string](localcache.ScanTrace(*n, *seed))},
	}
	fmt.Printf("%d requests per trace, %d keys, zipf s=%.2f, capacity %d entries, seed %d\n\n",
		*n, localcache.Keys, localcache.ZipfS, *capacity, *seed)
	header := "| cache |"
	sep := "|---|"
	for _, tr := range traces {
		header += " " + tr.name + " hit ratio | vs otter |"
		sep += "---:|---:|"
	}
	fmt.Println(header)
	fmt.Println(sep)
	ref := make([]float64, len(traces))
	for i, impl := range localcache.Impls[string]() {
		if i > 0 && *only != "" && !strings.Contains(","+*only+",", ","+impl.Name+",") {
			continue
		}
		var row strings.Builder
		fmt.Fprintf(&row, "| %s |", impl.Name)
		for j, tr := range traces {
			hr := localcache.HitRatio(impl.New(*capacity, true), tr.keys)
			if i == 0 {
				ref[j] = hr
			}
			fmt.Fprintf(&row, " %.2f%% | %+.2f pp |", 100*hr, 100*(hr-ref[j]))
		}
		fmt.Println(row.String())
	}
	os.Stdout.Sync()
}
