package store

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLoopKeepsPart replays loops larger than the store: an LRU or a FIFO gets no hit at all,
// since every key is evicted just before its turn comes; the policy keeps a fixed part of the
// loop and must get near the optimum, capacity/loop hits per pass (at least 70% of it here, a short
// run; the benchmarks measure the rest).
func TestLoopKeepsPart(t *testing.T) {
	t.Parallel()
	const capacity = 1000
	for _, ratio := range []float64{1.1, 2, 5} {
		loop := int(ratio * capacity)
		s := mustNew[int, int](t, Config[int, int]{MaxBytes: capacity * (1 + EntryOverhead)})
		passes := 20 * ratio
		hits, reqs := 0, 0
		for i := range int(passes) * loop {
			k := i % loop
			_, ok := s.Get(k)
			if !ok {
				s.Set(k, k, 1, 0)
			}
			if i >= int(passes)*loop/2 { // second half: after the policy settled
				reqs++
				if ok {
					hits++
				}
			}
		}
		got, opt := float64(hits)/float64(reqs), float64(capacity)/float64(loop)
		t.Logf("loop %.1fx: hit ratio %.3f, optimum about %.3f", ratio, got, opt)
		if got < 0.7*opt {
			t.Errorf("loop %.1fx the store: hit ratio %.3f, want at least 70%% of %.3f", ratio, got, opt)
		}
		checkInvariants(t, s)
	}
}

// TestFrequentKeyAdmitted checks the admission: when main is full of keys seen once, a new key
// seen once more does not displace them, and a key requested often gets in.
func TestFrequentKeyAdmitted(t *testing.T) {
	t.Parallel()
	const capacity = 200
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: capacity * (1 + EntryOverhead)})
	for k := range 2 * capacity {
		s.Set(k, k, 1, 0)
	}
	hot := 1_000_000
	for range 6 {
		// The hot key misses and is set again each time it was evicted, as a cache's caller
		// would; in between, cold keys pass through the window.
		if _, ok := s.Get(hot); !ok {
			s.Set(hot, 0, 1, 0)
		}
		for k := range capacity / 4 {
			s.Set(10_000+k, k, 1, 0)
		}
	}
	if _, _, ok := s.Peek(hot); !ok {
		t.Fatal("a key requested six times was not admitted over keys seen once")
	}
	checkInvariants(t, s)
}

func TestSketch(t *testing.T) {
	t.Parallel()
	var sk sketch
	sk.ensure(1000)
	r := rand.New(rand.NewPCG(3, 4))
	want := map[uint64]int{}
	for range 2000 {
		h := r.Uint64()
		n := 1 + r.IntN(5)
		want[h] = n
		sk.add(h, n)
	}
	over := 0
	for h, n := range want {
		got := sk.estimate(h)
		if got < n {
			t.Fatalf("estimate %d below the true count %d (count-min never underestimates)", got, n)
		}
		if got > n {
			over++
		}
	}
	if over > len(want)/10 {
		t.Errorf("%d of %d estimates too high", over, len(want))
	}
	h := r.Uint64()
	sk.add(h, 20)
	if got := sk.estimate(h); got != 15 {
		t.Errorf("estimate %d after 20 adds, want the 4-bit maximum 15", got)
	}
	sk.halve()
	if got := sk.estimate(h); got != 7 {
		t.Errorf("estimate %d after halving 15, want 7", got)
	}
	for range sk.sampleSize { // reaching the sample size halves every counter
		sk.add(r.Uint64(), 1)
	}
	if got := sk.estimate(h); got > 4 {
		t.Errorf("estimate %d: the sketch did not age", got)
	}
}

// TestClimberJudge checks the hill climb's rules: a move that did not lower the hit ratio is
// followed by a smaller one the same way, one that did by one the other way, and a large change
// of the hit ratio restarts the moves at full length.
func TestClimberJudge(t *testing.T) {
	t.Parallel()
	const maxBytes = 1 << 20
	var c climber
	c.reset(maxBytes)
	c.last = pNewest
	c.judge(0.01, maxBytes)
	if want := stepDecay * newestStep; math.Abs(c.step[pNewest]-want) > 1e-12 {
		t.Errorf("after a gain: step %v, want %v", c.step[pNewest], want)
	}
	c.judge(-0.01, maxBytes)
	if want := -stepDecay * stepDecay * newestStep; math.Abs(c.step[pNewest]-want) > 1e-12 {
		t.Errorf("after a loss: step %v, want %v", c.step[pNewest], want)
	}
	c.judge(-0.2, maxBytes)
	if c.step[pNewest] != newestStep {
		t.Errorf("after a large loss: step %v, want a restart at %v", c.step[pNewest], newestStep)
	}
	c.last = pWindow
	c.judge(0.3, maxBytes)
	if want := windowStep * maxBytes; c.step[pWindow] != want {
		t.Errorf("window after a large gain: step %v, want %v", c.step[pWindow], want)
	}

	s := mustNew[int, int](t, Config[int, int]{MaxBytes: maxBytes})
	s.nudge(pWindow, -2*maxBytes)
	s.nudge(pNewest, 5)
	if s.smallMax != 0 || s.newest != 1 {
		t.Errorf("nudged past the bounds: window %d, newest %v; want 0 and 1", s.smallMax, s.newest)
	}
	s.nudge(pWindow, 2*maxBytes)
	if s.smallMax != maxBytes*maxWindowPercent/100 {
		t.Errorf("window %d, want at most %d%% of %d", s.smallMax, maxWindowPercent, maxBytes)
	}
}
