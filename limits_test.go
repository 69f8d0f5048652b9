package groupcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/clock"
)

// ttlBatchLoader gives every key it loads (one by one or in a batch) the TTL ttl.
type ttlBatchLoader struct{ ttl time.Duration }

func (l ttlBatchLoader) Load(ctx context.Context, k string) (string, error) {
	SetTTL(ctx, l.ttl)
	return "v" + k, nil
}

func (l ttlBatchLoader) LoadMany(_ context.Context, keys []string) ([]Loaded[string], error) {
	out := make([]Loaded[string], len(keys))
	for i, k := range keys {
		out[i] = Loaded[string]{Value: "v" + k, TTL: l.ttl}
	}
	return out, nil
}

// TestEntryTTLCappedAtCacheTTL: a TTL given per entry (SetTTL, Loaded.TTL, WithEntryTTL) longer
// than the cache's TTL is cut to it; a shorter one is kept; without a cache TTL it applies as
// given.
func TestEntryTTLCappedAtCacheTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		cacheTTL, entry time.Duration
		want            time.Duration
	}{
		{"longer", time.Minute, time.Hour, time.Minute},
		{"shorter", time.Minute, 10 * time.Second, 10 * time.Second},
		{"no cache TTL", 0, time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(epoch)
			c := MustNew[string, string]("t", ttlBatchLoader{tc.entry}, WithTTL(tc.cacheTTL), WithClock(clk.Now))
			defer c.Close()
			ctx := context.Background()
			if _, err := c.Get(ctx, "load"); err != nil {
				t.Fatal(err)
			}
			if r := c.GetMany(ctx, []string{"batch"})[0]; r.Err != nil {
				t.Fatal(r.Err)
			}
			if err := c.Set(ctx, "set", "v", WithEntryTTL(tc.entry)); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"load", "batch", "set"} {
				_, expires, ok := c.store.Peek(k)
				if !ok {
					t.Fatalf("%s: not stored", k)
				}
				if got := time.Duration(expires - epoch.UnixNano()); got != tc.want {
					t.Errorf("%s: TTL %v with an entry TTL of %v and a cache TTL of %v, want %v", k, got, tc.entry, tc.cacheTTL, tc.want)
				}
			}
		})
	}
}

func TestWithMaxLoadsRange(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, 0, 1<<16 + 1} {
		if _, err := New[string, string]("t", &countingLoader{}, WithMaxLoads(n)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithMaxLoads(%d): New = %v, want ErrInvalidOption", n, err)
		}
	}
	for _, n := range []int{1, 1 << 16} {
		c, err := New[string, string]("t", &countingLoader{}, WithMaxLoads(n))
		if err != nil {
			t.Fatalf("WithMaxLoads(%d): %v", n, err)
		}
		c.Close()
	}
}

// gatedLoader blocks every Load until its key's gate is closed, ignoring its context, and says on
// started which key it began.
type gatedLoader struct {
	gates   map[string]chan struct{}
	started chan string
}

func (l *gatedLoader) Load(_ context.Context, k string) (string, error) {
	l.started <- k
	<-l.gates[k]
	return "v" + k, nil
}

// waitFor polls cond until it holds, failing the test after a long while. It waits for a state
// that only a counter shows (a load waiting for its slot), not for time to pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMaxLoadsSlotHeldUntilLoaderReturns: with WithMaxLoads(1), a loader whose callers have all
// gone keeps its slot until it returns: the next load waits for it (Stats.LoadWaits), and starts
// once it returns.
func TestMaxLoadsSlotHeldUntilLoaderReturns(t *testing.T) {
	t.Parallel()
	l := &gatedLoader{gates: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}, started: make(chan string, 2)}
	close(l.gates["b"])
	c := MustNew[string, string]("t", l, WithMaxLoads(1))
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "a")
		errA <- err
	}()
	if k := <-l.started; k != "a" {
		t.Fatalf("started %q", k)
	}
	cancel() // a's only caller leaves; its loader goes on
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(a) after its ctx ended = %v", err)
	}
	gotB := make(chan string, 1)
	go func() {
		v, _ := c.Get(context.Background(), "b")
		gotB <- v
	}()
	waitFor(t, "b to wait for a slot", func() bool { return c.Stats().LoadWaits == 1 })
	select {
	case k := <-l.started:
		t.Fatalf("the loader of %q started while a's loader held the only slot", k)
	default:
	}
	close(l.gates["a"])
	if k := <-l.started; k != "b" {
		t.Fatalf("started %q", k)
	}
	if v := <-gotB; v != "vb" {
		t.Fatalf("Get(b) = %q", v)
	}
}

// TestMaxLoadsWaitBoundedByLoadTimeout: a load waiting for a slot ends with ErrLoadTimeout when
// the load timeout passes, without calling the loader; the slot of a loader that ran past the
// timeout is held until it returns, and then serves the next load.
func TestMaxLoadsWaitBoundedByLoadTimeout(t *testing.T) {
	t.Parallel()
	l := &gatedLoader{gates: map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{}), "c": make(chan struct{})},
		started: make(chan string, 3)}
	close(l.gates["b"])
	close(l.gates["c"])
	c := MustNew[string, string]("t", l, WithMaxLoads(1), WithLoadTimeout(100*time.Millisecond))
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Get(ctx, "a"); !errors.Is(err, ErrLoadTimeout) {
		t.Fatalf("Get(a) with a loader past the timeout = %v", err)
	}
	if _, err := c.Get(ctx, "b"); !errors.Is(err, ErrLoadTimeout) {
		t.Fatalf("Get(b) while a's loader holds the only slot = %v, want ErrLoadTimeout", err)
	}
	if w := c.Stats().LoadWaits; w != 1 {
		t.Fatalf("LoadWaits = %d, want 1", w)
	}
	if k := <-l.started; k != "a" {
		t.Fatalf("started %q", k)
	}
	select {
	case k := <-l.started:
		t.Fatalf("the loader of %q started while a's loader held the only slot", k)
	default:
	}
	close(l.gates["a"])
	waitFor(t, "a's loader to free its slot", func() bool { return len(c.loadSlots) == 0 })
	if v, err := c.Get(ctx, "c"); err != nil || v != "vc" {
		t.Fatalf("Get(c) once a's loader returned = %q, %v", v, err)
	}
}
