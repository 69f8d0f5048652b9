package fill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

type setFunc[V any] = func(i int, v V, err error)

type batchFn[K comparable, V any] = func(ctx context.Context, keys []K, set setFunc[V])

// goDoMany runs g.DoMany in a new goroutine and returns a channel that gets its results.
func goDoMany[K comparable, V any](ctx context.Context, g *Group[K, V], keys []K, fn batchFn[K, V]) <-chan []Result[V] {
	ch := make(chan []Result[V], 1)
	go func() { ch <- g.DoMany(ctx, keys, fn) }()
	return ch
}

// batchCall is one call of a batch function, as seen by the test.
type batchCall[K comparable, V any] struct {
	ctx  context.Context
	keys []K
	set  setFunc[V]
}

// blockingBatch returns a batch function that sends its call on calls and then returns once
// release is closed, without setting anything itself (the test sets through the call).
func blockingBatch[K comparable, V any](calls chan<- batchCall[K, V], release <-chan struct{}) batchFn[K, V] {
	return func(ctx context.Context, keys []K, set setFunc[V]) {
		calls <- batchCall[K, V]{ctx, keys, set}
		<-release
	}
}

func mustNotRunBatch[K comparable, V any](t *testing.T) batchFn[K, V] {
	return func(context.Context, []K, setFunc[V]) {
		t.Error("batch function ran, want every key joined")
	}
}

// waitDone waits until ctx has ended, failing the test if it does not end in time.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	timer := time.NewTimer(watchdog)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
		t.Fatalf("context still live after %v", watchdog)
	}
}

// flightsLeft returns the number of keys with a flight in g.
func flightsLeft[K comparable, V any](g *Group[K, V]) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.flights)
}

func TestDoManyLoadsClaimedKeysInOneCall(t *testing.T) {
	t.Parallel()
	g := New[string, string](time.Minute, nil)
	errB := errors.New("no b")
	var calls atomic.Int32
	keys := []string{"a", "b", "c"}
	res := g.DoMany(context.Background(), keys, func(ctx context.Context, got []string, set setFunc[string]) {
		calls.Add(1)
		if !slices.Equal(got, keys) {
			t.Errorf("fn got keys %q, want %q", got, keys)
		}
		// Out of order, and from other goroutines.
		var wg sync.WaitGroup
		for i := len(got) - 1; i >= 0; i-- {
			wg.Go(func() {
				if got[i] == "b" {
					set(i, "", errB)
				} else {
					set(i, "v"+got[i], nil)
				}
			})
		}
		wg.Wait()
	})
	want := []Result[string]{{"va", nil, false}, {"", errB, false}, {"vc", nil, false}}
	if !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("fn called %d times, want 1", got)
	}
	waitUntil(t, "the batch function to be counted out", func() bool { return g.InFlight() == 0 })
	if n := flightsLeft(g); n != 0 {
		t.Errorf("%d flights left after DoMany", n)
	}
}

func TestDoManyJoinsRunningDo(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	started := make(chan context.Context, 1)
	release := make(chan struct{})
	do := goDo(context.Background(), g, "b", blocking(20, started, release))
	recv(t, started)

	batch := goDoMany(context.Background(), g, []string{"a", "b", "c"},
		func(_ context.Context, keys []string, set setFunc[int]) {
			if !slices.Equal(keys, []string{"a", "c"}) {
				t.Errorf("fn got keys %q, want [a c]: b is being loaded by Do", keys)
			}
			for i, k := range keys {
				set(i, int(k[0]-'a')*10, nil)
			}
			<-release
		})
	waitUntil(t, "DoMany to join the load of b", func() bool { return g.waiting("b") == 2 })
	if got := g.InFlight(); got != 2 {
		t.Errorf("InFlight() = %d with one Do and one batch running, want 2", got)
	}
	close(release)

	want := []Result[int]{{0, nil, false}, {20, nil, true}, {20, nil, false}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	if r := recv(t, do); r != (result[int]{20, nil, false}) {
		t.Errorf("Do = %+v", r)
	}
}

func TestDoManyIsJoinedByDoAndDoHere(t *testing.T) {
	t.Parallel()
	g := New[string, int](time.Minute, nil)
	calls := make(chan batchCall[string, int], 1)
	release := make(chan struct{})
	batch := goDoMany(context.Background(), g, []string{"a", "b"}, blockingBatch(calls, release))
	call := recv(t, calls)

	do := goDo(t.Context(), g, "a", mustNotRun[int](t))
	here := make(chan result[int], 1)
	go func() {
		v, err, shared := g.DoHere(context.Background(), "b", mustNotRun[int](t))
		here <- result[int]{v, err, shared}
	}()
	waitUntil(t, "Do and DoHere to join the batch", func() bool { return g.waiting("a") == 2 && g.waiting("b") == 2 })

	call.set(0, 1, nil)
	call.set(1, 2, nil)
	if r := recv(t, do); r != (result[int]{1, nil, true}) {
		t.Errorf("Do(a) = %+v, want the batch's value shared", r)
	}
	if r := recv(t, here); r != (result[int]{2, nil, true}) {
		t.Errorf("DoHere(b) = %+v, want the batch's value shared", r)
	}
	want := []Result[int]{{1, nil, false}, {2, nil, false}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	close(release)
	waitUntil(t, "the batch function to return", func() bool { return g.InFlight() == 0 })
}

func TestDoManyJoinsAnotherDoMany(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	calls := make(chan batchCall[int, int], 2)
	release := make(chan struct{})
	first := goDoMany(context.Background(), g, []int{1, 2}, blockingBatch(calls, release))
	c1 := recv(t, calls)
	second := goDoMany(context.Background(), g, []int{2, 3}, blockingBatch(calls, release))
	c2 := recv(t, calls)
	if !slices.Equal(c2.keys, []int{3}) {
		t.Errorf("second batch got keys %v, want [3]", c2.keys)
	}
	waitUntil(t, "the second DoMany to join key 2", func() bool { return g.waiting(2) == 2 })
	c1.set(0, 10, nil)
	c1.set(1, 20, nil)
	c2.set(0, 30, nil)
	close(release)
	if res := recv(t, first); !slices.Equal(res, []Result[int]{{10, nil, false}, {20, nil, false}}) {
		t.Errorf("first DoMany = %+v", res)
	}
	if res := recv(t, second); !slices.Equal(res, []Result[int]{{20, nil, true}, {30, nil, false}}) {
		t.Errorf("second DoMany = %+v", res)
	}
}

// TestDoManyOverlappingLoadsEachKeyOnce runs many DoMany and Do callers over overlapping keys
// while every load is held back, and checks that each key was loaded exactly once.
func TestDoManyOverlappingLoadsEachKeyOnce(t *testing.T) {
	t.Parallel()
	const (
		keys     = 64
		callers  = 48
		maxBatch = 16
	)
	g := New[int, int](0, nil)
	var loads [keys]atomic.Int32
	release := make(chan struct{})
	batchFn := func(_ context.Context, ks []int, set setFunc[int]) {
		for _, k := range ks {
			loads[k].Add(1)
		}
		<-release
		for i, k := range ks {
			set(i, k*10, nil)
		}
	}
	doFn := func(k int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) {
			loads[k].Add(1)
			<-release
			return k * 10, nil
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	requests := 0
	var wg sync.WaitGroup
	for c := range callers {
		if c%4 == 3 {
			k := rng.IntN(keys)
			requests++
			wg.Go(func() {
				if v, err, _ := g.Do(context.Background(), k, doFn(k)); v != k*10 || err != nil {
					t.Errorf("Do(%d) = %d, %v", k, v, err)
				}
			})
			continue
		}
		ks := rng.Perm(keys)[:1+rng.IntN(maxBatch)]
		requests += len(ks)
		wg.Go(func() {
			for i, r := range g.DoMany(context.Background(), ks, batchFn) {
				if r.Val != ks[i]*10 || r.Err != nil {
					t.Errorf("DoMany key %d = %+v", ks[i], r)
				}
			}
		})
	}
	waitUntil(t, "every caller to claim or join its keys", func() bool {
		total := 0
		for k := range keys {
			total += g.waiting(k)
		}
		return total == requests
	})
	close(release)
	wg.Wait()
	for k := range keys {
		if n := loads[k].Load(); n > 1 {
			t.Errorf("key %d loaded %d times, want at most once", k, n)
		}
	}
	waitUntil(t, "all loads to return", func() bool { return g.InFlight() == 0 })
	if n := flightsLeft(g); n != 0 {
		t.Errorf("%d flights left", n)
	}
}

func TestDoManyReleasesEachKeyWhenSet(t *testing.T) {
	t.Parallel()
	g := New[string, string](0, nil)
	calls := make(chan batchCall[string, string], 1)
	release := make(chan struct{})
	batch := goDoMany(context.Background(), g, []string{"fast", "slow"}, blockingBatch(calls, release))
	call := recv(t, calls)
	do := goDo(context.Background(), g, "fast", mustNotRun[string](t))
	waitUntil(t, "Do to join the batch", func() bool { return g.waiting("fast") == 2 })

	call.set(0, "fast value", nil)
	// fn is still blocked, and "slow" unset: the fast key is delivered anyway.
	if r := recv(t, do); r != (result[string]{"fast value", nil, true}) {
		t.Errorf("Do(fast) = %+v", r)
	}
	if got := g.waiting("fast"); got != 0 {
		t.Errorf("key fast still in flight (%d waiters) after its set", got)
	}
	// The key is forgotten: a new Do loads it again, while the batch still runs.
	if v, err, shared := g.Do(context.Background(), "fast", func(context.Context) (string, error) { return "again", nil }); v != "again" || err != nil || shared {
		t.Errorf("Do(fast) after set = %q, %v, %v, want a new load", v, err, shared)
	}
	select {
	case res := <-batch:
		t.Fatalf("DoMany returned %+v before its slow key was set", res)
	default:
	}
	call.set(1, "slow value", nil)
	want := []Result[string]{{"fast value", nil, false}, {"slow value", nil, false}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	close(release)
}

func TestDoManyUnsetKeys(t *testing.T) {
	t.Parallel()
	var panicked *PanicError
	tests := []struct {
		name  string
		fn    batchFn[int, int] // sets index 1 only, then ends somehow
		check func(t *testing.T, err error)
	}{
		{"returns", func(_ context.Context, _ []int, set setFunc[int]) {
			set(1, 10, nil)
		}, func(t *testing.T, err error) {
			if err != errNoResult {
				t.Errorf("err = %v, want errNoResult", err)
			}
		}},
		{"panics", func(_ context.Context, _ []int, set setFunc[int]) {
			set(1, 10, nil)
			panic("boom")
		}, func(t *testing.T, err error) {
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != "boom" {
				t.Fatalf("err = %v, want a *PanicError with value boom", err)
			}
			if panicked != nil && pe != panicked {
				t.Error("unset keys got different *PanicError values")
			}
			panicked = pe
		}},
		{"calls Goexit", func(_ context.Context, _ []int, set setFunc[int]) {
			set(1, 10, nil)
			runtime.Goexit()
		}, func(t *testing.T, err error) {
			if err != errGoexit {
				t.Errorf("err = %v, want %v", err, errGoexit)
			}
		}},
		{"sets out of range", func(_ context.Context, _ []int, set setFunc[int]) {
			set(1, 10, nil)
			set(3, 30, nil)
		}, func(t *testing.T, err error) {
			var pe *PanicError
			if !errors.As(err, &pe) {
				t.Errorf("err = %v, want a *PanicError", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New[int, int](time.Minute, nil)
			var set setFunc[int]
			res := g.DoMany(context.Background(), []int{0, 1, 2}, func(ctx context.Context, keys []int, s setFunc[int]) {
				set = s
				tt.fn(ctx, keys, s)
			})
			if res[1] != (Result[int]{10, nil, false}) {
				t.Errorf("set key = %+v, want 10 kept", res[1])
			}
			for _, i := range []int{0, 2} {
				if res[i].Val != 0 || res[i].Shared {
					t.Errorf("unset key %d = %+v", i, res[i])
				}
				tt.check(t, res[i].Err)
			}
			if got := g.InFlight(); got != 0 {
				t.Errorf("InFlight() = %d after DoMany, want 0", got)
			}
			set(0, 1, nil) // after fn returned: ignored
			if n := flightsLeft(g); n != 0 {
				t.Errorf("%d flights left", n)
			}
		})
	}
}

func TestDoManyDoubleSetIgnored(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	res := g.DoMany(context.Background(), []string{"a"}, func(_ context.Context, _ []string, set setFunc[int]) {
		set(0, 1, nil)
		set(0, 2, errors.New("second set"))
	})
	if !slices.Equal(res, []Result[int]{{1, nil, false}}) {
		t.Errorf("DoMany = %+v, want the first set", res)
	}
}

func TestDoManyCallerLeaves(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	calls := make(chan batchCall[string, int], 1)
	release := make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batch := goDoMany(ctx, g, []string{"a", "b", "c"}, blockingBatch(calls, release))
	call := recv(t, calls)
	call.set(0, 1, nil)
	doCtx, doLeave := context.WithCancel(context.Background())
	defer doLeave()
	do := goDo(doCtx, g, "b", mustNotRun[int](t))
	waitUntil(t, "Do to join key b", func() bool { return g.waiting("b") == 2 })

	cancel()
	want := []Result[int]{{1, nil, false}, {0, context.Canceled, false}, {0, context.Canceled, false}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	if err := call.ctx.Err(); err != nil {
		t.Errorf("fn's context ended (%v) while Do still waits for b", err)
	}
	if g.waiting("b") != 1 || g.waiting("c") != 0 {
		t.Errorf("waiters: b %d, c %d, want 1 (Do) and 0 (forgotten)", g.waiting("b"), g.waiting("c"))
	}
	// c was given up: a new Do starts a new load, which the batch's late set does not disturb.
	started := make(chan context.Context, 1)
	cRelease := make(chan struct{})
	newC := goDo(context.Background(), g, "c", blocking(300, started, cRelease))
	recv(t, started)
	call.set(2, 3, nil)
	close(cRelease)
	if r := recv(t, newC); r != (result[int]{300, nil, false}) {
		t.Errorf("new Do(c) = %+v", r)
	}

	// The last waiter of the last wanted key leaves: fn's context is cancelled.
	doLeave()
	if r := recv(t, do); r.err != context.Canceled {
		t.Errorf("Do(b) = %+v, want context.Canceled", r)
	}
	waitDone(t, call.ctx)
	if err := call.ctx.Err(); err != context.Canceled {
		t.Errorf("fn's context error = %v, want context.Canceled", err)
	}
	if g.waiting("b") != 0 {
		t.Error("key b still joinable after every waiter left")
	}
	if got := g.InFlight(); got != 1 {
		t.Errorf("InFlight() = %d, want 1: fn has not returned", got)
	}
}

func TestDoManyCallerLeavesOthersGetValue(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	calls := make(chan batchCall[string, int], 1)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batch := goDoMany(ctx, g, []string{"a", "b"}, blockingBatch(calls, release))
	call := recv(t, calls)
	do := goDo(context.Background(), g, "b", mustNotRun[int](t))
	waitUntil(t, "Do to join key b", func() bool { return g.waiting("b") == 2 })

	cancel()
	want := []Result[int]{{0, context.Canceled, false}, {0, context.Canceled, false}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	call.set(1, 2, nil)
	if r := recv(t, do); r != (result[int]{2, nil, true}) {
		t.Errorf("Do(b) = %+v, want the batch's value", r)
	}
	// Key a was given up and b delivered: nothing fn could still deliver is wanted.
	waitDone(t, call.ctx)
	if err := call.ctx.Err(); err != context.Canceled {
		t.Errorf("fn's context error = %v, want context.Canceled", err)
	}
	close(release)
	waitUntil(t, "the batch function to be counted out", func() bool { return g.InFlight() == 0 })
}

func TestDoManyAllCallersLeaveCancels(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	ctxDone := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	batch := goDoMany(ctx, g, []int{1, 2, 3}, func(ctx context.Context, _ []int, set setFunc[int]) {
		set(0, 1, nil)
		close(started)
		<-ctx.Done() // honours its context
		ctxDone <- ctx.Err()
		set(1, 0, ctx.Err()) // ignored: nobody waits
	})
	<-started
	cancel()
	res := recv(t, batch)
	if res[0] != (Result[int]{1, nil, false}) || res[1].Err != context.Canceled || res[2].Err != context.Canceled {
		t.Errorf("DoMany = %+v", res)
	}
	if err := recv(t, ctxDone); err != context.Canceled {
		t.Errorf("fn's context error = %v, want context.Canceled", err)
	}
	waitUntil(t, "the batch function to return", func() bool { return g.InFlight() == 0 })
	if n := flightsLeft(g); n != 0 {
		t.Errorf("%d flights left", n)
	}
}

func TestDoManyTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fn   func(ctx context.Context, set setFunc[int], late <-chan struct{})
	}{
		{"fn ignores its context", func(_ context.Context, set setFunc[int], late <-chan struct{}) {
			<-late
			set(1, 2, nil) // after the timeout: ignored
		}},
		{"fn sets ctx.Err", func(ctx context.Context, set setFunc[int], late <-chan struct{}) {
			<-ctx.Done()
			// Races with the timeout's own finishing of the key: both report timeoutError{}.
			set(1, 0, fmt.Errorf("query: %w", ctx.Err()))
			<-late // c is left to the timeout, not to fn's return
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := New[string, int](10*time.Millisecond, nil)
				late := make(chan struct{})
				fnCtx := make(chan context.Context, 1)
				returned := make(chan struct{})
				res := g.DoMany(context.Background(), []string{"a", "b", "c"}, func(ctx context.Context, _ []string, set setFunc[int]) {
					defer close(returned)
					fnCtx <- ctx
					set(0, 1, nil)
					tt.fn(ctx, set, late)
				})
				if res[0] != (Result[int]{1, nil, false}) {
					t.Errorf("key set in time = %+v", res[0])
				}
				for _, r := range res[1:] {
					if !errors.Is(r.Err, timeoutError{}) || !errors.Is(r.Err, context.DeadlineExceeded) {
						t.Errorf("unset key = %+v, want timeoutError{}", r)
					}
				}
				if err := recv(t, fnCtx).Err(); err != context.DeadlineExceeded {
					t.Errorf("fn's context error = %v, want context.DeadlineExceeded", err)
				}
				if n := flightsLeft(g); n != 0 {
					t.Errorf("%d keys still joinable after the timeout", n)
				}
				close(late)
				<-returned
				settled(t, "the batch function to be counted out", func() bool { return g.InFlight() == 0 })
			})
		})
	}
}

func TestDoManyTimeoutFnNeverReturns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := New[int, int](5*time.Millisecond, nil)
		release := make(chan struct{})
		res := g.DoMany(context.Background(), []int{1, 2}, func(context.Context, []int, setFunc[int]) { <-release })
		for _, r := range res {
			if !errors.Is(r.Err, timeoutError{}) {
				t.Errorf("DoMany = %+v, want timeoutError{}", r)
			}
		}
		if got := g.InFlight(); got != 1 {
			t.Errorf("InFlight() = %d, want 1 while fn has not returned", got)
		}
		close(release)
		settled(t, "fn to return", func() bool { return g.InFlight() == 0 })
	})
}

func TestDoManyDetachedContext(t *testing.T) {
	t.Parallel()
	g := New[string, int](time.Hour, nil)
	parent, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "value"), 2*time.Hour)
	defer cancel()
	before := time.Now()
	g.DoMany(parent, []string{"a"}, func(ctx context.Context, _ []string, set setFunc[int]) {
		if got := ctx.Value(ctxKey{}); got != "value" {
			t.Errorf("fn's context value = %v, want the caller's", got)
		}
		if d, ok := ctx.Deadline(); !ok || d.Before(before.Add(time.Hour)) || d.After(time.Now().Add(time.Hour)) {
			t.Errorf("fn's deadline = %v, %v, want the group's timeout from now", d, ok)
		}
		set(0, 1, nil)
	})
}

func TestDoManyNoKeys(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	for _, keys := range [][]string{nil, {}} {
		if res := g.DoMany(context.Background(), keys, mustNotRunBatch[string, int](t)); len(res) != 0 {
			t.Errorf("DoMany(%#v) = %+v, want no results", keys, res)
		}
	}
}

func TestDoManyAllJoined(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	started := make(chan context.Context, 2)
	release := make(chan struct{})
	d1 := goDo(context.Background(), g, 1, blocking(10, started, release))
	d2 := goDo(context.Background(), g, 2, blocking(20, started, release))
	recv(t, started)
	recv(t, started)
	batch := goDoMany(context.Background(), g, []int{2, 1}, mustNotRunBatch[int, int](t))
	waitUntil(t, "DoMany to join both loads", func() bool { return g.waiting(1) == 2 && g.waiting(2) == 2 })
	if got := g.InFlight(); got != 2 {
		t.Errorf("InFlight() = %d, want 2: no batch started", got)
	}
	close(release)
	want := []Result[int]{{20, nil, true}, {10, nil, true}}
	if res := recv(t, batch); !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	recv(t, d1)
	recv(t, d2)
}

func TestDoManyContextAlreadyDone(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	started := make(chan context.Context, 1)
	release := make(chan struct{})
	do := goDo(context.Background(), g, 1, blocking(10, started, release))
	recv(t, started)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := g.DoMany(ctx, []int{1, 2}, mustNotRunBatch[int, int](t))
	want := []Result[int]{{0, context.Canceled, false}, {0, context.Canceled, false}}
	if !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	if g.waiting(1) != 1 || g.waiting(2) != 0 || g.InFlight() != 1 {
		t.Errorf("DoMany registered something: waiting %d, %d, InFlight %d", g.waiting(1), g.waiting(2), g.InFlight())
	}
	close(release)
	recv(t, do)
}

func TestDoManyDuplicateKeys(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	started := make(chan context.Context, 1)
	release := make(chan struct{})
	do := goDo(context.Background(), g, "joined", blocking(7, started, release))
	recv(t, started)

	var got []string
	batch := goDoMany(context.Background(), g, []string{"a", "joined", "b", "a", "joined"},
		func(_ context.Context, keys []string, set setFunc[int]) {
			got = keys
			for i := range keys {
				set(i, i+1, nil)
			}
		})
	waitUntil(t, "DoMany to join twice", func() bool { return g.waiting("joined") == 3 })
	close(release)
	res := recv(t, batch)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("fn got keys %q, want [a b]", got)
	}
	want := []Result[int]{{1, nil, false}, {7, nil, true}, {2, nil, false}, {1, nil, false}, {7, nil, true}}
	if !slices.Equal(res, want) {
		t.Errorf("DoMany = %+v, want %+v", res, want)
	}
	recv(t, do)
}

func TestDoManyForget(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	calls := make(chan batchCall[string, int], 1)
	release := make(chan struct{})
	batch := goDoMany(context.Background(), g, []string{"a"}, blockingBatch(calls, release))
	call := recv(t, calls)
	old := goDo(context.Background(), g, "a", mustNotRun[int](t))
	waitUntil(t, "Do to join the batch", func() bool { return g.waiting("a") == 2 })

	g.Forget("a")
	started := make(chan context.Context, 1)
	newRelease := make(chan struct{})
	fresh := goDo(context.Background(), g, "a", blocking(2, started, newRelease))
	recv(t, started)

	call.set(0, 1, nil) // must not remove the new flight
	if g.waiting("a") != 1 {
		t.Errorf("the new load of a lost its flight (%d waiters)", g.waiting("a"))
	}
	close(release)
	if res := recv(t, batch); !slices.Equal(res, []Result[int]{{1, nil, false}}) {
		t.Errorf("DoMany = %+v", res)
	}
	if r := recv(t, old); r != (result[int]{1, nil, true}) {
		t.Errorf("Do joined before Forget = %+v", r)
	}
	close(newRelease)
	if r := recv(t, fresh); r != (result[int]{2, nil, false}) {
		t.Errorf("Do after Forget = %+v", r)
	}
}

func TestDoManyNotCached(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	var calls atomic.Int32
	fn := func(_ context.Context, keys []string, set setFunc[int]) {
		n := int(calls.Add(1))
		for i := range keys {
			set(i, n, nil)
		}
	}
	for want := 1; want <= 3; want++ {
		res := g.DoMany(context.Background(), []string{"a", "b"}, fn)
		if !slices.Equal(res, []Result[int]{{want, nil, false}, {want, nil, false}}) {
			t.Errorf("DoMany #%d = %+v", want, res)
		}
	}
}

// TestDoManyStress mixes DoMany and Do callers over a few keys, with cancelled callers, panics,
// unset keys, sets from other goroutines and timeouts, for the race detector, and checks that
// every result belongs to its key and that nothing is left over.
func TestDoManyStress(t *testing.T) {
	t.Parallel()
	for _, timeout := range []time.Duration{0, time.Millisecond, time.Nanosecond} {
		t.Run(fmt.Sprint("timeout=", timeout), func(t *testing.T) {
			const (
				callers = 16
				rounds  = 200
				keys    = 8
			)
			g := New[int, int](timeout, nil)
			errLoad := errors.New("load failed")
			var wg sync.WaitGroup
			check := func(key, v int, err error) {
				var pe *PanicError
				switch {
				case err == nil:
					if v != key*10 {
						t.Errorf("key %d = %d, want %d", key, v, key*10)
					}
				case errors.Is(err, context.Canceled), errors.Is(err, timeoutError{}), errors.Is(err, errLoad),
					errors.Is(err, errNoResult), errors.As(err, &pe):
				default:
					t.Errorf("key %d: unexpected error %v", key, err)
				}
			}
			for c := range callers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(c), 3))
					for range rounds {
						mode := rng.IntN(12)
						ctx, cancel := context.WithCancel(context.Background())
						if mode == 0 {
							cancel()
						}
						if rng.IntN(3) == 0 {
							key := rng.IntN(keys)
							v, err, _ := g.Do(ctx, key, func(ctx context.Context) (int, error) {
								runtime.Gosched()
								return key * 10, ctx.Err()
							})
							cancel()
							check(key, v, err)
							continue
						}
						ks := rng.Perm(keys)[:1+rng.IntN(keys)]
						res := g.DoMany(ctx, ks, func(ctx context.Context, ks []int, set setFunc[int]) {
							var inner sync.WaitGroup
							defer inner.Wait()
							for i, k := range ks {
								switch {
								case mode == 1 && i == 0:
									set(i, 0, errLoad)
								case mode == 2 && i == len(ks)-1:
									panic("stress")
								case mode == 3 && i == 0:
									cancel() // the caller leaves while its batch runs
								case mode == 4 && i%2 == 0:
									// left unset
								case mode == 5:
									inner.Go(func() { set(i, k*10, ctx.Err()) })
								default:
									runtime.Gosched()
									set(i, k*10, ctx.Err())
								}
							}
						})
						cancel()
						for i, r := range res {
							check(ks[i], r.Val, r.Err)
						}
					}
				})
			}
			wg.Wait()
			waitUntil(t, "all loads to return", func() bool { return g.InFlight() == 0 })
			if n := flightsLeft(g); n != 0 {
				t.Errorf("%d flights left in the map", n)
			}
		})
	}
}

// BenchmarkDoMany compares one DoMany of 100 keys, whose function sets them all at once, with
// 100 Do calls loading the same keys one by one. On a shared 2-core AMD EPYC VM (go1.26,
// benchstat medians of 8 interleaved runs, ±25%):
//
//	DoMany-100            29 µs/op  114 allocs  28.7 KiB   (one call for 100 keys)
//	Do-x100               85 µs/op  600 allocs  35.9 KiB
//	DoMany-100-timeout    35 µs/op  122 allocs  28.7 KiB
//	Do-x100-timeout      127 µs/op  800 allocs  53.1 KiB
//
// so the group's own cost for a batch of 100 is about a third (a quarter with a timeout) of 100
// single loads, before counting what batching saves in the loader itself (one query or request
// instead of 100). Most of what is left is per key: a flight, a channel, a map entry.
func BenchmarkDoMany(b *testing.B) {
	const perCall = 100
	keys := make([]string, 100*perCall)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	for _, timeout := range []time.Duration{0, time.Minute} {
		suffix := ""
		if timeout > 0 {
			suffix = "-timeout"
		}
		b.Run("DoMany-100"+suffix, func(b *testing.B) {
			g := New[string, int](timeout, nil)
			fn := func(_ context.Context, ks []string, set func(int, int, error)) {
				for i := range ks {
					set(i, i, nil)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				off := (i % 100) * perCall
				g.DoMany(ctx, keys[off:off+perCall], fn)
				i++
			}
		})
		b.Run("Do-x100"+suffix, func(b *testing.B) {
			g := New[string, int](timeout, nil)
			load := func(context.Context) (int, error) { return 1, nil }
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				off := (i % 100) * perCall
				for _, k := range keys[off : off+perCall] {
					g.Do(ctx, k, load)
				}
				i++
			}
		})
	}
}

func TestDoManyZeroGroup(t *testing.T) {
	t.Parallel()
	var g Group[string, int]
	res := g.DoMany(context.Background(), []string{"a"}, func(ctx context.Context, _ []string, set setFunc[int]) {
		if _, ok := ctx.Deadline(); ok {
			t.Error("zero Group gave the batch a deadline")
		}
		set(0, 1, nil)
	})
	if !slices.Equal(res, []Result[int]{{1, nil, false}}) {
		t.Errorf("DoMany = %+v", res)
	}
}
