package store

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

const (
	benchKeys     = 100_000
	benchTraceLen = 1 << 20
)

// zipfKeys returns a fixed-seed zipf(1.01) trace over benchKeys string keys.
func zipfKeys(n int) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(42, 0x5eed)), 1.01, 1, benchKeys-1)
	names := make([]string, benchKeys)
	for i := range names {
		names[i] = "key:" + strconv.Itoa(i)
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = names[z.Uint64()]
	}
	return keys
}

// fullStore returns a store holding every benchmark key (unit cost).
func fullStore(b *testing.B, shards int) *Store[string, int] {
	s := mustNew[string, int](b, Config[string, int]{MaxBytes: 2 * benchKeys * (1 + EntryOverhead), Shards: shards})
	for i := range benchKeys {
		if !s.Set("key:"+strconv.Itoa(i), i, 1, 0) {
			b.Fatal("not stored")
		}
	}
	return s
}

// BenchmarkGetHit measures Get hits over zipf keys, all present: one goroutine, then 16
// goroutines (on any GOMAXPROCS up to 16).
func BenchmarkGetHit(b *testing.B) {
	keys := zipfKeys(benchTraceLen)
	b.Run("serial", func(b *testing.B) {
		s := fullStore(b, 0)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, ok := s.Get(keys[i&(benchTraceLen-1)]); !ok {
				b.Fatal("miss")
			}
		}
	})
	for _, shards := range []int{0, 1, 16, 256} {
		name := "parallel/shards=" + strconv.Itoa(shards)
		if shards == 0 {
			name = "parallel/shards=default(" + strconv.Itoa(DefaultShards()) + ")"
		}
		b.Run(name, func(b *testing.B) {
			s := fullStore(b, shards)
			benchParallel(b, func(i int) {
				if _, ok := s.Get(keys[i]); !ok {
					panic("miss")
				}
			})
		})
	}
}

// BenchmarkSet measures Set into a full store, so that every Set of a new key evicts: a zipf trace
// over 1e5 keys into room for 1e4.
func BenchmarkSet(b *testing.B) {
	keys := zipfKeys(benchTraceLen)
	for _, par := range []bool{false, true} {
		name := "serial"
		if par {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			s := mustNew[string, int](b, Config[string, int]{MaxBytes: benchKeys / 10 * (1 + EntryOverhead)})
			for i := range benchKeys / 10 {
				s.Set(keys[i], i, 1, 0)
			}
			if !par {
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					s.Set(keys[i&(benchTraceLen-1)], i, 1, 0)
				}
			} else {
				benchParallel(b, func(i int) { s.Set(keys[i], i, 1, 0) })
			}
			b.ReportMetric(float64(s.Stats().Evictions)/float64(b.N), "evictions/op")
		})
	}
}

// BenchmarkMixed runs 90% Get and 10% Set over zipf keys, 16 goroutines, with room for 10% of the
// keys (Sets of absent keys evict).
func BenchmarkMixed(b *testing.B) {
	keys := zipfKeys(benchTraceLen)
	s := mustNew[string, int](b, Config[string, int]{MaxBytes: benchKeys / 10 * (1 + EntryOverhead)})
	for i, k := range keys[:benchTraceLen/4] {
		if _, ok := s.Get(k); !ok {
			s.Set(k, i, 1, 0)
		}
	}
	benchParallel(b, func(i int) {
		if i%10 == 0 {
			s.Set(keys[i], i, 1, 0)
		} else {
			s.Get(keys[i])
		}
	})
}

// benchParallel runs op over trace positions from 16 goroutines, each starting at its own offset.
func benchParallel(b *testing.B, op func(i int)) {
	var start atomic.Uint64
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(benchTraceLen/16+7919) & (benchTraceLen - 1))
		for pb.Next() {
			op(i)
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
