package groupcache

import (
	"context"
	"sync/atomic"
	"testing"
)

// The benchmarks of the load path: every Get or GetMany key is a new key, so each one calls the
// loader (and, since WithMaxLoads, takes a loader slot). BenchmarkGetMissLoad in bench_test.go is
// the sequential one.

func BenchmarkGetMissLoadParallel(b *testing.B) {
	c := newBenchCache(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, next.Add(1)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetManyMissLoad is one GetMany of 100 new keys per op, loaded with up to 16 loads at
// once (the loader is not a BatchLoader).
func BenchmarkGetManyMissLoad(b *testing.B) {
	c := newBenchCache(b)
	ctx := context.Background()
	keys := make([]int64, 100)
	var next int64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range keys {
			next++
			keys[i] = next
		}
		for _, r := range c.GetMany(ctx, keys) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}
