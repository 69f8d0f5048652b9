package store

import (
	"testing"
)

// TestRanked checks that Ranked yields the entries that were read before those that were not,
// skips expired entries, stops at its byte bound and when the caller stops.
func TestRanked(t *testing.T) {
	t.Parallel()
	var now int64 = 1
	const capacity = 1000
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: capacity * (1 + EntryOverhead), Now: func() int64 { return now }})
	// Keys 0..99 are read often; 100..799 once stored and never read; 800 expires.
	for k := range 800 {
		s.Set(k, k, 1, 0)
		if k < 100 {
			for range 3 {
				s.Get(k)
			}
		}
	}
	s.Set(800, 800, 1, 5)
	now = 10
	checkInvariants(t, s)

	var got []int
	for k, v := range s.Ranked(1 << 40) {
		if k != v {
			t.Fatalf("Ranked yielded %d with value %d", k, v)
		}
		got = append(got, k)
	}
	if len(got) != s.Len()-1 {
		t.Fatalf("Ranked yielded %d entries; the store holds %d, one expired", len(got), s.Len())
	}
	seen := map[int]bool{}
	for _, k := range got {
		if k == 800 {
			t.Fatal("Ranked yielded an expired entry")
		}
		seen[k] = true
	}
	// The keys read come first: among the first 100 yielded, most are keys that were read.
	read := 0
	for _, k := range got[:100] {
		if k < 100 {
			read++
		}
	}
	if read < 90 {
		t.Fatalf("%d of the first 100 entries yielded were read; want the read ones first (order %v)", read, got[:100])
	}

	// Under pressure: one-off keys push the rest through the window; the keys read stay, in the
	// protected segment, and still come first.
	for k := 1000; k < 3000; k++ {
		s.Set(k, k, 1, 0)
		if k%10 == 0 {
			for k := range 100 {
				s.Get(k)
			}
		}
	}
	checkInvariants(t, s)
	got = got[:0]
	for k := range s.Ranked(1 << 40) {
		got = append(got, k)
	}
	for i, k := range got[:100] {
		if k >= 100 {
			t.Fatalf("under pressure, entry %d yielded is %d, not one of the keys read (order %v)", i, k, got[:100])
		}
	}

	// The byte bound: 10 entries' worth.
	n := 0
	for range s.Ranked(10 * (1 + EntryOverhead)) {
		n++
	}
	if n != 10 {
		t.Fatalf("Ranked(10 entries' bytes) yielded %d", n)
	}
	// Stopping early.
	n = 0
	for range s.Ranked(1 << 40) {
		if n++; n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("Ranked went on after the caller stopped: %d", n)
	}
}
