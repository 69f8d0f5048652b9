package observe

import "time"

// PeerStats is what a node knows of one peer of its ring (groupcache.NodeStats.Peers).
type PeerStats struct {
	// FetchLatency is the latency of this node's requests to the peer for values (one per Get
	// of a key the peer owns, one per GetMany request), successful or not.
	FetchLatency Histogram
	// Errors is the number of requests to the peer that failed: fetches, hand-off peeks and
	// writes (a "not found" answer is not a failure).
	Errors int64
	// Down reports whether the node skips the peer now (its keys are loaded locally); DownUntil
	// is when that back-off ends at the latest (zero when the peer is not skipped). A probe
	// that the peer answers ends it earlier.
	Down      bool
	DownUntil time.Time
	// RingShare is the share of the key space (0 to 1) the peer owns on this node's ring.
	RingShare float64
}

// KeyCount is a key and how often it was seen (groupcache.Stats.HotKeys).
type KeyCount struct {
	// Key is the key as text (fmt's %v), cut to 64 bytes, with anything unprintable escaped.
	Key string
	// Count is how often the key was fetched recently: an estimate that may exceed the true
	// count by the count of the keys it displaced, and decays over time (see HotKeys).
	Count int64
}

// Failure is one of the last errors a node met (groupcache.NodeStats.Failures): a failed load,
// a failed request to a peer, a panic in user code.
type Failure struct {
	// Time is when it last happened.
	Time time.Time
	// Cache is the cache's name; Peer the peer involved, if any.
	Cache, Peer string
	// Msg is the error's text, cut to 200 bytes, with anything unprintable escaped.
	Msg string
	// Count is how many times it happened in a row (the same cache, peer and message).
	Count int64
}
