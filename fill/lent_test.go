package fill

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDoLentJoinersGetOwnCopy checks that the caller running a DoLent flight gets fn's value
// itself, lent, while the callers that joined it share one result of own, called once.
func TestDoLentJoinersGetOwnCopy(t *testing.T) {
	t.Parallel()
	g := New[string, string](0, nil)
	const joiners = 20
	var owns, calls atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{})
	type result struct {
		v   string
		err error
		ran bool
	}
	starter := make(chan result, 1)
	go func() {
		v, err, ran := g.DoLent(context.Background(), "k", func(context.Context) (string, func() (string, error), error) {
			calls.Add(1)
			close(started)
			<-release
			return "lent", func() (string, error) { owns.Add(1); return "own", nil }, nil
		})
		starter <- result{v, err, ran}
	}()
	<-started
	var wg sync.WaitGroup
	for i := range joiners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v string
			var err error
			var shared, ran bool
			if i%2 == 0 {
				v, err, ran = g.DoLent(t.Context(), "k", func(context.Context) (string, func() (string, error), error) {
					calls.Add(1)
					return "", nil, nil
				})
				shared = !ran
			} else { // a caller of Do joins it too
				v, err, shared = g.Do(t.Context(), "k", func(context.Context) (string, error) { calls.Add(1); return "", nil })
			}
			if v != "own" || err != nil || !shared || ran {
				t.Errorf("joiner %d got %q, %v, shared %v, ran %v", i, v, err, shared, ran)
			}
		}()
	}
	waitUntil(t, "the joiners to join", func() bool { return g.waiting("k") == joiners+1 })
	close(release)
	wg.Wait()
	if r := <-starter; r.v != "lent" || r.err != nil || !r.ran {
		t.Fatalf("starter got %+v", r)
	}
	if calls.Load() != 1 || owns.Load() != 1 {
		t.Fatalf("fn called %d times, own %d times", calls.Load(), owns.Load())
	}

	// Alone, nobody needs a copy: own is not called.
	v, err, ran := g.DoLent(context.Background(), "k", func(context.Context) (string, func() (string, error), error) {
		return "alone", func() (string, error) { owns.Add(1); return "own", nil }, nil
	})
	if v != "alone" || err != nil || !ran || owns.Load() != 1 {
		t.Fatalf("alone: %q, %v, ran %v, own called %d times", v, err, ran, owns.Load())
	}
}

// TestDoLentStarterLeaves checks that when the caller running the flight leaves (its ctx ends and
// fn fails), the callers that joined it, through DoLent, Do, DoHere or DoMany, start a new flight
// instead of getting its error.
func TestDoLentStarterLeaves(t *testing.T) {
	t.Parallel()
	g := New[string, string](0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	starter := make(chan error, 1)
	go func() {
		_, err, _ := g.DoLent(ctx, "k", func(ctx context.Context) (string, func() (string, error), error) {
			close(started)
			<-ctx.Done()
			return "", nil, ctx.Err()
		})
		starter <- err
	}()
	<-started
	second := func(context.Context) (string, error) { return "second", nil }
	joiners := []func() (string, error){
		func() (string, error) {
			v, err, _ := g.DoLent(context.Background(), "k", func(ctx context.Context) (string, func() (string, error), error) {
				v, err := second(ctx)
				return v, nil, err
			})
			return v, err
		},
		func() (string, error) { v, err, _ := g.Do(t.Context(), "k", second); return v, err },
		func() (string, error) { v, err, _ := g.DoHere(context.Background(), "k", second); return v, err },
		func() (string, error) {
			r := g.DoMany(context.Background(), []string{"k"}, func(ctx context.Context, keys []string, set func(int, string, error)) {
				set(0, "second", nil)
			})
			return r[0].Val, r[0].Err
		},
	}
	errs := make(chan error, len(joiners))
	for i, join := range joiners {
		go func() {
			v, err := join()
			if err == nil && v != "second" {
				err = errors.New("wrong value " + v)
			}
			if err != nil {
				err = fmt.Errorf("joiner %d: %w", i, err)
			}
			errs <- err
		}()
	}
	waitUntil(t, "the callers to join", func() bool { return g.waiting("k") == len(joiners)+1 })
	cancel()
	if err := <-starter; !errors.Is(err, context.Canceled) {
		t.Fatalf("starter: %v", err)
	}
	for range joiners {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestDoLentErrorAndPanic checks that fn's error reaches the joiners (its starter did not leave),
// and that a panic reaches every caller as a *PanicError.
func TestDoLentErrorAndPanic(t *testing.T) {
	t.Parallel()
	g := New[string, string](0, nil)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fail func() error
	}{
		{"error", func() error { return boom }},
		{"panic", func() error { panic(boom) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			started := make(chan struct{})
			starter := make(chan error, 1)
			go func() {
				_, err, ran := g.DoLent(context.Background(), "k", func(context.Context) (string, func() (string, error), error) {
					close(started)
					<-release
					return "", nil, tc.fail()
				})
				if !ran {
					err = errors.New("the starter did not run fn")
				}
				starter <- err
			}()
			<-started
			joined := make(chan error, 1)
			go func() { _, err, _ := g.Do(context.Background(), "k", nil); joined <- err }()
			waitUntil(t, "the joiner", func() bool { return g.waiting("k") == 2 })
			close(release)
			for _, err := range []error{<-starter, <-joined} {
				var pe *PanicError
				if !errors.Is(err, boom) || (tc.name == "panic") != errors.As(err, &pe) {
					t.Fatalf("got %v", err)
				}
			}
		})
	}
}

// TestDoLentOwnPanics checks that a panic in own reaches the callers that joined as a *PanicError
// (they are released), while the starter gets its value.
func TestDoLentOwnPanics(t *testing.T) {
	t.Parallel()
	g := New[string, string](0, nil)
	release := make(chan struct{})
	started := make(chan struct{})
	starter := make(chan string, 1)
	go func() {
		v, _, _ := g.DoLent(context.Background(), "k", func(context.Context) (string, func() (string, error), error) {
			close(started)
			<-release
			return "lent", func() (string, error) { panic("no copy") }, nil
		})
		starter <- v
	}()
	<-started
	joined := make(chan error, 1)
	go func() { _, err, _ := g.Do(context.Background(), "k", nil); joined <- err }()
	waitUntil(t, "the joiner", func() bool { return g.waiting("k") == 2 })
	close(release)
	var pe *PanicError
	if err := <-joined; !errors.As(err, &pe) || pe.Value != "no copy" {
		t.Fatalf("joiner: %v", err)
	}
	if v := <-starter; v != "lent" {
		t.Fatalf("starter: %q", v)
	}
}
