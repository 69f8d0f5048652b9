package fill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// watchdog bounds every wait in these tests, so that a bug makes a test fail instead of hang.
// It is never used to let time pass: all synchronisation is done with channels and counters.
const watchdog = 10 * time.Second

// recv returns the next value from ch, failing the test if none arrives in time.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(watchdog)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("nothing received after %v", watchdog)
		panic("unreachable")
	}
}

// settled waits until every goroutine of the test's synctest bubble is blocked, then checks cond.
func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("%s: not so once every goroutine is blocked", what)
	}
}

// waitUntil yields until cond holds, failing the test if it does not hold in time.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(watchdog)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, watchdog)
		}
		runtime.Gosched()
	}
}

type result[V any] struct {
	v      V
	err    error
	shared bool
}

// goDo runs g.Do in a new goroutine and returns a channel that gets its result.
func goDo[K comparable, V any](ctx context.Context, g *Group[K, V], key K, fn func(context.Context) (V, error)) <-chan result[V] {
	ch := make(chan result[V], 1)
	go func() {
		v, err, shared := g.Do(ctx, key, fn)
		ch <- result[V]{v, err, shared}
	}()
	return ch
}

// blocking returns a load function that sends its context on started and then returns v once
// release is closed. It ignores its context.
func blocking[V any](v V, started chan<- context.Context, release <-chan struct{}) func(context.Context) (V, error) {
	return func(ctx context.Context) (V, error) {
		if started != nil {
			started <- ctx
		}
		<-release
		return v, nil
	}
}

func mustNotRun[V any](t *testing.T) func(context.Context) (V, error) {
	return func(context.Context) (V, error) {
		t.Error("load function ran, want the caller to join the running load")
		var zero V
		return zero, nil
	}
}

func TestDoDeduplicatesConcurrentCallers(t *testing.T) {
	t.Parallel()
	const n = 1000
	g := New[string, int](0, nil)
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 42, nil
	}

	results := make([]<-chan result[int], n)
	for i := range results {
		results[i] = goDo(context.Background(), g, "k", fn)
	}
	waitUntil(t, "all callers to join", func() bool { return g.waiting("k") == n })
	if got := g.InFlight(); got != 1 {
		t.Errorf("InFlight() = %d while all callers wait, want 1", got)
	}
	close(release)

	shared := 0
	for _, ch := range results {
		r := recv(t, ch)
		if r.v != 42 || r.err != nil {
			t.Fatalf("Do = %v, %v, want 42, nil", r.v, r.err)
		}
		if r.shared {
			shared++
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("load function ran %d times, want 1", got)
	}
	if shared != n-1 {
		t.Errorf("%d callers got shared == true, want %d", shared, n-1)
	}
	if got := g.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after all loads returned, want 0", got)
	}
}

func TestDoDistinctKeysLoadConcurrently(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	started := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	// Each load waits until the other one has started: they only finish if they run at the same
	// time.
	load := func(i int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) {
			close(started[i])
			<-started[1-i]
			return i * 10, nil
		}
	}
	r0 := goDo(context.Background(), g, 0, load(0))
	r1 := goDo(context.Background(), g, 1, load(1))
	for i, ch := range []<-chan result[int]{r0, r1} {
		r := recv(t, ch)
		if r.v != i*10 || r.err != nil || r.shared {
			t.Errorf("Do(%d) = %v, %v, %v, want %d, nil, false", i, r.v, r.err, r.shared, i*10)
		}
	}
}

type ctxKey struct{}

func TestDoDetachedContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
	}{
		{"no timeout", 0},
		{"timeout", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New[string, string](tt.timeout, nil)
			// The caller's deadline is later than the group's timeout, so a deadline on the
			// load's context can only come from the group.
			parent, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "value"), 2*time.Hour)
			defer cancel()

			before := time.Now()
			v, err, _ := g.Do(parent, "k", func(ctx context.Context) (string, error) {
				if got := ctx.Value(ctxKey{}); got != "value" {
					t.Errorf("load context value = %v, want the caller's value", got)
				}
				deadline, ok := ctx.Deadline()
				switch {
				case tt.timeout == 0 && ok:
					t.Errorf("load context has deadline %v, want none", deadline)
				case tt.timeout > 0 && !ok:
					t.Errorf("load context has no deadline, want one after %v", tt.timeout)
				case tt.timeout > 0 && (deadline.Before(before.Add(tt.timeout)) || deadline.After(time.Now().Add(tt.timeout))):
					t.Errorf("load context deadline = %v, want the group's timeout %v from now", deadline, tt.timeout)
				}
				if err := ctx.Err(); err != nil {
					t.Errorf("load context already ended: %v", err)
				}
				return "ok", nil
			})
			if v != "ok" || err != nil {
				t.Errorf("Do = %q, %v, want ok, nil", v, err)
			}
		})
	}
}

func TestDoCallerLeavesLoadGoesOn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		leaver     string // "starter" or "joiner": which caller's context ends
		newContext func() (context.Context, context.CancelFunc)
		wantErr    error
	}{
		{"starter cancelled", "starter", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"joiner cancelled", "joiner", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"joiner cancelled with cause", "joiner", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(errors.New("caller gave up")) }
		}, context.Canceled},
		{"starter cancelled with cause", "starter", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(errors.New("caller gave up")) }
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New[string, int](0, nil)
			started := make(chan context.Context, 1)
			release := make(chan struct{})
			leaveCtx, leave := tt.newContext()
			defer leave()

			starterCtx, joinerCtx := context.Background(), leaveCtx
			if tt.leaver == "starter" {
				starterCtx, joinerCtx = leaveCtx, context.Background()
			}
			starter := goDo(starterCtx, g, "k", blocking(7, started, release))
			loadCtx := recv(t, started)
			joiner := goDo(joinerCtx, g, "k", mustNotRun[int](t))
			waitUntil(t, "the second caller to join", func() bool { return g.waiting("k") == 2 })

			leaving, staying := starter, joiner
			if tt.leaver == "joiner" {
				leaving, staying = joiner, starter
			}
			leave()
			r := recv(t, leaving)
			if !errors.Is(r.err, tt.wantErr) || r.err != leaveCtx.Err() {
				t.Errorf("leaving caller got %v, want its context's error %v", r.err, leaveCtx.Err())
			}
			if r.shared != (tt.leaver == "joiner") {
				t.Errorf("leaving caller got shared = %v", r.shared)
			}
			if err := loadCtx.Err(); err != nil {
				t.Errorf("load context ended (%v) although a caller still waits", err)
			}
			if got := g.waiting("k"); got != 1 {
				t.Errorf("%d callers wait after one left, want 1", got)
			}

			close(release)
			r = recv(t, staying)
			if r.v != 7 || r.err != nil || r.shared != (tt.leaver == "starter") {
				t.Errorf("staying caller got %v, %v, %v", r.v, r.err, r.shared)
			}
		})
	}
}

func TestDoCallerDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := New[string, int](0, nil)
		started := make(chan context.Context, 1)
		release := make(chan struct{})
		starter := goDo(context.Background(), g, "k", blocking(7, started, release))
		recv(t, started)

		// The caller's deadline may pass before or after it joins the load; both must end its
		// wait with context.DeadlineExceeded.
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		_, err, _ := g.Do(ctx, "k", mustNotRun[int](t))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Do with an expiring context = %v, want context.DeadlineExceeded", err)
		}

		close(release)
		if r := recv(t, starter); r.v != 7 || r.err != nil {
			t.Errorf("starter got %v, %v, want 7, nil", r.v, r.err)
		}
	})
}

func TestDoLastWaiterLeavesCancelsAndForgets(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	started := make(chan context.Context, 1)
	release1 := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	first := goDo(ctx, g, "k", blocking(1, started, release1)) // ignores its context
	load1 := recv(t, started)
	cancel()
	if r := recv(t, first); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", r.err)
	}
	// Both happen before Do returns.
	if err := load1.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("load context error = %v after the last waiter left, want context.Canceled", err)
	}
	if got := g.waiting("k"); got != 0 {
		t.Errorf("the abandoned load is still joinable (%d waiters)", got)
	}
	if got := g.InFlight(); got != 1 {
		t.Errorf("InFlight() = %d, want 1: the abandoned load function has not returned", got)
	}

	// A new caller starts a new load instead of joining the cancelled one.
	release2 := make(chan struct{})
	second := goDo(context.Background(), g, "k", blocking(2, started, release2))
	load2 := recv(t, started)
	if load2 == load1 || load2.Err() != nil {
		t.Fatalf("second load got context %v (err %v), want a fresh live context", load2, load2.Err())
	}
	if got := g.InFlight(); got != 2 {
		t.Errorf("InFlight() = %d, want 2", got)
	}

	// The old load function returns; it must not remove the newer flight of the same key.
	close(release1)
	waitUntil(t, "the abandoned load to finish", func() bool { return g.InFlight() == 1 })
	third := goDo(context.Background(), g, "k", mustNotRun[int](t))
	waitUntil(t, "a third caller to join the second load", func() bool { return g.waiting("k") == 2 })

	close(release2)
	if r := recv(t, second); r.v != 2 || r.err != nil || r.shared {
		t.Errorf("second caller got %v, %v, %v, want 2, nil, false", r.v, r.err, r.shared)
	}
	if r := recv(t, third); r.v != 2 || r.err != nil || !r.shared {
		t.Errorf("third caller got %v, %v, %v, want 2, nil, true", r.v, r.err, r.shared)
	}
}

func TestDoTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fn   func(release <-chan struct{}) func(context.Context) (int, error)
	}{
		{"load ignores its context", func(release <-chan struct{}) func(context.Context) (int, error) {
			return blocking(1, nil, release)
		}},
		{"load returns ctx.Err", func(<-chan struct{}) func(context.Context) (int, error) {
			return func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			}
		}},
		{"load returns a wrapped ctx.Err", func(<-chan struct{}) func(context.Context) (int, error) {
			return func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, fmt.Errorf("query: %w", ctx.Err())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 5
				g := New[string, int](10*time.Millisecond, nil)
				release := make(chan struct{})
				defer close(release)
				var calls atomic.Int32
				inner := tt.fn(release)
				fn := func(ctx context.Context) (int, error) {
					calls.Add(1)
					return inner(ctx)
				}

				// Callers that arrive after the timeout start a load of their own, which times
				// out as well.
				results := make([]<-chan result[int], n)
				for i := range results {
					results[i] = goDo(context.Background(), g, "k", fn)
				}
				for _, ch := range results {
					r := recv(t, ch)
					if !errors.Is(r.err, timeoutError{}) || !errors.Is(r.err, context.DeadlineExceeded) {
						t.Errorf("Do = %v, want an error matching timeoutError{} and context.DeadlineExceeded", r.err)
					}
				}

				// The timed-out load is forgotten: the next caller starts a new one.
				v, err, shared := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
				if v != 2 || err != nil || shared {
					t.Errorf("Do after the timeout = %v, %v, %v, want 2, nil, false", v, err, shared)
				}
				if got, want := g.InFlight(), int(calls.Load()); got > want {
					t.Errorf("InFlight() = %d, more than the %d timed-out loads", got, want)
				}
			})
		})
	}
}

func TestDoTimeoutLoadNeverReturns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := New[string, int](5*time.Millisecond, nil)
		release := make(chan struct{})
		started := make(chan context.Context, 1)
		_, err, _ := g.Do(context.Background(), "k", blocking(1, started, release))
		if !errors.Is(err, timeoutError{}) {
			t.Fatalf("Do = %v, want timeoutError{}", err)
		}
		load := recv(t, started)
		if !errors.Is(load.Err(), context.DeadlineExceeded) {
			t.Errorf("load context error = %v, want context.DeadlineExceeded", load.Err())
		}
		if got := g.InFlight(); got != 1 {
			t.Errorf("InFlight() = %d, want 1 while the load function has not returned", got)
		}
		if got := g.waiting("k"); got != 0 {
			t.Errorf("the timed-out load is still joinable (%d waiters)", got)
		}
		close(release)
		settled(t, "the load function to return", func() bool { return g.InFlight() == 0 })
	})
}

func TestDoPanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		value     any
		check     func(t *testing.T, pe *PanicError)
		wantMatch error // an error errors.Is must find through the *PanicError
	}{
		{"string", "boom", func(t *testing.T, pe *PanicError) {
			if pe.Value != "boom" {
				t.Errorf("Value = %v, want boom", pe.Value)
			}
			if pe.Unwrap() != nil {
				t.Errorf("Unwrap() = %v, want nil for a non-error value", pe.Unwrap())
			}
		}, nil},
		{"error", io.ErrUnexpectedEOF, func(t *testing.T, pe *PanicError) {
			if pe.Unwrap() != io.ErrUnexpectedEOF {
				t.Errorf("Unwrap() = %v, want the panic value", pe.Unwrap())
			}
		}, io.ErrUnexpectedEOF},
		{"nil", nil, func(t *testing.T, pe *PanicError) {
			var pne *runtime.PanicNilError
			if !errors.As(pe, &pne) {
				t.Errorf("Value = %#v, want *runtime.PanicNilError", pe.Value)
			}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 3
			g := New[string, int](0, nil)
			release := make(chan struct{})
			fn := func(context.Context) (int, error) {
				<-release
				panic(tt.value)
			}
			results := make([]<-chan result[int], n)
			for i := range results {
				results[i] = goDo(context.Background(), g, "k", fn)
			}
			waitUntil(t, "all callers to join", func() bool { return g.waiting("k") == n })
			close(release)

			var first *PanicError
			for _, ch := range results {
				r := recv(t, ch)
				var pe *PanicError
				if !errors.As(r.err, &pe) {
					t.Fatalf("Do = %v, want a *PanicError", r.err)
				}
				if first == nil {
					first = pe
				} else if pe != first {
					t.Errorf("waiters got different *PanicError values")
				}
			}
			tt.check(t, first)
			if tt.wantMatch != nil && !errors.Is(first, tt.wantMatch) {
				t.Errorf("errors.Is(%v, %v) = false", first, tt.wantMatch)
			}
			msg := first.Error()
			if !strings.HasPrefix(msg, "fill: load panicked: ") {
				t.Errorf("Error() = %q, want prefix %q", msg, "fill: load panicked: ")
			}
			if !bytes.Contains(first.Stack, []byte("fill_test.go")) || strings.Contains(msg, "\n") {
				t.Errorf("stack does not show the panicking function, or Error() is not one line:\n%s\n%s", msg, first.Stack)
			}
			if got := g.InFlight(); got != 0 {
				t.Errorf("InFlight() = %d after the panic, want 0", got)
			}
		})
	}
}

func TestDoGoexit(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	_, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) {
		runtime.Goexit()
		return 1, nil
	})
	if !errors.Is(err, errGoexit) {
		t.Errorf("Do = %v, want %v", err, errGoexit)
	}
	if got := g.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
}

func TestDoErrorsAreNotCached(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	errLoad := errors.New("load failed")
	var calls atomic.Int32
	fn := func(context.Context) (int, error) {
		if calls.Add(1) == 1 {
			return 0, errLoad
		}
		return 5, nil
	}
	steps := []struct {
		wantV   int
		wantErr error
	}{
		{0, errLoad},
		{5, nil},
		{5, nil},
	}
	for i, s := range steps {
		v, err, shared := g.Do(context.Background(), "k", fn)
		if v != s.wantV || err != s.wantErr || shared {
			t.Errorf("Do #%d = %v, %v, %v, want %v, %v, false", i+1, v, err, shared, s.wantV, s.wantErr)
		}
	}
	if got := calls.Load(); got != int32(len(steps)) {
		t.Errorf("load function ran %d times, want %d: results must not be cached", got, len(steps))
	}
}

func TestDoForgetsBeforeReleasingWaiters(t *testing.T) {
	t.Parallel()
	const n = 50
	g := New[string, string](0, nil)
	release, returned := make(chan struct{}), make(chan struct{})
	first := func(context.Context) (string, error) {
		<-release
		close(returned)
		return "first", nil
	}
	second := func(context.Context) (string, error) { return "second", nil }

	type seen struct {
		a, b  string
		stale bool // the first flight was still in the map when Do returned
	}
	results := make(chan seen, n)
	var firstFlight *flight[string]
	for range n {
		go func() {
			a, _, _ := g.Do(context.Background(), "k", first)
			g.mu.Lock()
			stale := g.flights["k"] == firstFlight
			g.mu.Unlock()
			// Issued right after the first Do returned: must never see the first load.
			b, _, _ := g.Do(context.Background(), "k", second)
			results <- seen{a, b, stale}
		}()
	}
	waitUntil(t, "all callers to join", func() bool { return g.waiting("k") == n })

	// Hold the lock while the load function returns. A group that released the waiters before
	// forgetting the flight would let them return while the flight is still in the map; this
	// group must make them wait for the lock.
	g.mu.Lock()
	firstFlight = g.flights["k"]
	close(release)
	recv(t, returned)
	for range 100 {
		runtime.Gosched()
	}
	g.mu.Unlock()

	for range n {
		r := recv(t, results)
		if r.a != "first" || r.b != "second" {
			t.Errorf("got %q then %q, want first then second", r.a, r.b)
		}
		if r.stale {
			t.Error("Do returned while its flight was still in the map")
		}
	}
}

func TestForget(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	g.Forget("absent") // no-op

	started := make(chan context.Context, 1)
	release1, release2 := make(chan struct{}), make(chan struct{})
	a := goDo(context.Background(), g, "k", blocking(1, started, release1))
	recv(t, started)
	b := goDo(context.Background(), g, "k", mustNotRun[int](t))
	waitUntil(t, "b to join the first load", func() bool { return g.waiting("k") == 2 })

	g.Forget("k")
	if got := g.waiting("k"); got != 0 {
		t.Fatalf("%d callers wait for key after Forget, want 0", got)
	}
	c := goDo(context.Background(), g, "k", blocking(2, started, release2))
	recv(t, started)
	d := goDo(context.Background(), g, "k", mustNotRun[int](t))
	waitUntil(t, "d to join the second load", func() bool { return g.waiting("k") == 2 })

	// The forgotten load still delivers to its own waiters, and leaves the new one alone.
	close(release1)
	if r := recv(t, a); r != (result[int]{1, nil, false}) {
		t.Errorf("a got %+v", r)
	}
	if r := recv(t, b); r != (result[int]{1, nil, true}) {
		t.Errorf("b got %+v", r)
	}
	if got := g.waiting("k"); got != 2 {
		t.Errorf("the second load lost its waiters (%d), want 2", got)
	}
	close(release2)
	if r := recv(t, c); r != (result[int]{2, nil, false}) {
		t.Errorf("c got %+v", r)
	}
	if r := recv(t, d); r != (result[int]{2, nil, true}) {
		t.Errorf("d got %+v", r)
	}
}

func TestInFlight(t *testing.T) {
	t.Parallel()
	g := New[int, int](0, nil)
	if got := g.InFlight(); got != 0 {
		t.Fatalf("InFlight() = %d for a new group, want 0", got)
	}
	const n = 3
	started := make(chan context.Context, n)
	release := make(chan struct{})
	results := make([]<-chan result[int], n)
	for i := range results {
		results[i] = goDo(context.Background(), g, i, blocking(i, started, release))
	}
	for range n {
		recv(t, started)
	}
	if got := g.InFlight(); got != n {
		t.Errorf("InFlight() = %d with %d keys loading, want %d", got, n, n)
	}
	close(release)
	for _, ch := range results {
		recv(t, ch)
	}
	// Loads are counted out before their waiters are released.
	if got := g.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after all Do calls returned, want 0", got)
	}
}

func TestDoContextAlreadyDone(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err, shared := g.Do(ctx, "k", mustNotRun[int](t))
	if v != 0 || !errors.Is(err, context.Canceled) || shared {
		t.Errorf("Do = %v, %v, %v, want 0, context.Canceled, false", v, err, shared)
	}
	if got := g.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
}

func TestZeroGroup(t *testing.T) {
	t.Parallel()
	var g Group[string, int]
	v, err, shared := g.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		if _, ok := ctx.Deadline(); ok {
			t.Error("zero Group gave the load a deadline")
		}
		return 3, nil
	})
	if v != 3 || err != nil || shared {
		t.Errorf("Do = %v, %v, %v, want 3, nil, false", v, err, shared)
	}
	g.Forget("k")
	if got := g.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
}

func TestNewNegativeTimeout(t *testing.T) {
	t.Parallel()
	g := New[string, int](-time.Second, nil)
	v, err, _ := g.Do(context.Background(), "k", func(ctx context.Context) (int, error) {
		if _, ok := ctx.Deadline(); ok {
			t.Error("negative timeout gave the load a deadline")
		}
		return 1, nil
	})
	if v != 1 || err != nil {
		t.Errorf("Do = %v, %v, want 1, nil", v, err)
	}
}

func TestTimeoutError(t *testing.T) {
	t.Parallel()
	var te error = timeoutError{}
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"default is DeadlineExceeded", te, context.DeadlineExceeded, true},
		{"wrapped default is DeadlineExceeded", fmt.Errorf("get: %w", te), context.DeadlineExceeded, true},
		{"default is not Canceled", te, context.Canceled, false},
		{"DeadlineExceeded is not the default", context.DeadlineExceeded, te, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, tt.target, got, tt.want)
			}
		})
	}
	var to interface{ Timeout() bool }
	if !errors.As(te, &to) || !to.Timeout() {
		t.Error("the default timeout error does not report Timeout() == true")
	}
	if !strings.HasPrefix(te.Error(), "fill:") {
		t.Errorf("Error() = %q, want prefix fill:", te.Error())
	}
}

// TestTimeoutErrorGiven checks that a group's callers get the timeout error given to New, from
// every entry point.
func TestTimeoutErrorGiven(t *testing.T) {
	t.Parallel()
	mine := fmt.Errorf("mine: %w", context.DeadlineExceeded)
	slow := func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	synctest.Test(t, func(t *testing.T) {
		g := New[string, int](time.Second, mine)
		if _, err, _ := g.Do(context.Background(), "a", slow); err != mine {
			t.Errorf("Do = %v, want the given error", err)
		}
		past := func(ctx context.Context) (int, error) { // honours its deadline, as DoHere asks
			d, _ := ctx.Deadline()
			time.Sleep(time.Until(d) + time.Millisecond)
			return 0, context.DeadlineExceeded
		}
		if _, err, _ := g.DoHere(context.Background(), "b", past); err != mine {
			t.Errorf("DoHere = %v, want the given error", err)
		}
		late := make(chan struct{}) // fn returns after the timeout has finished its key
		rs := g.DoMany(context.Background(), []string{"c"}, func(ctx context.Context, _ []string, set func(int, int, error)) {
			<-ctx.Done()
			<-late
		})
		close(late)
		if rs[0].Err != mine {
			t.Errorf("DoMany = %v, want the given error", rs[0].Err)
		}
	})
}

// TestDoStress mixes keys, cancelled callers, failing and panicking loads and timeouts, for the
// race detector, and checks that every result belongs to its key and nothing is left over.
func TestDoStress(t *testing.T) {
	t.Parallel()
	for _, timeout := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("timeout=", timeout), func(t *testing.T) {
			const (
				callers = 32
				rounds  = 200
				keys    = 4
			)
			g := New[int, int](timeout, nil)
			errLoad := errors.New("load failed")
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(c), 1))
					for range rounds {
						key := rng.IntN(keys)
						mode := rng.IntN(10)
						spins := rng.IntN(4)
						ctx, cancel := context.WithCancel(context.Background())
						if mode == 0 {
							cancel()
						}
						v, err, _ := g.Do(ctx, key, func(ctx context.Context) (int, error) {
							for range spins {
								runtime.Gosched()
							}
							switch mode {
							case 1:
								return 0, errLoad
							case 2:
								panic("stress")
							case 3:
								cancel() // the caller leaves while its load runs
							}
							return key * 10, ctx.Err()
						})
						cancel()
						var pe *PanicError
						switch {
						case err == nil:
							if v != key*10 {
								t.Errorf("Do(%d) = %d, want %d", key, v, key*10)
							}
						case errors.Is(err, context.Canceled), errors.Is(err, timeoutError{}),
							errors.Is(err, errLoad), errors.As(err, &pe):
						default:
							t.Errorf("Do(%d): unexpected error %v", key, err)
						}
					}
				})
			}
			wg.Wait()
			waitUntil(t, "all loads to return", func() bool { return g.InFlight() == 0 })
			g.mu.Lock()
			left := len(g.flights)
			g.mu.Unlock()
			if left != 0 {
				t.Errorf("%d flights left in the map", left)
			}
		})
	}
}

func TestForgetAll(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var calls atomic.Int64
	load := func(context.Context) (int, error) {
		n := calls.Add(1)
		started <- struct{}{}
		<-release
		return int(n), nil
	}
	done := make(chan int, 2)
	for _, k := range []string{"a", "b"} {
		go func() { v, _, _ := g.Do(context.Background(), k, load); done <- v }()
	}
	<-started
	<-started
	g.ForgetAll()
	// A Do after ForgetAll starts a new load instead of joining the old one.
	go func() { v, _, _ := g.Do(context.Background(), "a", load); done <- v }()
	<-started
	close(release)
	for range 3 {
		<-done
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("loads = %d, want 3", n)
	}
}
