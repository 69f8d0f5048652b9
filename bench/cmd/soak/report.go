//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// histogram counts latencies in buckets 2^(1/16) apart (about 4%), from 1 ns to about 18 minutes.
type histogram struct {
	n       int64
	max     time.Duration
	buckets [640]int64
}

func (h *histogram) add(d time.Duration) {
	h.n++
	h.max = max(h.max, d)
	i := int(math.Log2(float64(max(d, 1))) * 16)
	h.buckets[min(max(i, 0), len(h.buckets)-1)]++
}

func (h *histogram) merge(o *histogram) {
	h.n += o.n
	h.max = max(h.max, o.max)
	for i, n := range o.buckets {
		h.buckets[i] += n
	}
}

// quantile returns the upper bound of the bucket that holds quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, n := range h.buckets {
		if seen += n; seen >= rank {
			return min(time.Duration(math.Exp2(float64(i+1)/16)), h.max)
		}
	}
	return h.max
}

// sample is one reading of a node's goroutines and memory.
type sample struct {
	at          time.Duration // since the start of the run
	incarnation int
	st          stats
}

// series keeps every node's samples.
type series struct {
	mu    sync.Mutex
	start time.Time
	nodes map[int][]sample
}

func newSeries() *series { return &series{start: time.Now(), nodes: map[int][]sample{}} }

func (s *series) add(id, inc int, st stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[id] = append(s.nodes[id], sample{at: time.Since(s.start), incarnation: inc, st: st})
}

// sampler reads every node that is up every period, until ctx ends.
func sampler(ctx context.Context, cl *cluster, period time.Duration, done *sync.WaitGroup) {
	defer done.Done()
	every(ctx, period, func() {
		for _, p := range cl.procs {
			cl.mu.Lock()
			up, inc, addr := p.state == stateUp, p.incarnation, p.ctrlAddr
			cl.mu.Unlock()
			if !up {
				continue
			}
			var st stats
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := cl.call(cctx, addr, "/stats", nil, &st)
			cancel()
			if err == nil {
				cl.series.add(p.id, inc, st)
			}
		}
	})
}

// every calls f every period until ctx ends.
func every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// result is what a run found.
type result struct {
	counts  *counts
	faults  map[string]int
	crashes int64
	// faultErrs counts faults that could not be injected (a node that did not start again).
	faultErrs int
	elapsed   time.Duration
}

// failed returns why the run failed the targets, or "" if it met them.
func (r *result) failed() string {
	var why []string
	if r.counts.wrong > 0 {
		why = append(why, fmt.Sprintf("%d wrong values", r.counts.wrong))
	}
	if n := r.counts.getErrors(); n > 0 {
		why = append(why, fmt.Sprintf("%d Get errors", n))
	}
	if r.crashes > 0 {
		why = append(why, fmt.Sprintf("%d nodes crashed (panic, data race or unexpected exit)", r.crashes))
	}
	if r.faultErrs > 0 {
		why = append(why, fmt.Sprintf("%d faults could not be injected", r.faultErrs))
	}
	if r.counts.ops[opGet] == 0 {
		why = append(why, "no Get answered")
	}
	return strings.Join(why, "; ")
}

func (r *result) print(w io.Writer, cfg config, s *series) {
	c := r.counts
	fmt.Fprintf(w, "\nran %v; faults: %s\n\n", r.elapsed.Round(time.Second), faultList(r.faults))
	fmt.Fprintln(w, "| operation | count | per second | errors by kind | p50 | p99 | p99.9 | max |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for op := range numOps {
		h := &c.lat[op]
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %v | %v | %v | %v |\n", opNames[op], c.ops[op],
			float64(c.ops[op])/r.elapsed.Seconds(), errList(c.errs[op]), round(h.quantile(0.5)),
			round(h.quantile(0.99)), round(h.quantile(0.999)), round(h.max))
	}
	fmt.Fprintf(w, "\nvalues checked: %d; wrong: %d; older than the latest acknowledged write, within the contract's window: %d\n",
		c.keys, c.wrong, c.stale)
	fmt.Fprintf(w, "operations without an answer (their node killed or leaving under them): %d\n", c.aborted)
	fmt.Fprintf(w, "Get and GetMany errors: %d; node crashes: %d\n", c.getErrors(), r.crashes)
	for _, e := range c.examples {
		fmt.Fprintln(w, "  e.g.", e)
	}
	printSeries(w, s, cfg)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func errList(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func faultList(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// printSeries prints, for each node, the goroutines and memory of each incarnation that lived at
// least a fifth of the run, at up to 8 moments, and their maxima in its first and second halves.
func printSeries(w io.Writer, s *series, cfg config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "\ngoroutines / RSS MiB / heap MiB of each node incarnation that lived at least %v (t: time into the run)\n\n",
		cfg.duration/5)
	for id := range cfg.nodes {
		for _, run := range incarnations(s.nodes[id]) {
			if run[len(run)-1].at-run[0].at < cfg.duration/5 {
				continue
			}
			fmt.Fprintf(w, "node %d #%d:", id, run[0].incarnation)
			for i := range 8 {
				sm := run[i*(len(run)-1)/7]
				fmt.Fprintf(w, " t=%v %d/%.0f/%.0f", sm.at.Round(time.Second), sm.st.Goroutines, mib(sm.st.RSS), mib(sm.st.Heap))
			}
			a, b := run[:len(run)/2], run[len(run)/2:]
			fmt.Fprintf(w, "; max goroutines %d then %d, max RSS %.0f then %.0f MiB\n",
				maxOf(a, func(s sample) int64 { return int64(s.st.Goroutines) }),
				maxOf(b, func(s sample) int64 { return int64(s.st.Goroutines) }),
				mib(maxOf(a, func(s sample) int64 { return s.st.RSS })), mib(maxOf(b, func(s sample) int64 { return s.st.RSS })))
		}
	}
}

// incarnations splits a node's samples by incarnation.
func incarnations(all []sample) [][]sample {
	var out [][]sample
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].incarnation == all[i].incarnation {
			j++
		}
		out = append(out, all[i:j])
		i = j
	}
	return out
}

func maxOf(ss []sample, f func(sample) int64) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, f(s))
	}
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
