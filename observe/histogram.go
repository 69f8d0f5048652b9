package observe

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Buckets is the number of buckets of a Histogram: one per bound (Bound(0) to Bound(Buckets-2))
// and one, the last, for durations above the last bound.
const Buckets = 41

// Bound returns the upper bound of bucket i, for 0 <= i < Buckets-1: 2^i µs, from 1 µs to
// 2^39 µs (about 6.4 days), so that one scale serves a served hit (microseconds), a load
// (milliseconds to seconds) and the age of an evicted entry (seconds to days). A bucket holds
// the durations d with Bound(i-1) < d <= Bound(i). Bound panics for i out of range.
func Bound(i int) time.Duration {
	if i < 0 || i >= Buckets-1 {
		panic("observe: Bound out of range")
	}
	return time.Microsecond << i
}

// bucket returns the index of the bucket that holds d.
func bucket(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	us := (uint64(d) + uint64(time.Microsecond) - 1) / uint64(time.Microsecond) // d rounded up to whole µs
	return min(bits.Len64(us-1), Buckets-1)
}

// Histogram is a snapshot of a distribution of durations in fixed buckets: plain values, safe
// to copy, compare and add up. The zero value is an empty histogram.
type Histogram struct {
	// Counts[i] is the number of durations in bucket i (see Bound); the last is those above
	// the last bound.
	Counts [Buckets]int64
	// Sum is the sum of the durations.
	Sum time.Duration
}

// Count returns the number of durations in h.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Merge adds o's durations to h: the histogram of two processes, or of two caches.
func (h *Histogram) Merge(o Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Sum += o.Sum
}

// Mean returns the mean duration, 0 for an empty histogram.
func (h Histogram) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return h.Sum / time.Duration(n)
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1; 0.99 is the 99th percentile):
// the bound of the bucket it falls in, so at most twice the true value; the last bound for the
// overflow bucket; 0 for an empty histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen int64
	for i, c := range h.Counts[:Buckets-1] {
		if seen += c; seen >= rank {
			return Bound(i)
		}
	}
	return Bound(Buckets - 2)
}

// Recorder records durations into a Histogram with atomic counters: Record is two atomic adds
// and allocates nothing. The zero value is ready; it is safe for concurrent use.
type Recorder struct {
	counts [Buckets]atomic.Int64
	sum    atomic.Int64
}

// Record adds one duration; a negative one counts as 0.
func (r *Recorder) Record(d time.Duration) {
	d = max(d, 0)
	r.counts[bucket(d)].Add(1)
	r.sum.Add(int64(d))
}

// Snapshot returns a copy of the histogram so far. The buckets are read one by one without a
// lock, so a snapshot taken while durations are recorded may be off by those in flight.
func (r *Recorder) Snapshot() Histogram {
	var h Histogram
	for i := range r.counts {
		h.Counts[i] = r.counts[i].Load()
	}
	h.Sum = time.Duration(r.sum.Load())
	return h
}
