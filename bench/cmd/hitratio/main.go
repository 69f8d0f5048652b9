// Command hitratio measures the hit ratio of this module's store and of otter v2, ristretto v2
// and golang-lru v2 (LRU) on request traces, next to the offline optimum (Belady's MIN), at the
// cache sizes asked. It prints a markdown table and can write an SVG chart of hit ratio against
// cache size.
//
// Without -trace it runs the generated suite of package workload (zipf at three skews, zipf with
// scans, loops, a shifting working set, a loop next to a zipf core, a web-like trace), one chart
// per class. With -trace it replays a file of the user's own:
//
//	go run ./cmd/hitratio                                    # the generated suite
//	go run ./cmd/hitratio -trace app.log.gz -sizes 1%,5%,20% -svg app.svg
//	go run ./cmd/hitratio -trace OLTP.arc -format arc -sizes 1000,10000
//	go run ./cmd/hitratio -trace requests.csv -column url
//
// Formats (-format; "auto", the default, guesses from the file name: .arc, .lirs or .trc, .csv,
// else lines; a gzip file, whatever its name, is decompressed):
//
//	lines  one key per line, any text
//	arc    ARC traces: "start count ignored id" per line, requesting blocks start..start+count-1
//	lirs   LIRS traces: one block number per line (other lines are skipped)
//	csv    a header line, then records; the key is the column named by -column
//
// Sizes are entries (every key counts as one entry, since traces carry no sizes), either as
// percentages of the trace's distinct keys ("5%") or as counts ("10000").
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/typedcache/groupcache/bench/localcache"
	"github.com/typedcache/groupcache/bench/workload"
)

type config struct {
	trace, format, column string
	sizes                 []size
	impls                 []localcache.Impl[uint64]
	n                     int
	seed                  uint64
	svg, svgDir           string
	class                 string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hitratio:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "hitratio:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("hitratio", flag.ContinueOnError)
	fs.StringVar(&c.trace, "trace", "", "trace file to replay (default: the generated suite)")
	fs.StringVar(&c.format, "format", "auto", "trace format: auto, lines, arc, lirs or csv")
	fs.StringVar(&c.column, "column", "key", "CSV column holding the key")
	sizes := fs.String("sizes", "1%,5%,20%", "cache sizes: entries, or percent of distinct keys")
	impls := fs.String("impls", "", "comma-separated caches to run (default all: "+implNames()+")")
	fs.IntVar(&c.n, "n", 2_000_000, "requests per generated trace")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generated traces")
	fs.StringVar(&c.svg, "svg", "", "with -trace: write the chart to this SVG file")
	fs.StringVar(&c.svgDir, "svgdir", "", "without -trace: write one chart per class, hitratio-<class>.svg, here")
	fs.StringVar(&c.class, "class", "", "without -trace: run only the traces of this class")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.sizes, err = parseSizes(*sizes); err != nil {
		return c, err
	}
	c.impls, err = selectImpls(*impls)
	return c, err
}

// size is a cache size: a count of entries, or a share of the trace's distinct keys.
type size struct {
	entries int
	percent float64
}

func (s size) of(distinct int) int {
	if s.percent > 0 {
		return max(1, int(s.percent/100*float64(distinct)+0.5))
	}
	return s.entries
}

func (s size) String() string {
	if s.percent > 0 {
		return strconv.FormatFloat(s.percent, 'g', -1, 64) + "%"
	}
	return strconv.Itoa(s.entries)
}

func parseSizes(list string) ([]size, error) {
	var out []size
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		var s size
		var err error
		if p, ok := strings.CutSuffix(f, "%"); ok {
			s.percent, err = strconv.ParseFloat(p, 64)
		} else {
			s.entries, err = strconv.Atoi(f)
		}
		if err != nil || s.percent < 0 || s.percent > 100 || (s.percent == 0 && s.entries <= 0) {
			return nil, fmt.Errorf("bad size %q: want a count of entries > 0 or a percentage", f)
		}
		out = append(out, s)
	}
	return out, nil
}

func implNames() string {
	var names []string
	for _, i := range localcache.Impls[uint64]() {
		names = append(names, i.Name)
	}
	return strings.Join(names, ",")
}

func selectImpls(list string) ([]localcache.Impl[uint64], error) {
	all := localcache.Impls[uint64]()
	if list == "" {
		return all, nil
	}
	var out []localcache.Impl[uint64]
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, i := range all {
			if i.Name == strings.TrimSpace(name) {
				out, found = append(out, i), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown cache %q (have %s)", name, implNames())
		}
	}
	return out, nil
}

func run(cfg config) error {
	traces, err := loadTraces(cfg)
	if err != nil {
		return err
	}
	res := measure(traces, cfg.sizes, cfg.impls)
	printTable(os.Stdout, cfg, res)
	return writeCharts(cfg, res)
}

func loadTraces(cfg config) ([]workload.Trace, error) {
	if cfg.trace == "" {
		var out []workload.Trace
		for _, t := range workload.Suite(cfg.n, cfg.seed) {
			if cfg.class == "" || t.Class == cfg.class {
				out = append(out, t)
			}
		}
		return out, nil
	}
	keys, err := readTrace(cfg.trace, formatOf(cfg.format, cfg.trace), cfg.column)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no requests", cfg.trace)
	}
	name := filepath.Base(cfg.trace)
	return []workload.Trace{{Class: name, Name: name, Keys: keys}}, nil
}

// result is the hit ratios of one trace at one size: one per cache, then the optimum's.
type result struct {
	trace    *workload.Trace
	distinct int
	size     size
	entries  int
	ratios   []float64 // per cache, in the order of config.impls, then the optimum
}

// measure replays every trace at every size against every cache and the optimum, running up
// to GOMAXPROCS replays at a time.
func measure(traces []workload.Trace, sizes []size, impls []localcache.Impl[uint64]) []result {
	var out []result
	for i := range traces {
		d := distinct(traces[i].Keys)
		for _, s := range sizes {
			out = append(out, result{trace: &traces[i], distinct: d, size: s, entries: s.of(d),
				ratios: make([]float64, len(impls)+1)})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range out {
		r := &out[i]
		for j := range len(impls) + 1 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if j == len(impls) {
					r.ratios[j] = float64(workload.Optimal(r.trace.Keys, r.entries)) / float64(len(r.trace.Keys))
					return
				}
				r.ratios[j] = localcache.HitRatio(impls[j].New(r.entries, true), r.trace.Keys)
			}()
		}
	}
	wg.Wait()
	return out
}

func distinct(keys []uint64) int {
	seen := make(map[uint64]struct{}, len(keys)/4)
	for _, k := range keys {
		seen[k] = struct{}{}
	}
	return len(seen)
}
