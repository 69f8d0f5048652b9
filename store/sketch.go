package store

import "math/bits"

// sketch is a count-min sketch of 4-bit counters: an estimate of how often each key hash was
// seen recently, in a few bits per key. It runs under Store.mu only.
//
// Each hash picks four counters (one in each quarter of the table, so that the four probes are
// independent); the estimate is the least of them, and an increment raises only the counters
// that equal that least (a conservative update, which keeps collisions from inflating an
// estimate more than they must). When the number of increments reaches sampleSize, every counter
// is halved: old popularity fades, so the sketch follows a workload that changes.
type sketch struct {
	table      []uint64 // 16 counters of 4 bits per word
	quarter    uint64   // len(table)/4 - 1: a probe's word index mask within its quarter
	adds       int      // increments since the last halving
	sampleSize int      // 10 × the number of keys the table was sized for
}

const (
	sketchMinWords = 16
	// halfMask keeps the low 3 bits of every 4-bit counter after a right shift by one.
	halfMask = 0x7777777777777777
)

// ensure sizes the table for about n keys: a word (16 counters) per key, a power of two. A table
// that grows starts empty (the counters of the smaller table cannot be spread over the larger);
// it never shrinks.
func (s *sketch) ensure(n int) {
	words := max(sketchMinWords, 1<<bits.Len(uint(max(n, 1)-1)))
	if words <= len(s.table) {
		return
	}
	s.table = make([]uint64, words)
	s.quarter = uint64(words/4 - 1)
	s.adds = 0
	s.sampleSize = 10 * words
}

// probe returns the word index and bit shift of h's i-th counter.
func (s *sketch) probe(h uint64, i uint) (word uint64, shift uint) {
	x := (h ^ uint64(i+1)*0xbf58476d1ce4e5b9) * 0x94d049bb133111eb
	x ^= x >> 31
	word = uint64(i)*(s.quarter+1) + x&s.quarter
	shift = uint(x>>60) * 4
	return word, shift
}

// estimate returns how often h was seen recently (0..15).
func (s *sketch) estimate(h uint64) int {
	if len(s.table) == 0 {
		return 0
	}
	m := uint64(15)
	for i := range uint(4) {
		w, sh := s.probe(h, i)
		m = min(m, s.table[w]>>sh&15)
	}
	return int(m)
}

// add counts n more sightings of h.
func (s *sketch) add(h uint64, n int) {
	if len(s.table) == 0 {
		return
	}
	for range n {
		m := s.estimate(h)
		if m == 15 {
			return
		}
		for i := range uint(4) {
			w, sh := s.probe(h, i)
			if int(s.table[w]>>sh&15) == m {
				s.table[w] += 1 << sh
			}
		}
		if s.adds++; s.adds >= s.sampleSize {
			s.halve()
		}
	}
}

// halve divides every counter by two.
func (s *sketch) halve() {
	for i, w := range s.table {
		s.table[i] = w >> 1 & halfMask
	}
	s.adds /= 2
}

// reset forgets every count and the table.
func (s *sketch) reset() { *s = sketch{} }
