package groupcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/clock"
)

var epoch = time.Unix(1_700_000_000, 0)

func TestSetTTLFromLoader(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	l := &countingLoader{}
	c := MustNew[string, string]("t", LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
		if k == "short" && !SetTTL(ctx, 10*time.Second) {
			t.Error("SetTTL in a loader reported false")
		}
		return l.Load(ctx, k)
	}), WithTTL(time.Minute), WithClock(clk.Now))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, "short")
	c.Get(ctx, "long")
	clk.Advance(11 * time.Second)
	c.Get(ctx, "short")
	c.Get(ctx, "long")
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loads = %d, want 3 (short reloaded after its own TTL, long not)", n)
	}
	clk.Advance(50 * time.Second)
	c.Get(ctx, "long")
	if n := l.calls.Load(); n != 4 {
		t.Fatalf("loads = %d, want 4 (long reloaded after the cache's TTL)", n)
	}
	if SetTTL(ctx, time.Second) {
		t.Fatal("SetTTL outside a loader reported true")
	}
}

func TestTTLJitterSpreadsExpiries(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	c := MustNew[string, string]("t", &countingLoader{}, WithTTL(100*time.Second), WithTTLJitter(0.5), WithClock(clk.Now))
	defer c.Close()
	seen := map[int64]bool{}
	for i := range 200 {
		k := fmt.Sprint(i)
		c.Get(context.Background(), k)
		_, expires, ok := c.store.Peek(k)
		if !ok {
			t.Fatalf("key %s not stored", k)
		}
		ttl := time.Duration(expires - epoch.UnixNano())
		if ttl < 50*time.Second || ttl > 100*time.Second {
			t.Fatalf("TTL with jitter 0.5 of 100s = %v, want within 50s..100s", ttl)
		}
		seen[expires] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct expiries for 200 keys: jitter does not spread them", len(seen))
	}
}

// notFoundLoader says every key starting with "missing" does not exist and counts its calls.
type notFoundLoader struct{ calls atomic.Int64 }

func (l *notFoundLoader) Load(_ context.Context, k string) (string, error) {
	l.calls.Add(1)
	if len(k) >= 7 && k[:7] == "missing" {
		return "", fmt.Errorf("row %s: %w", k, ErrNotFound)
	}
	return "v" + k, nil
}

func TestNegativeCaching(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	l := &notFoundLoader{}
	c := MustNew[string, string]("t", l, WithTTL(time.Minute), WithNegativeTTL(10*time.Second), WithClock(clk.Now))
	defer c.Close()
	ctx := context.Background()
	for range 3 {
		if _, err := c.Get(ctx, "missing1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a missing key = %v, want ErrNotFound", err)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1 (the miss is cached)", n)
	}
	st := c.Stats()
	if st.NegativeEntries != 1 || st.NegativeHits != 2 || st.Hits != 2 {
		t.Fatalf("stats = %+v, want 1 negative entry, 2 negative hits", st)
	}
	clk.Advance(11 * time.Second)
	if _, err := c.Get(ctx, "missing1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after the negative TTL = %v", err)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loads = %d, want 2 (reloaded after the negative TTL)", n)
	}
	// Set replaces a cached miss.
	if err := c.Set(ctx, "missing1", "now here"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "missing1"); err != nil || v != "now here" {
		t.Fatalf("Get after Set = %q, %v", v, err)
	}
}

func TestNoNegativeCachingByDefault(t *testing.T) {
	t.Parallel()
	l := &notFoundLoader{}
	c := MustNew[string, string]("t", l)
	defer c.Close()
	for range 3 {
		if _, err := c.Get(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if n := l.calls.Load(); n != 3 {
		t.Fatalf("loads = %d, want 3", n)
	}
}

// versionLoader returns "<key>@<n>" with n counting its calls; when gate is set, each call waits
// for a value on it (and fails with the error received, if not nil).
type versionLoader struct {
	calls   atomic.Int64
	gate    chan error
	started chan struct{}
}

func (l *versionLoader) Load(ctx context.Context, k string) (string, error) {
	n := l.calls.Add(1)
	if l.started != nil {
		l.started <- struct{}{}
	}
	if l.gate != nil {
		select {
		case err := <-l.gate:
			if err != nil {
				return "", err
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return fmt.Sprintf("%s@%d", k, n), nil
}

func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	l := &versionLoader{}
	c := MustNew[string, string]("t", l, WithTTL(10*time.Second), WithStaleWhileRevalidate(30*time.Second),
		WithClock(clk.Now), WithLogger(discardLogger()))
	defer c.Close()
	ctx := context.Background()
	if v, _ := c.Get(ctx, "k"); v != "k@1" {
		t.Fatalf("first Get = %q", v)
	}
	l.gate = make(chan error)
	clk.Advance(11 * time.Second) // stale, within the window
	for range 3 {
		if v, err := c.Get(ctx, "k"); err != nil || v != "k@1" {
			t.Fatalf("Get in the window = %q, %v; want the stale k@1 at once", v, err)
		}
	}
	if st := c.Stats(); st.StaleHits != 3 || st.Refreshes != 1 {
		t.Fatalf("stats = %+v, want 3 stale hits and 1 refresh", st)
	}
	l.gate <- nil // let the refresh finish
	c.background.Wait()
	if v, _ := c.Get(ctx, "k"); v != "k@2" {
		t.Fatalf("Get after the refresh = %q, want k@2", v)
	}

	// A failed refresh keeps the stale value until the window ends.
	clk.Advance(11 * time.Second)
	if v, _ := c.Get(ctx, "k"); v != "k@2" {
		t.Fatalf("stale Get = %q", v)
	}
	l.gate <- errors.New("database down")
	c.background.Wait()
	if v, err := c.Get(ctx, "k"); err != nil || v != "k@2" {
		t.Fatalf("Get after a failed refresh = %q, %v; want the stale k@2", v, err)
	}
	l.gate <- errors.New("still down") // the Get above started another refresh: let it fail too
	c.background.Wait()
	if st := c.Stats(); st.RefreshErrors != 2 || st.Refreshes != 3 {
		t.Fatalf("stats = %+v, want refresh errors counted", st)
	}
	// Past the window the stale value is gone: Get loads and waits.
	clk.Advance(31 * time.Second)
	go func() { l.gate <- nil }()
	if v, err := c.Get(ctx, "k"); err != nil || v == "k@2" {
		t.Fatalf("Get past the window = %q, %v; want a fresh value", v, err)
	}
}

func TestSetRemoveClearAlone(t *testing.T) {
	t.Parallel()
	l := &versionLoader{}
	c := MustNew[string, string]("t", l, WithMaxValueBytes(1000))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, "a")
	c.Get(ctx, "b")
	if err := c.Set(ctx, "a", "set"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "a"); v != "set" {
		t.Fatalf("Get after Set = %q", v)
	}
	if err := c.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "a"); v != "a@3" {
		t.Fatalf("Get after Remove = %q, want a reload (a@3)", v)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Items != 0 {
		t.Fatalf("items after Clear = %d", st.Items)
	}
	if v, _ := c.Get(ctx, "b"); v != "b@4" {
		t.Fatalf("Get after Clear = %q, want a reload (b@4)", v)
	}
	if err := c.RemoveMany(ctx, []string{"a", "b", "never-there"}); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Items != 0 || st.Sets != 1 || st.Removes != 4 || st.Clears != 1 {
		t.Fatalf("stats = %+v", st)
	}

	// Bad input: nothing changes.
	c.Set(ctx, "a", "kept")
	big := string(make([]byte, 2000))
	if err := c.Set(ctx, "a", big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Set of a value over the limit = %v, want ErrTooLarge", err)
	}
	if v, _ := c.Get(ctx, "a"); v != "kept" {
		t.Fatalf("Get after a refused Set = %q, want the earlier value", v)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Set(cancelled, "a", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with a cancelled ctx = %v", err)
	}
	if err := c.Remove(cancelled, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Remove with a cancelled ctx = %v", err)
	}
	if err := c.Clear(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Clear with a cancelled ctx = %v", err)
	}
	if v, _ := c.Get(ctx, "a"); v != "kept" {
		t.Fatalf("Get after cancelled calls = %q", v)
	}
	long := string(make([]byte, defaultMaxKeyBytes+1))
	if err := c.Set(ctx, long, "x"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Set of a long key = %v", err)
	}
	if err := c.RemoveMany(ctx, []string{"a", long}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("RemoveMany with a long key = %v", err)
	}
	if v, _ := c.Get(ctx, "a"); v != "kept" {
		t.Fatalf("a RemoveMany refused for a bad key removed a = %q", v)
	}
	c.Close()
	if err := c.Set(ctx, "a", "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v", err)
	}
	if err := c.Remove(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Remove after Close = %v", err)
	}
	if err := c.Clear(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Clear after Close = %v", err)
	}
}

func TestSetEntryTTL(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	l := &versionLoader{}
	c := MustNew[string, string]("t", l, WithClock(clk.Now))
	defer c.Close()
	ctx := context.Background()
	c.Set(ctx, "a", "short", WithEntryTTL(5*time.Second))
	c.Set(ctx, "b", "forever")
	clk.Advance(6 * time.Second)
	if v, _ := c.Get(ctx, "a"); v != "a@1" {
		t.Fatalf("Get after the entry TTL = %q, want a reload", v)
	}
	if v, _ := c.Get(ctx, "b"); v != "forever" {
		t.Fatalf("Get of an entry without TTL = %q", v)
	}
}

// TestWriteRacingLoad checks the documented choice: a load in flight when Remove, Set or Clear
// arrives still answers its callers, but its value is not stored.
func TestWriteRacingLoad(t *testing.T) {
	t.Parallel()
	for _, write := range []string{"remove", "set", "clear"} {
		t.Run(write, func(t *testing.T) {
			l := &versionLoader{gate: make(chan error), started: make(chan struct{})}
			c := MustNew[string, string]("t", l)
			defer c.Close()
			ctx := context.Background()
			got := make(chan string)
			go func() {
				v, _ := c.Get(ctx, "k")
				got <- v
			}()
			<-l.started // the load of k@1 is in flight
			switch write {
			case "remove":
				c.Remove(ctx, "k")
			case "set":
				c.Set(ctx, "k", "written")
			case "clear":
				c.Clear(ctx)
			}
			l.gate <- nil
			if v := <-got; v != "k@1" {
				t.Fatalf("the racing Get = %q, want its load's k@1", v)
			}
			want := "k@2"
			if write == "set" {
				want = "written"
			}
			go func() {
				if _, ok := <-l.started; ok {
					l.gate <- nil
				}
			}()
			if v, _ := c.Get(ctx, "k"); v != want {
				t.Fatalf("Get after the %s = %q, want %q (the old load must not be stored)", write, v, want)
			}
			close(l.started)
		})
	}
}

// batchLoader is a BatchLoader that records its LoadMany calls.
type batchLoader struct {
	notFoundLoader
	mu      sync.Mutex
	batches [][]string
	err     error // returned by every LoadMany when set
	short   bool  // return one result too few
	panics  bool
}

func (l *batchLoader) LoadMany(ctx context.Context, keys []string) ([]Loaded[string], error) {
	l.mu.Lock()
	l.batches = append(l.batches, append([]string(nil), keys...))
	l.mu.Unlock()
	if l.panics {
		panic("batch loader bug")
	}
	if l.err != nil {
		return nil, l.err
	}
	out := make([]Loaded[string], len(keys))
	for i, k := range keys {
		out[i].Value, out[i].Err = l.Load(ctx, k)
		if k == "ttl" {
			out[i].TTL = 5 * time.Second
		}
	}
	if l.short {
		out = out[1:]
	}
	return out, nil
}

func (l *batchLoader) loadedKeys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, b := range l.batches {
		n += len(b)
	}
	return n
}

func TestGetManyAlone(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(epoch)
	l := &batchLoader{}
	c := MustNew[string, string]("t", l, WithBatchSize(10), WithClock(clk.Now), WithNegativeTTL(time.Minute))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, "k0") // a hit for GetMany
	keys := []string{"k0", "missing1", "k1", "k1", "ttl"}
	for i := 2; i < 27; i++ {
		keys = append(keys, fmt.Sprint("k", i))
	}
	long := string(make([]byte, defaultMaxKeyBytes+1))
	keys = append(keys, long, "k2") // an invalid key, a duplicate
	l.calls.Store(0)
	res := c.GetMany(ctx, keys)
	if len(res) != len(keys) {
		t.Fatalf("%d results for %d keys", len(res), len(keys))
	}
	for i, k := range keys {
		r := res[i]
		switch {
		case k == long:
			if !errors.Is(r.Err, ErrInvalidKey) {
				t.Fatalf("result of an invalid key = %v", r.Err)
			}
		case k == "missing1":
			if !errors.Is(r.Err, ErrNotFound) {
				t.Fatalf("result of a missing key = %v", r.Err)
			}
		default:
			v, err := c.Get(ctx, k)
			if r.Err != nil || r.Value != v || err != nil {
				t.Fatalf("result %d (%s) = %q, %v; Get gives %q, %v", i, k, r.Value, r.Err, v, err)
			}
		}
	}
	// 28 distinct misses (k1..k26, missing1, ttl) in batches of at most 10: 3 calls, each key once.
	if n := len(l.batches); n != 3 {
		t.Fatalf("LoadMany calls = %d, want 3: %v", n, l.batches)
	}
	if n := l.loadedKeys(); n != 28 {
		t.Fatalf("keys loaded = %d, want 28", n)
	}
	if n := l.calls.Load(); n != 28 {
		t.Fatalf("Loads = %d, want 28 (the Gets above were hits)", n)
	}
	st := c.Stats()
	if st.BatchGets != 1 || st.BatchKeys != int64(len(keys)) || st.BatchLoads != 3 || st.NegativeEntries != 1 {
		t.Fatalf("stats = %+v", st)
	}
	// Per-key TTL from Loaded.
	clk.Advance(6 * time.Second)
	c.Get(ctx, "ttl")
	if n := l.calls.Load(); n != 29 {
		t.Fatalf("Loads = %d after ttl's own TTL, want 29", n)
	}

	if res := c.GetMany(ctx, nil); len(res) != 0 {
		t.Fatalf("GetMany of no keys = %v", res)
	}
}

func TestGetManyBatchLoaderFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		l     *batchLoader
		match func(error) bool
	}{
		{"error", &batchLoader{err: errors.New("db down")}, func(err error) bool { return err != nil && err.Error() == "db down" }},
		{"short", &batchLoader{short: true}, func(err error) bool { return err != nil }},
		{"panic", &batchLoader{panics: true}, func(err error) bool { var pe *PanicError; return errors.As(err, &pe) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := MustNew[string, string]("t", tc.l, WithLogger(discardLogger()))
			defer c.Close()
			for _, r := range c.GetMany(ctx, []string{"a", "b"}) {
				if !tc.match(r.Err) {
					t.Fatalf("result = %q, %v", r.Value, r.Err)
				}
			}
			if st := c.Stats(); st.Items != 0 {
				t.Fatalf("a failed batch cached %d items", st.Items)
			}
		})
	}
}

func TestGetManyWithoutBatchLoader(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	c := MustNew[string, string]("t", l)
	defer c.Close()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	for i, r := range c.GetMany(context.Background(), keys) {
		if r.Err != nil || r.Value != "v"+keys[i] {
			t.Fatalf("result %d = %q, %v", i, r.Value, r.Err)
		}
	}
	if n := l.calls.Load(); n != 100 {
		t.Fatalf("loads = %d, want 100", n)
	}
}

// TestGetManyJoinsFlights checks single flight per key across Get and GetMany: a key a Get is
// loading is not loaded again by GetMany, and a Get of a key GetMany is loading joins it.
func TestGetManyJoinsFlights(t *testing.T) {
	t.Parallel()
	l := &versionLoader{gate: make(chan error), started: make(chan struct{}, 1)}
	c := MustNew[string, string]("t", l)
	defer c.Close()
	ctx := context.Background()
	got := make(chan string)
	go func() {
		v, _ := c.Get(ctx, "a")
		got <- v
	}()
	<-l.started
	done := make(chan []Result[string])
	go func() { done <- c.GetMany(ctx, []string{"a", "b"}) }()
	// b is loaded by GetMany's flight (versionLoader's Load, one key at a time); a joins the Get.
	<-l.started // b's load has started: GetMany has joined a's flight and claimed b
	l.gate <- nil
	l.gate <- nil
	res := <-done
	va := <-got
	if res[0].Value != va || res[0].Err != nil {
		t.Fatalf("GetMany's a = %q, %v; the Get in flight got %q", res[0].Value, res[0].Err, va)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loads = %d, want 2 (a once, b once)", n)
	}
	if st := c.Stats(); st.Deduplicated < 1 {
		t.Fatalf("stats = %+v, want the joined key counted", st)
	}
}

func TestGetManyClosedAndCancelled(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	c := MustNew[string, string]("t", l)
	ctx := context.Background()
	c.Get(ctx, "hit")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	res := c.GetMany(cancelled, []string{"hit", "miss"})
	if res[0].Err != nil || res[0].Value != "vhit" {
		t.Fatalf("a hit with a cancelled ctx = %q, %v (Get serves hits whatever ctx)", res[0].Value, res[0].Err)
	}
	if !errors.Is(res[1].Err, context.Canceled) {
		t.Fatalf("a miss with a cancelled ctx = %v", res[1].Err)
	}
	c.Close()
	for _, r := range c.GetMany(ctx, []string{"hit"}) {
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("GetMany after Close = %v", r.Err)
		}
	}
}
