package store

// Two parameters of the policy adapt to the workload by hill climbing on the hit ratio, as
// Caffeine's window does: the window's share of MaxBytes (small suits frequency-skewed workloads
// and loops, large suits recency-skewed ones), and the share of contests whose victim is
// probation's newest entry rather than its oldest (the newest suits loops larger than the
// store: the entries that stay are hit on the next pass, where evicting the oldest churns them
// all before their turn comes; the oldest suits everything else).
//
// The hit ratio is sampled over a number of requests proportional to the entries the store
// holds (sampleFactor), and each sample moves one parameter, the two in turn. A sample judges the last move of the
// other parameter: if the hit ratio did not fall, that parameter's next move goes the same way,
// else the other way. Moves shrink by stepDecay each time, so the parameters settle; a change in
// the hit ratio of restartDelta or more (the workload changed) starts the judged parameter's
// moves over at full length. Everything here runs under Store.mu.
const (
	// windowPercent is the window's initial share of MaxBytes.
	windowPercent = 10
	// maxWindowPercent bounds the window's share, so that main keeps a frequency-filtered part.
	maxWindowPercent = 80
	// windowStep is the window's first move, as a share of MaxBytes (negative: it shrinks).
	windowStep = -0.0625
	// newestStep is the first move of the share of contests that take the newest victim.
	newestStep   = 0.1
	stepDecay    = 0.98
	restartDelta = 0.05
	// sampleEvery is how many inserts pass between two looks at the request counters.
	sampleEvery = 64
	// minSample is the fewest requests a sample may have.
	minSample = 1024
)

// sampleFactor is the length of a sample, in requests per entry held, by the parameter the
// sample judges: the window's effect shows within a few requests per entry (a recency-skewed
// workload that shifts needs the window to follow it quickly), the victim end's only once a loop
// larger than the store came round, which takes more.
var sampleFactor = [2]int64{pWindow: 3, pNewest: 10}

// The parameters the climber moves.
const (
	pWindow = iota
	pNewest
)

// climber is the state of the hill climb. Guarded by Store.mu.
type climber struct {
	inserts  int        // inserts since the counters were last read
	hits     int64      // hits counted by the shards when the sample began
	requests int64      // hits plus misses counted by the shards when the sample began
	prevRate float64    // hit ratio of the previous sample
	last     int        // the parameter moved at the end of the previous sample
	step     [2]float64 // each parameter's next move: bytes for the window, a share for newest
}

func (c *climber) reset(maxBytes int64) {
	*c = climber{last: pNewest, step: [2]float64{windowStep * float64(maxBytes), newestStep}}
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

// adapt is called by each insert; now and then it ends a sample and moves a parameter.
func (s *Store[K, V]) adapt() {
	c := &s.climb
	if c.inserts++; c.inserts < sampleEvery {
		return
	}
	c.inserts = 0
	hits, requests := s.counters()
	n := requests - c.requests
	if n < max(minSample, sampleFactor[c.last]*s.items.Load()) {
		return
	}
	rate := float64(hits-c.hits) / float64(n)
	c.hits, c.requests = hits, requests
	delta := rate - c.prevRate
	c.prevRate = rate
	if s.used < s.max/2 {
		return // not evicting: the hit ratio says nothing about the policy
	}
	c.judge(delta, s.max)
	c.last = 1 - c.last
	s.nudge(c.last, c.step[c.last])
}

// judge sets the next move of the parameter moved last, from the change in hit ratio it made.
func (c *climber) judge(delta float64, maxBytes int64) {
	amount := c.step[c.last]
	if delta < 0 {
		amount = -amount
	}
	if delta < restartDelta && delta > -restartDelta {
		c.step[c.last] = stepDecay * amount
		return
	}
	full := newestStep
	if c.last == pWindow {
		full = -windowStep * float64(maxBytes)
	}
	if amount < 0 {
		full = -full
	}
	c.step[c.last] = full
}

// nudge changes parameter p by amount, within its bounds.
func (s *Store[K, V]) nudge(p int, amount float64) {
	if p == pWindow {
		s.smallMax = min(max(s.smallMax+int64(amount), 0), s.max*maxWindowPercent/100)
		return
	}
	s.newest = min(max(s.newest+amount, 0), 1)
}
