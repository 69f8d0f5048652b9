package status

import (
	"sync"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// Rates are a cache's counters per second over a span of time, its hit ratio, and its latencies
// over that span.
type Rates struct {
	// HitRatio is Hits / Gets over the span, 0 without Gets.
	HitRatio float64
	// Gets, Loads, LoadErrors, Evictions, RemoteGets (fetches from owners) and PeerRequests (keys
	// asked by peers) per second.
	Gets, Loads, LoadErrors, Evictions, RemoteGets, PeerRequests float64
	// LoadLatency and FetchLatency are the durations Stats.LoadLatency and Stats.FetchLatency
	// counted over the span.
	LoadLatency, FetchLatency observe.Histogram
}

// PeerRates are what the node saw of a peer over a span of time.
type PeerRates struct {
	// FetchLatency is the durations of the node's requests to the peer over the span
	// (observe.PeerStats.FetchLatency); Errors the failed ones, per second.
	FetchLatency observe.Histogram
	Errors       float64
}

// sample is what the handler saw of the node's counters at a time.
type sample struct {
	at time.Time
	st groupcache.NodeStats
}

// Rates are computed against a sample at least minSpan old, kept for at most maxAge; one sample is
// kept every step at most.
const (
	step    = 10 * time.Second
	minSpan = 5 * time.Second
	maxAge  = 70 * time.Second
)

// history is the samples the rates are computed against.
type history struct {
	mu      sync.Mutex
	samples []sample // oldest first; guarded by mu
}

// base returns the sample to compute rates at cur against: the oldest kept, or when none is
// old enough a sample of zeros at the node's start. It keeps cur when the newest sample is a
// step old.
func (hs *history) base(cur sample) sample {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	i := 0
	for i < len(hs.samples) && cur.at.Sub(hs.samples[i].at) > maxAge {
		i++
	}
	hs.samples = hs.samples[i:]
	base := sample{at: cur.st.Started}
	if len(hs.samples) > 0 && cur.at.Sub(hs.samples[0].at) >= minSpan {
		base = hs.samples[0]
	}
	if len(hs.samples) == 0 || cur.at.Sub(hs.samples[len(hs.samples)-1].at) >= step {
		hs.samples = append(hs.samples, cur)
	}
	return base
}

// fill sets rep's rates: each cache's and each peer's, and the span they cover.
func (hs *history) fill(rep *Report, now time.Time) {
	base := hs.base(sample{now, rep.Node})
	span := now.Sub(base.at).Seconds()
	rep.RateSeconds = span
	rep.Rates = make(map[string]Rates, len(rep.Node.Caches))
	for name, st := range rep.Node.Caches {
		rep.Rates[name] = ratesOf(base.st.Caches[name], st, span) // a cache new since base starts from zero
	}
	for i, p := range rep.Peers {
		then, now := base.st.Peers[p.Addr], rep.Node.Peers[p.Addr]
		rep.Peers[i].Rates = PeerRates{
			FetchLatency: since(then.FetchLatency, now.FetchLatency),
			Errors:       perSecond(then.Errors, now.Errors, span),
		}
	}
	rep.ServeLatency = since(base.st.ServeLatency, rep.Node.ServeLatency)
}

// perSecond returns the rate of a counter that went from a to b in span seconds; one that went
// down (it started again) counts from zero.
func perSecond(a, b int64, span float64) float64 {
	if span <= 0 {
		return 0
	}
	if b < a {
		a = 0
	}
	return float64(b-a) / span
}

// since returns the durations counted in now and not in then; all of now's when a bucket went
// down (it started again).
func since(then, now observe.Histogram) observe.Histogram {
	d := now
	for i := range d.Counts {
		if d.Counts[i] -= then.Counts[i]; d.Counts[i] < 0 {
			return now
		}
	}
	d.Sum -= then.Sum
	return d
}

// ratesOf returns the rates of the counters from then to now, span seconds apart. When the
// counters went down (a cache closed and made again under its name), they count from zero.
func ratesOf(then, now groupcache.Stats, span float64) Rates {
	if now.Gets < then.Gets || now.Loads < then.Loads {
		then = groupcache.Stats{}
	}
	r := Rates{
		Gets:         perSecond(then.Gets, now.Gets, span),
		Loads:        perSecond(then.Loads, now.Loads, span),
		LoadErrors:   perSecond(then.LoadErrors, now.LoadErrors, span),
		Evictions:    perSecond(then.Evictions, now.Evictions, span),
		RemoteGets:   perSecond(then.RemoteGets, now.RemoteGets, span),
		PeerRequests: perSecond(then.PeerRequests, now.PeerRequests, span),
		LoadLatency:  since(then.LoadLatency, now.LoadLatency),
		FetchLatency: since(then.FetchLatency, now.FetchLatency),
	}
	if gets := now.Gets - then.Gets; gets > 0 {
		r.HitRatio = float64(now.Hits-then.Hits) / float64(gets)
	}
	return r
}
