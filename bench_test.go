package groupcache

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
)

const benchKeys = 100_000

// zipfKeys returns n keys drawn from a zipf(s) distribution over [0, benchKeys).
func zipfKeys(n int, s float64, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, seed))
	z := rand.NewZipf(r, s, 1, benchKeys-1)
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = int64(z.Uint64())
	}
	return keys
}

func newBenchCache(b *testing.B) *Cache[int64, string] {
	c, err := New[int64, string]("bench", LoaderFunc[int64, string](func(_ context.Context, k int64) (string, error) {
		return strconv.FormatInt(k, 10), nil
	}), WithMaxBytes(1<<30), WithSizer(func(s string) int64 { return int64(len(s)) }))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// fillAll loads every key once, so the benchmark sees hits only.
func fillAll(b *testing.B, c *Cache[int64, string]) {
	ctx := context.Background()
	for k := int64(0); k < benchKeys; k++ {
		if _, err := c.Get(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := newBenchCache(b)
	fillAll(b, c)
	keys := zipfKeys(1<<16, 1.01, 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Get(ctx, keys[i&(len(keys)-1)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetHitParallel(b *testing.B) {
	c := newBenchCache(b)
	fillAll(b, c)
	keys := zipfKeys(1<<16, 1.01, 1)
	ctx := context.Background()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			if _, err := c.Get(ctx, keys[i&(len(keys)-1)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkGetMissLoad(b *testing.B) {
	c := newBenchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Get(ctx, int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}
