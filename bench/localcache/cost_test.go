package localcache

import (
	"testing"
)

// BenchmarkCost measures, for each implementation on one goroutine with uint64 keys, the cost of
// a hit (Get of a key present, zipf order over 1e5 keys all present) and the cost of a miss (Get
// of an absent key, then Set, into a full cache of 1e4 entries, so every miss evicts; keys never
// repeat, so every request misses). docs/store.md quotes them next to the hit-ratio charts.
func BenchmarkCost(b *testing.B) {
	hits := KeysOf[uint64](ZipfTrace(traceLen, 42))
	for _, impl := range Impls[uint64]() {
		b.Run("hit/impl="+impl.Name, func(b *testing.B) {
			c := impl.New(2*Keys, true)
			for k := range uint64(Keys) {
				c.Set(k, 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c.Get(hits[i&(traceLen-1)])
			}
		})
		b.Run("miss/impl="+impl.Name, func(b *testing.B) {
			c := impl.New(Keys/10, true)
			for k := range uint64(Keys / 10) {
				c.Set(k, 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := uint64(Keys + i)
				if _, ok := c.Get(k); !ok {
					c.Set(k, 1)
				}
			}
		})
	}
}
