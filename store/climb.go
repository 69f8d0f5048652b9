package store

// The window's share of MaxBytes adapts to the workload by hill climbing, as in Caffeine's
// adaptive W-TinyLFU: the hit ratio is sampled over about ten times as many requests as the store
// holds entries; after each sample the share moves one step, in the same direction as the last
// step if the hit ratio did not fall, else in the other. Steps start at stepPercent of MaxBytes
// and shrink by stepDecay each sample, so the share settles; a change in the hit ratio of
// restartDelta or more (the workload changed) starts them over at full length. Everything here
// runs under Store.mu.
const (
	// windowPercent is the window's initial share of MaxBytes.
	windowPercent = 10
	// maxWindowPercent bounds the window's share, so that main keeps a frequency-filtered part.
	maxWindowPercent = 80
	stepPercent      = 6.25
	stepDecay        = 0.98
	restartDelta     = 0.05
	// sampleEvery is how many inserts pass between two looks at the request counters.
	sampleEvery = 64
	// minSample is the fewest requests a sample may have.
	minSample = 1024
)

// climber is the state of the hill climb on Store.smallMax. Guarded by Store.mu.
type climber struct {
	inserts  int     // inserts since the counters were last read
	hits     int64   // hits counted by the shards when the sample began
	requests int64   // hits plus misses counted by the shards when the sample began
	prevRate float64 // hit ratio of the previous sample
	step     float64 // signed step in bytes: > 0 grows the window
}

func (c *climber) reset(maxBytes int64) {
	*c = climber{step: -stepPercent / 100 * float64(maxBytes)}
}

// counters returns the hits and requests (hits plus misses) the shards have counted.
func (s *Store[K, V]) counters() (hits, requests int64) {
	for i := range s.shards {
		sh := &s.shards[i]
		h := sh.hits.Load()
		hits += h
		requests += h + sh.misses.Load()
	}
	return hits, requests
}

// adapt is called by each insert; now and then it ends a sample and moves the window's share.
func (s *Store[K, V]) adapt() {
	c := &s.climb
	if c.inserts++; c.inserts < sampleEvery {
		return
	}
	c.inserts = 0
	hits, requests := s.counters()
	n := requests - c.requests
	if n < max(minSample, 10*s.items.Load()) {
		return
	}
	rate := float64(hits-c.hits) / float64(n)
	c.hits, c.requests = hits, requests
	if s.used < s.max/2 {
		// Not evicting: the hit ratio says nothing about the split.
		c.prevRate = rate
		return
	}
	delta := rate - c.prevRate
	amount := c.step
	if delta < 0 {
		amount = -amount
	}
	if delta >= restartDelta || delta <= -restartDelta {
		c.step = stepPercent / 100 * float64(s.max)
		if amount < 0 {
			c.step = -c.step
		}
	} else {
		c.step = stepDecay * amount
	}
	c.prevRate = rate
	s.smallMax = min(max(s.smallMax+int64(amount), 0), s.max*maxWindowPercent/100)
}
