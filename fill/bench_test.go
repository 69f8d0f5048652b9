package fill

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"
)

// The benchmarks compare Group with golang.org/x/sync/singleflight. singleflight runs the
// function in the goroutine of the first caller and has neither contexts nor timeouts, so it is
// a lower bound rather than an equal.
//
//	go test -run '^$' -bench . -benchmem ./fill/

// contended returns the parallelism that gives about 16 goroutines in b.RunParallel.
func contended() int {
	return max(1, (16+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
}

func BenchmarkDo(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	load := func(context.Context) (int, error) { return 1, nil }

	b.Run("fill/sequential", func(b *testing.B) {
		g := New[string, int](0, nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Do(ctx, keys[i%len(keys)], load)
			i++
		}
	})
	b.Run("fill/sequential-timeout", func(b *testing.B) {
		g := New[string, int](time.Minute, nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Do(ctx, keys[i%len(keys)], load)
			i++
		}
	})
	b.Run("fill/distinct-keys", func(b *testing.B) {
		g := New[string, int](0, nil)
		var next atomic.Int32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			key := keys[int(next.Add(1))%len(keys)] // one key per goroutine: no sharing
			for pb.Next() {
				g.Do(ctx, key, load)
			}
		})
	})
	b.Run("fill/same-key-16", func(b *testing.B) {
		g := New[string, int](0, nil)
		var calls atomic.Int64
		loadCounted := func(context.Context) (int, error) {
			calls.Add(1)
			runtime.Gosched() // let the other callers pile up
			return 1, nil
		}
		b.ReportAllocs()
		b.SetParallelism(contended())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Do(ctx, "hot", loadCounted)
			}
		})
		b.ReportMetric(float64(calls.Load())/float64(b.N), "loads/op")
	})

	b.Run("singleflight/sequential", func(b *testing.B) {
		var g singleflight.Group
		loadSF := func() (any, error) { return 1, nil }
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Do(keys[i%len(keys)], loadSF)
			i++
		}
	})
	b.Run("singleflight/distinct-keys", func(b *testing.B) {
		var g singleflight.Group
		loadSF := func() (any, error) { return 1, nil }
		var next atomic.Int32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			key := keys[int(next.Add(1))%len(keys)]
			for pb.Next() {
				g.Do(key, loadSF)
			}
		})
	})
	b.Run("singleflight/same-key-16", func(b *testing.B) {
		var g singleflight.Group
		var calls atomic.Int64
		loadSF := func() (any, error) {
			calls.Add(1)
			runtime.Gosched()
			return 1, nil
		}
		b.ReportAllocs()
		b.SetParallelism(contended())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Do("hot", loadSF)
			}
		})
		b.ReportMetric(float64(calls.Load())/float64(b.N), "loads/op")
	})
}
