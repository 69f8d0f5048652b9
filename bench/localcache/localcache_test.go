package localcache

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestHitRatio replays a zipf trace and a zipf trace with one-off scans against every
// implementation at capacity = 10% of the keys and logs the hit ratios (go test -v -run HitRatio).
// It checks the properties the store is held to: above golang-lru's LRU on both traces, and
// within 1 percentage point of otter on the zipf trace (with some slack for the short trace).
// cmd/hitratio runs the same comparison on longer traces.
func TestHitRatio(t *testing.T) {
	t.Parallel()
	n := 400_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	const capacity = Keys / 10
	traces := []struct {
		name string
		keys []string
	}{
		{"zipf", KeysOf[string](ZipfTrace(n, 1))},
		{"zipf+scans", KeysOf[string](ScanTrace(n, 1))},
	}
	for _, tr := range traces {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			got := map[string]float64{}
			for _, impl := range Impls[string]() {
				got[impl.Name] = HitRatio(impl.New(capacity, true), tr.keys)
				t.Logf("%-10s %6.2f%% (%+.2f pp vs otter)", impl.Name, 100*got[impl.Name], 100*(got[impl.Name]-got["otter"]))
			}
			if got["store"] <= got["golang-lru"] {
				t.Errorf("store %.4f not above LRU %.4f", got["store"], got["golang-lru"])
			}
			if tr.name == "zipf" && got["store"] < got["otter"]-0.015 {
				t.Errorf("store %.4f more than 1.5 pp below otter %.4f", got["store"], got["otter"])
			}
		})
	}
}

// TestImpls checks that every adapter stores and returns values.
func TestImpls(t *testing.T) {
	t.Parallel()
	for _, impl := range Impls[uint64]() {
		t.Run(impl.Name, func(t *testing.T) {
			t.Parallel()
			c := impl.New(100, true)
			c.Set(1, 10)
			if v, ok := c.Get(1); !ok || v != 10 {
				t.Fatalf("Get(1) = %d, %v", v, ok)
			}
			if _, ok := c.Get(2); ok {
				t.Fatal("Get(2) hit on a key never set")
			}
		})
	}
}

const traceLen = 1 << 20 // requests in the pre-generated throughput trace

// BenchmarkThroughput runs 16 goroutines (on any GOMAXPROCS up to 16) over a pre-generated
// zipf(1.01) trace of 1e5 keys: Get, and Set on a miss. With capacity 100% every key is present
// after the warm-up, so it measures parallel Get hits; with 10% about a fifth of the requests
// miss and write. rwmutex-map is a baseline for the read path, not a cache (see rwmap.go).
func BenchmarkThroughput(b *testing.B) {
	b.Run("key=string", func(b *testing.B) { benchThroughput[string](b) })
	b.Run("key=uint64", func(b *testing.B) { benchThroughput[uint64](b) })
}

func benchThroughput[K Key](b *testing.B) {
	keys := KeysOf[K](ZipfTrace(traceLen, 42))
	for _, capCase := range []struct {
		name     string
		capacity int
	}{
		{"cap=100%", 2 * Keys}, // room for every key, with slack for otter's and ristretto's sizing
		{"cap=10%", Keys / 10},
	} {
		impls := append(Impls[K](), Impl[K]{"rwmutex-map", newRWMap[K]}, Impl[K]{"groupcache.Cache", newGroupcache[K]})
		for _, impl := range impls {
			b.Run(capCase.name+"/impl="+impl.Name, func(b *testing.B) {
				c := impl.New(capCase.capacity, false)
				if capCase.capacity >= Keys {
					for _, k := range KeysOf[K](allRanks()) {
						c.Set(k, 1)
					}
					if r, ok := c.(ristrettoCache[K]); ok {
						r.c.Wait()
					}
				}
				HitRatio(c, keys) // warm up: policy state and, at 10%, the cache contents
				var start atomic.Uint64
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := start.Add(traceLen/16+7919) & (traceLen - 1)
					for pb.Next() {
						k := keys[i]
						if _, ok := c.Get(k); !ok {
							c.Set(k, 1)
						}
						i = (i + 1) & (traceLen - 1)
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

func allRanks() []uint64 {
	r := make([]uint64, Keys)
	for i := range r {
		r[i] = uint64(i)
	}
	return r
}

// BenchmarkHitRatio reports the hit ratio of each implementation on the two traces as a metric
// (single goroutine, capacity 10%), for runs that collect everything with go test -bench.
func BenchmarkHitRatio(b *testing.B) {
	for _, tr := range []struct {
		name string
		keys []string
	}{
		{"zipf", KeysOf[string](ZipfTrace(1_000_000, 1))},
		{"zipf+scans", KeysOf[string](ScanTrace(1_000_000, 1))},
	} {
		for _, impl := range Impls[string]() {
			b.Run(fmt.Sprintf("trace=%s/impl=%s", tr.name, impl.Name), func(b *testing.B) {
				var hr float64
				for range b.N {
					hr = HitRatio(impl.New(Keys/10, true), tr.keys)
				}
				b.ReportMetric(100*hr, "hit%")
			})
		}
	}
}
