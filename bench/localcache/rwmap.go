package localcache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// rwMap is not a cache worth using: it is the read path that the store's lock-free tables were
// measured against. It is a map per shard behind a sync.RWMutex holding pointers to entries that
// carry what the store's entries carry for a hit (the value and a 2-bit access counter bumped
// only until saturated), with a padded per-shard hit counter, and arbitrary eviction (the first
// key the map iterates) so that it stays bounded. It is in the throughput comparison only.
type rwMap[K Key] struct {
	seed   maphash.Seed
	shards []rwShard[K]
	per    int // capacity per shard
}

type rwShard[K Key] struct {
	mu   sync.RWMutex
	m    map[K]*rwEntry
	_    [32]byte
	hits atomic.Int64
	_    [56]byte
}

type rwEntry struct {
	val  int
	freq atomic.Int32
}

func newRWMap[K Key](capacity int, _ bool) Cache[K] {
	const n = 32 // as many shards as the store uses by default on 2 cores
	c := &rwMap[K]{seed: maphash.MakeSeed(), shards: make([]rwShard[K], n), per: max(1, capacity/n)}
	for i := range c.shards {
		c.shards[i].m = make(map[K]*rwEntry)
	}
	return c
}

func (c *rwMap[K]) shard(k K) *rwShard[K] {
	return &c.shards[maphash.Comparable(c.seed, k)*0x9e3779b97f4a7c15>>59]
}

func (c *rwMap[K]) Get(k K) (int, bool) {
	sh := c.shard(k)
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	if e == nil {
		return 0, false
	}
	if f := e.freq.Load(); f < 3 {
		e.freq.Store(f + 1)
	}
	sh.hits.Add(1)
	return e.val, true
}

func (c *rwMap[K]) Set(k K, v int) {
	sh := c.shard(k)
	sh.mu.Lock()
	if _, ok := sh.m[k]; !ok && len(sh.m) >= c.per {
		for victim := range sh.m {
			delete(sh.m, victim)
			break
		}
	}
	sh.m[k] = &rwEntry{val: v}
	sh.mu.Unlock()
}
