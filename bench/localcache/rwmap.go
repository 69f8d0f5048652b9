package localcache

import (
	"hash/maphash"
	"sync"
)

// rwMap is not a cache worth using: it is the read path that the store's lock-free tables were
// measured against, a map per shard behind a sync.RWMutex, with arbitrary eviction (the first key
// the map iterates) so that it stays bounded. It is in the throughput comparison only.
type rwMap[K Key] struct {
	seed   maphash.Seed
	shards []rwShard[K]
	per    int // capacity per shard
}

type rwShard[K Key] struct {
	mu sync.RWMutex
	m  map[K]int
	_  [40]byte
}

func newRWMap[K Key](capacity int, _ bool) Cache[K] {
	const n = 32 // as many shards as the store uses by default on 2 cores
	c := &rwMap[K]{seed: maphash.MakeSeed(), shards: make([]rwShard[K], n), per: max(1, capacity/n)}
	for i := range c.shards {
		c.shards[i].m = make(map[K]int)
	}
	return c
}

func (c *rwMap[K]) shard(k K) *rwShard[K] {
	return &c.shards[maphash.Comparable(c.seed, k)*0x9e3779b97f4a7c15>>59]
}

func (c *rwMap[K]) Get(k K) (int, bool) {
	sh := c.shard(k)
	sh.mu.RLock()
	v, ok := sh.m[k]
	sh.mu.RUnlock()
	return v, ok
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
	sh.m[k] = v
	sh.mu.Unlock()
}
