// Package localcache compares this module's store with other in-process Go caches (otter v2,
// ristretto v2, golang-lru v2) on the same traces: hit ratio and parallel throughput.
//
// Every cache is driven through the small Cache interface. To compare another implementation
// (for example the root groupcache.Cache[K, V], whose Get loads on a miss), add a constructor to
// Impls.
package localcache

import (
	"math/rand/v2"
	"strconv"

	"github.com/dgraph-io/ristretto/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/typedcache/groupcache/store"
)

// Key is the set of key types the comparisons use (both are valid ristretto keys).
type Key interface{ uint64 | string }

// Cache is what a comparison needs from a cache: a lookup, and an insert of a unit-cost entry.
type Cache[K Key] interface {
	Get(key K) (int, bool)
	Set(key K, value int)
}

// Impl names a cache implementation and builds one holding capacity unit-cost entries.
type Impl[K Key] struct {
	Name string
	// New builds a cache for capacity entries. syncWrites asks an asynchronous cache
	// (ristretto) to apply each Set before returning, for hit-ratio runs.
	New func(capacity int, syncWrites bool) Cache[K]
}

// Impls returns the implementations under comparison; the reference (otter) comes first.
func Impls[K Key]() []Impl[K] {
	return []Impl[K]{
		{"otter", newOtter[K]},
		{"store", newStore[K]},
		{"ristretto", newRistretto[K]},
		{"golang-lru", newLRU[K]},
	}
}

// --- store ---

type storeCache[K Key] struct{ s *store.Store[K, int] }

func newStore[K Key](capacity int, _ bool) Cache[K] {
	// Unit-cost entries: exactly capacity of them fit.
	s, err := store.New[K, int](store.Config[K, int]{MaxBytes: int64(capacity) * (1 + store.EntryOverhead)})
	if err != nil {
		panic(err)
	}
	return storeCache[K]{s}
}

func (c storeCache[K]) Get(k K) (int, bool) { return c.s.Get(k) }
func (c storeCache[K]) Set(k K, v int) {
	if !c.s.Set(k, v, 1, 0) {
		panic("localcache: entry larger than the store")
	}
}

// --- otter v2 (W-TinyLFU with an adaptive window) ---

type otterCache[K Key] struct{ c *otter.Cache[K, int] }

func newOtter[K Key](capacity int, _ bool) Cache[K] {
	return otterCache[K]{otter.Must(&otter.Options[K, int]{MaximumSize: capacity})}
}

func (c otterCache[K]) Get(k K) (int, bool) { return c.c.GetIfPresent(k) }
func (c otterCache[K]) Set(k K, v int)      { c.c.Set(k, v) }

// --- ristretto v2 (TinyLFU admission, sampled LFU eviction) ---

type ristrettoCache[K Key] struct {
	c    *ristretto.Cache[K, int]
	sync bool
}

func newRistretto[K Key](capacity int, syncWrites bool) Cache[K] {
	c, err := ristretto.NewCache(&ristretto.Config[K, int]{
		NumCounters:        int64(capacity) * 10,
		MaxCost:            int64(capacity),
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		panic(err)
	}
	return ristrettoCache[K]{c, syncWrites}
}

func (c ristrettoCache[K]) Get(k K) (int, bool) { return c.c.Get(k) }
func (c ristrettoCache[K]) Set(k K, v int) {
	c.c.Set(k, v, 1)
	if c.sync {
		c.c.Wait()
	}
}

// --- golang-lru v2 (plain LRU under a mutex) ---

type lruCache[K Key] struct{ c *lru.Cache[K, int] }

func newLRU[K Key](capacity int, _ bool) Cache[K] {
	c, err := lru.New[K, int](capacity)
	if err != nil {
		panic(err)
	}
	return lruCache[K]{c}
}

func (c lruCache[K]) Get(k K) (int, bool) { return c.c.Get(k) }
func (c lruCache[K]) Set(k K, v int)      { c.c.Add(k, v) }

// --- traces ---

// Trace parameters shared by the tests, benchmarks and cmd/hitratio.
const (
	Keys      = 100_000 // distinct keys of the zipf distribution
	ZipfS     = 1.01
	ScanEvery = 20_000 // zipf requests between two scans
	ScanLen   = 5_000  // one-off keys per scan
)

// ZipfTrace returns n zipf(s=1.01) ranks over Keys keys, from a fixed seed.
func ZipfTrace(n int, seed uint64) []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 0x5eed)), ZipfS, 1, Keys-1)
	t := make([]uint64, n)
	for i := range t {
		t[i] = z.Uint64()
	}
	return t
}

// ScanTrace returns n requests: zipf ranks as in ZipfTrace, with a run of ScanLen never-repeated
// keys (ranks from Keys upwards) after every ScanEvery zipf requests, so about 20% of requests
// are one-off scan keys.
func ScanTrace(n int, seed uint64) []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 0x5eed)), ZipfS, 1, Keys-1)
	t := make([]uint64, 0, n)
	next := uint64(Keys)
	for len(t) < n {
		for i := 0; i < ScanEvery && len(t) < n; i++ {
			t = append(t, z.Uint64())
		}
		for i := 0; i < ScanLen && len(t) < n; i++ {
			t = append(t, next)
			next++
		}
	}
	return t
}

// KeysOf turns ranks into keys of type K.
func KeysOf[K Key](ranks []uint64) []K {
	keys := make([]K, len(ranks))
	for i, r := range ranks {
		switch p := any(&keys[i]).(type) {
		case *uint64:
			*p = r
		case *string:
			*p = "key:" + strconv.FormatUint(r, 10)
		}
	}
	return keys
}

// HitRatio replays keys against c, setting each missed key, and returns hits/len(keys).
func HitRatio[K Key](c Cache[K], keys []K) float64 {
	hits := 0
	for i, k := range keys {
		if _, ok := c.Get(k); ok {
			hits++
		} else {
			c.Set(k, i)
		}
	}
	return float64(hits) / float64(len(keys))
}
