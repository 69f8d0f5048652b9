// Package workload generates synthetic request traces for measuring cache hit ratios, one
// generator per class of access pattern a cache meets: zipf popularity at several skews, scans,
// loops, working sets that shift over time, loops mixed with a frequency-skewed core, and a
// web-like trace in which most keys are seen once. Every generator is deterministic: the same
// parameters and seed give the same trace.
//
// A trace is a slice of uint64 keys. Suite returns the named traces the benchmarks and
// cmd/hitratio use.
package workload

import (
	"math"
	"math/rand/v2"
	"sort"
)

// rng returns the generator's random source for seed.
func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// Zipf draws ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^s, for any s >= 0 (math/rand's
// Zipf needs s > 1). It inverts the cumulative distribution with a binary search.
type Zipf struct {
	cdf []float64
	r   *rand.Rand
}

// NewZipf returns a Zipf over n ranks with skew s, drawing from seed.
func NewZipf(n int, s float64, seed uint64) *Zipf {
	cdf := make([]float64, n)
	sum := 0.0
	for k := range cdf {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	return &Zipf{cdf: cdf, r: rng(seed)}
}

// Next returns the next rank.
func (z *Zipf) Next() uint64 {
	u := z.r.Float64()
	return uint64(sort.SearchFloat64s(z.cdf, u))
}

// ZipfTrace returns n requests over keys 0..keys-1 with zipf skew s.
func ZipfTrace(n, keys int, s float64, seed uint64) []uint64 {
	z := NewZipf(keys, s, seed)
	t := make([]uint64, n)
	for i := range t {
		t[i] = z.Next()
	}
	return t
}

// ScanTrace returns n requests: zipf(s) requests over keys 0..keys-1, with a run of scanLen
// never-repeated keys (keys from the keys'th upwards) after every `every` zipf requests.
func ScanTrace(n, keys int, s float64, every, scanLen int, seed uint64) []uint64 {
	z := NewZipf(keys, s, seed)
	t := make([]uint64, 0, n)
	next := uint64(keys)
	for len(t) < n {
		for i := 0; i < every && len(t) < n; i++ {
			t = append(t, z.Next())
		}
		for i := 0; i < scanLen && len(t) < n; i++ {
			t = append(t, next)
			next++
		}
	}
	return t
}

// LoopTrace returns n requests that cycle over keys 0..loop-1 in order, with one never-repeated
// key (from the loop'th key upwards) in place of every oneOffEvery'th request (0 = none): a
// sequential job that rereads the same data, next to background traffic.
func LoopTrace(n, loop, oneOffEvery int) []uint64 {
	t := make([]uint64, n)
	next, pos := uint64(loop), 0
	for i := range t {
		if oneOffEvery > 0 && i%oneOffEvery == oneOffEvery-1 {
			t[i] = next
			next++
			continue
		}
		t[i] = uint64(pos)
		pos = (pos + 1) % loop
	}
	return t
}

// ShiftTrace returns n requests in phases of phaseLen: in each phase, zipf(s) requests over a
// working set of set keys whose first key moves by shift keys from one phase to the next, so a
// set−shift keys stay popular across a change and shift keys become popular. The popularity of
// a key within the set is re-drawn each phase (a random permutation), as when a service's hot
// items change.
func ShiftTrace(n, set, shift, phaseLen int, s float64, seed uint64) []uint64 {
	z := NewZipf(set, s, seed)
	r := rng(seed + 1)
	t := make([]uint64, n)
	perm := r.Perm(set)
	base := uint64(0)
	for i := range t {
		if i > 0 && i%phaseLen == 0 {
			base += uint64(shift)
			perm = r.Perm(set)
		}
		t[i] = base + uint64(perm[z.Next()])
	}
	return t
}

// LoopCoreTrace returns n requests that mix, with probability coreShare each, a zipf(s) request
// over a core of core keys (keys 0..core-1) and the next step of a loop over loop other keys: a
// frequency-skewed core next to a job that cycles over a larger range.
func LoopCoreTrace(n, core int, s float64, loop int, coreShare float64, seed uint64) []uint64 {
	z := NewZipf(core, s, seed)
	r := rng(seed + 1)
	t := make([]uint64, n)
	pos := 0
	for i := range t {
		if r.Float64() < coreShare {
			t[i] = z.Next()
			continue
		}
		t[i] = uint64(core + pos)
		pos = (pos + 1) % loop
	}
	return t
}

// WebTrace returns n requests like a web server's or CDN's: with probability oneOffShare a key
// never requested before or after, else a zipf(s) request over keys popular keys. Most distinct
// keys of such a trace are seen once.
func WebTrace(n, popular int, s, oneOffShare float64, seed uint64) []uint64 {
	z := NewZipf(popular, s, seed)
	r := rng(seed + 1)
	t := make([]uint64, n)
	next := uint64(popular)
	for i := range t {
		if r.Float64() < oneOffShare {
			t[i] = next
			next++
			continue
		}
		t[i] = z.Next()
	}
	return t
}

// Trace is a named generated trace of a class.
type Trace struct {
	Class string // zipf, scan, loop, shift, loop+core, web
	Name  string
	Keys  []uint64
}

// Suite returns one or more traces of every class, each of n requests (n >= 100,000), from
// seed. The key counts scale with n so that a trace keeps its shape at any length: keys is
// n/20, the distinct keys of the zipf traces.
func Suite(n int, seed uint64) []Trace {
	k := max(n/20, 1000)
	return []Trace{
		{"zipf", "zipf s=0.7", ZipfTrace(n, k, 0.7, seed)},
		{"zipf", "zipf s=0.9", ZipfTrace(n, k, 0.9, seed)},
		{"zipf", "zipf s=1.1", ZipfTrace(n, k, 1.1, seed)},
		{"scan", "zipf s=0.9 + scans", ScanTrace(n, k, 0.9, 20*k/100, 5*k/100, seed)},
		// A loop of 1.1, 2 or 5 times 20% of the distinct keys (and 4 and 20 times more than the
		// 5% and 1% sizes), the rest of the distinct keys one-offs spread over the trace.
		{"loop", "loop 1.1x", loopWithOneOffs(n, k, 1.1)},
		{"loop", "loop 2x", loopWithOneOffs(n, k, 2)},
		{"loop", "loop 5x", LoopTrace(n, k, 0)},
		{"shift", "shifting working set", ShiftTrace(n, k/2, k/10, n/20, 0.9, seed)},
		{"loop+core", "loop + zipf core", LoopCoreTrace(n, k/10, 0.9, k*9/10, 0.5, seed)},
		{"web", "web (most keys once)", WebTrace(n, k, 0.9, 0.3, seed)},
	}
}

// loopWithOneOffs returns a loop over ratio × 20% of distinct keys, with one-offs making up the
// other distinct keys of a trace of n requests.
func loopWithOneOffs(n, distinct int, ratio float64) []uint64 {
	loop := int(ratio * float64(distinct) / 5)
	oneOffs := distinct - loop
	return LoopTrace(n, loop, n/oneOffs)
}
