package workload

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func counts(t []uint64) map[uint64]int {
	c := make(map[uint64]int)
	for _, k := range t {
		c[k]++
	}
	return c
}

// TestZipfSkew checks that rank frequencies follow 1/(k+1)^s: the slope of log(frequency) over
// log(rank) on the first 100 ranks is -s within 0.1, and every key is in range.
func TestZipfSkew(t *testing.T) {
	t.Parallel()
	for _, s := range []float64{0.6, 0.9, 1.2} {
		const n, keys = 400_000, 10_000
		c := counts(ZipfTrace(n, keys, s, 7))
		var sx, sy, sxx, sxy float64
		const top = 100
		for k := range top {
			x, y := math.Log(float64(k+1)), math.Log(float64(c[uint64(k)]))
			sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		}
		slope := (top*sxy - sx*sy) / (top*sxx - sx*sx)
		if math.Abs(slope+s) > 0.1 {
			t.Errorf("s=%v: log-log slope %.3f, want %.3f", s, slope, -s)
		}
		for k := range c {
			if k >= keys {
				t.Fatalf("s=%v: key %d out of range", s, k)
			}
		}
	}
}

func TestDeterministicBySeed(t *testing.T) {
	t.Parallel()
	a, b, c := Suite(100_000, 3), Suite(100_000, 3), Suite(100_000, 4)
	for i := range a {
		if !slices.Equal(a[i].Keys, b[i].Keys) {
			t.Errorf("%s: same seed, different traces", a[i].Name)
		}
		if len(a[i].Keys) != 100_000 {
			t.Errorf("%s: %d requests, want 100000", a[i].Name, len(a[i].Keys))
		}
		random := a[i].Class != "loop"
		if random && slices.Equal(a[i].Keys, c[i].Keys) {
			t.Errorf("%s: different seeds, same trace", a[i].Name)
		}
	}
}

func TestScanTrace(t *testing.T) {
	t.Parallel()
	const keys, every, scan = 1000, 200, 50
	tr := ScanTrace(100_000, keys, 0.9, every, scan, 1)
	c := counts(tr)
	oneOffs := 0
	for i, k := range tr {
		inScan := i%(every+scan) >= every
		if inScan != (k >= keys) {
			t.Fatalf("request %d (key %d): scan position and key range disagree", i, k)
		}
		if k >= keys {
			oneOffs++
			if c[k] != 1 {
				t.Fatalf("scan key %d seen %d times", k, c[k])
			}
		}
	}
	if want := 100_000 * scan / (every + scan); oneOffs != want {
		t.Errorf("%d one-off requests, want %d", oneOffs, want)
	}
}

func TestLoopTrace(t *testing.T) {
	t.Parallel()
	tr := LoopTrace(10_000, 100, 0)
	for i, k := range tr {
		if k != uint64(i%100) {
			t.Fatalf("request %d is key %d, want %d", i, k, i%100)
		}
	}
	tr = LoopTrace(10_000, 100, 10)
	c := counts(tr)
	loopReqs, oneOffs := 0, 0
	for i, k := range tr {
		switch {
		case k < 100:
			loopReqs++
		case c[k] == 1 && i%10 == 9:
			oneOffs++
		default:
			t.Fatalf("request %d: key %d is neither in the loop nor a one-off", i, k)
		}
	}
	if oneOffs != 1000 || loopReqs != 9000 {
		t.Errorf("%d loop requests and %d one-offs, want 9000 and 1000", loopReqs, oneOffs)
	}
}

// TestShiftTrace checks that each phase draws from its own window of keys, that consecutive
// windows overlap by set-shift keys, and that popularity moves: the most requested key of one
// phase is rarely the most requested of the next.
func TestShiftTrace(t *testing.T) {
	t.Parallel()
	const set, shift, phase = 1000, 200, 20_000
	tr := ShiftTrace(10*phase, set, shift, phase, 0.9, 5)
	top := make([]uint64, 10)
	for p := range 10 {
		lo := uint64(p * shift)
		c := counts(tr[p*phase : (p+1)*phase])
		best := 0
		for k, n := range c {
			if k < lo || k >= lo+set {
				t.Fatalf("phase %d: key %d outside [%d, %d)", p, k, lo, lo+set)
			}
			if n > best {
				best, top[p] = n, k
			}
		}
	}
	same := 0
	for p := 1; p < 10; p++ {
		if top[p] == top[p-1] {
			same++
		}
	}
	if same > 2 {
		t.Errorf("the hottest key stayed the same across %d of 9 phase changes", same)
	}
}

func TestLoopCoreTrace(t *testing.T) {
	t.Parallel()
	const core, loop = 500, 5000
	tr := LoopCoreTrace(200_000, core, 1.0, loop, 0.3, 9)
	var coreReqs, next int
	for i, k := range tr {
		if k < core {
			coreReqs++
			continue
		}
		if int(k) != core+next {
			t.Fatalf("request %d: loop key %d, want %d", i, k, core+next)
		}
		next = (next + 1) % loop
	}
	if share := float64(coreReqs) / float64(len(tr)); math.Abs(share-0.3) > 0.01 {
		t.Errorf("core share %.3f, want 0.3", share)
	}
	c := counts(tr)
	if c[0] < 10*c[uint64(core-1)] {
		t.Errorf("core not skewed: rank 0 seen %d times, rank %d %d times", c[0], core-1, c[uint64(core-1)])
	}
}

func TestWebTraceMostKeysOnce(t *testing.T) {
	t.Parallel()
	tr := WebTrace(200_000, 10_000, 0.9, 0.3, 2)
	c := counts(tr)
	once := 0
	for _, n := range c {
		if n == 1 {
			once++
		}
	}
	if frac := float64(once) / float64(len(c)); frac < 0.8 {
		t.Errorf("%.2f of distinct keys seen once, want most (> 0.8)", frac)
	}
}

// bruteForce returns the most hits any policy holding at most capacity keys can get on trace,
// trying every choice at every miss: bypass, or cache the key (evicting any held key when full).
func bruteForce(trace []uint64, capacity int, held []uint64) int {
	if len(trace) == 0 {
		return 0
	}
	k, rest := trace[0], trace[1:]
	if slices.Contains(held, k) {
		return 1 + bruteForce(rest, capacity, held)
	}
	best := bruteForce(rest, capacity, held) // bypass
	if len(held) < capacity {
		best = max(best, bruteForce(rest, capacity, append(slices.Clone(held), k)))
		return best
	}
	for i := range held {
		next := slices.Clone(held)
		next[i] = k
		best = max(best, bruteForce(rest, capacity, next))
	}
	return best
}

func TestOptimalMatchesBruteForce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		n := 1 + r.IntN(12)
		keys := 1 + r.IntN(6)
		tr := make([]uint64, n)
		for i := range tr {
			tr[i] = uint64(r.IntN(keys))
		}
		for capacity := range 4 {
			if got, want := Optimal(tr, capacity), bruteForce(tr, capacity, nil); got != want {
				t.Fatalf("trace %v, capacity %d: Optimal = %d, brute force = %d", tr, capacity, got, want)
			}
		}
	}
}
