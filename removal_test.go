package groupcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache/internal/clock"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/store"
)

// removal is one call of a removal listener.
type removal struct {
	key, value string
	reason     store.Reason
}

// listener records the calls of a removal listener.
type listener struct {
	mu  sync.Mutex
	got []removal
}

func (l *listener) fn(k, v string, r store.Reason) {
	l.mu.Lock()
	l.got = append(l.got, removal{k, v, r})
	l.mu.Unlock()
}

// take returns the calls so far, and forgets them.
func (l *listener) take() []removal {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.got
	l.got = nil
	return got
}

// TestRemovalListenerReasons: each way a value leaves a cache calls the listener once, with its
// reason; a cached "not found" does not.
func TestRemovalListenerReasons(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Unix(1000, 0))
	var l listener
	version := 0
	c := MustNew[string, string]("t", LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		if k == "missing" {
			return "", ErrNotFound
		}
		version++
		return fmt.Sprintf("%s%d", k, version), nil
	}), WithClock(clk.Now), WithTTL(time.Minute), WithNegativeTTL(time.Minute), WithRemovalListener(l.fn),
		WithSizer(func(string) int64 { return 1 }), WithMaxBytes(4*(1+1+store.EntryOverhead)))
	ctx := context.Background()
	get := func(k string) {
		t.Helper()
		if _, err := c.Get(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	expect := func(what string, want ...removal) {
		t.Helper()
		if got := l.take(); !slices.Equal(got, want) {
			t.Fatalf("%s: listener told %v, want %v", what, got, want)
		}
	}

	get("a")
	if err := c.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	expect("Remove", removal{"a", "a1", store.Explicit})

	get("b")
	if err := c.Set(ctx, "b", "b-set"); err != nil {
		t.Fatal(err)
	}
	expect("Set over a value", removal{"b", "b2", store.Replaced})

	get("c")
	clk.Advance(2 * time.Minute)
	get("c") // expired: loaded again, stored over the old entry
	expect("reload after the TTL", removal{"c", "c3", store.Expired})

	get("missing") // a cached "not found"
	if err := c.Remove(ctx, "missing"); err != nil {
		t.Fatal(err)
	}
	expect("removal of a cached not found")

	// The cache holds 4 entries: b (expired by now), c and two more; a fifth evicts b, met past
	// its expiry, and a sixth one of the others, fresh.
	get("d")
	get("e")
	get("f")
	expect("a load into a full cache", removal{"b", "b-set", store.Expired})
	get("g")
	got := l.take()
	if len(got) != 1 || got[0].reason != store.Evicted {
		t.Fatalf("a load into a full cache: listener told %v, want one eviction", got)
	}

	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	got = l.take()
	if len(got) != 4 || slices.ContainsFunc(got, func(r removal) bool { return r.reason != store.Explicit }) {
		t.Fatalf("Clear: listener told %v, want the 4 entries, explicit", got)
	}
	get("h")
	c.Close()
	expect("Close", removal{"h", "h9", store.Explicit})
}

// TestRemovalListenerPanics: a panic in the listener is recovered, logged and recorded; the
// cache goes on.
func TestRemovalListenerPanics(t *testing.T) {
	t.Parallel()
	c := MustNew[string, string]("t", &countingLoader{}, WithLogger(discardLogger()),
		WithRemovalListener(func(string, string, store.Reason) { panic("listener bug") }))
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "a"); err != nil {
		t.Fatalf("Remove with a panicking listener: %v", err)
	}
	if _, err := c.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	f := c.Stats().Failures
	if len(f) != 1 || f[0].Msg != "groupcache: panic in removal listener: listener bug" {
		t.Fatalf("Failures = %+v", f)
	}
}

// TestRemovalListenerTypes: a listener of other types than the cache's is refused by New.
func TestRemovalListenerTypes(t *testing.T) {
	t.Parallel()
	_, err := New[string, string]("t", &countingLoader{}, WithRemovalListener(func(int, string, store.Reason) {}))
	if !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New with a listener for int keys: %v, want ErrInvalidOption", err)
	}
	if _, err := New[string, string]("t", &countingLoader{}, WithRemovalListener[string, string](nil)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New with a nil listener: %v, want ErrInvalidOption", err)
	}
}

// TestEvictedFresh: evictions of entries that had not expired are counted with their ages;
// expired entries evicted are not.
func TestEvictedFresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		wantFresh bool
	}{{"no TTL", 0, true}, {"expired", 500 * time.Millisecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1000, 0))
			c := MustNew[int, string]("t", LoaderFunc[int, string](func(_ context.Context, k int) (string, error) { return "v", nil }),
				WithClock(clk.Now), WithTTL(tc.ttl), WithSizer(func(string) int64 { return 1 }),
				WithMaxBytes(10*(1+8+store.EntryOverhead)))
			defer c.Close()
			for k := range 30 {
				if _, err := c.Get(context.Background(), k); err != nil {
					t.Fatal(err)
				}
				clk.Advance(time.Second)
			}
			st := c.Stats()
			if st.Evictions != 20 {
				t.Fatalf("Evictions = %d, want 20", st.Evictions)
			}
			if !tc.wantFresh {
				if st.EvictedFresh != 0 || st.EvictionAge.Count() != 0 {
					t.Fatalf("expired entries counted as evicted fresh: %d, ages %v", st.EvictedFresh, st.EvictionAge.Counts)
				}
				return
			}
			if st.EvictedFresh != 20 || st.EvictionAge.Count() != 20 {
				t.Fatalf("EvictedFresh = %d with %d ages, want 20", st.EvictedFresh, st.EvictionAge.Count())
			}
			// The clock moves a second per key, and every entry was evicted at least a second
			// after it was stored (ages are measured to within 67 ms).
			if mean := st.EvictionAge.Mean(); mean < time.Second-70*time.Millisecond || mean > 30*time.Second {
				t.Fatalf("eviction ages: mean %v, counts %v", mean, st.EvictionAge.Counts)
			}
		})
	}
}

// TestLoadLatency: each loader call's duration is recorded in Stats.LoadLatency (synctest's
// clock makes them exact).
func TestLoadLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := MustNew[int, string]("t", LoaderFunc[int, string](func(_ context.Context, k int) (string, error) {
			time.Sleep(time.Duration(k) * time.Millisecond)
			return "v", nil
		}))
		defer c.Close()
		for _, k := range []int{3, 3, 300} {
			c.Remove(context.Background(), k)
			if _, err := c.Get(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
		h := c.Stats().LoadLatency
		want := observe.Histogram{Sum: 306 * time.Millisecond}
		want.Counts[12] = 2 // 3 ms <= 4096 µs
		want.Counts[19] = 1 // 300 ms <= 524288 µs
		if h != want {
			t.Fatalf("LoadLatency = %+v, want %+v", h, want)
		}
	})
}

// TestHitsWithTracerDoNotAllocate: a tracer costs hits nothing, and is told nothing of them.
func TestHitsWithTracerDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	var spans int
	c := MustNew[string, string]("t", &countingLoader{}, WithTracer(observe.TracerFunc(
		func(ctx context.Context, s observe.Span) (context.Context, func(error)) {
			spans++
			return ctx, func(error) {}
		})))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, "a")
	if spans != 2 {
		t.Fatalf("a miss made %d spans, want 2 (get_miss, load)", spans)
	}
	if n := testing.AllocsPerRun(1000, func() {
		c.Get(ctx, "a")
		c.View(ctx, "a", func(string) error { return nil })
	}); n != 0 {
		t.Fatalf("a hit allocates %v times with a tracer", n)
	}
	if spans != 2 {
		t.Fatalf("hits made %d spans", spans-2)
	}
}
