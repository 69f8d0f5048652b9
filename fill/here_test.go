package fill

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// goid returns the id of the calling goroutine, read from its stack header.
func goid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	return string(bytes.Fields(b)[1])
}

func TestDoHereRunsInCallerOnlyWhenCtxCannotEnd(t *testing.T) {
	t.Parallel()
	g := New[string, string](time.Second, nil)
	tests := []struct {
		name   string
		ctx    context.Context
		inline bool
	}{
		{"background", context.Background(), true},
		{"without cancel", context.WithoutCancel(t.Context()), true},
		{"cancellable", t.Context(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caller := goid()
			var ran string
			v, err, shared := g.DoHere(tt.ctx, "k", func(context.Context) (string, error) {
				ran = goid()
				return "v", nil
			})
			if v != "v" || err != nil || shared {
				t.Fatalf("DoHere = %q, %v, %v", v, err, shared)
			}
			if (ran == caller) != tt.inline {
				t.Fatalf("fn ran in the caller's goroutine: %v, want %v", ran == caller, tt.inline)
			}
		})
	}
}

func TestDoHereWaitersJoin(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	const waiters = 100
	var calls atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		v, err, shared := g.DoHere(context.Background(), "k", func(context.Context) (int, error) {
			calls.Add(1)
			close(started)
			<-release
			return 7, nil
		})
		if err == nil && (v != 7 || shared) {
			err = errors.New("starter got a wrong result")
		}
		done <- err
	}()
	<-started
	var wg sync.WaitGroup
	var sharedCount atomic.Int64
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err, shared := g.DoHere(context.Background(), "k", func(context.Context) (int, error) {
				calls.Add(1)
				return 0, nil
			})
			if v != 7 || err != nil {
				t.Errorf("waiter got %d, %v", v, err)
			}
			if shared {
				sharedCount.Add(1)
			}
		}()
	}
	for g.waiting("k") < waiters+1 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || sharedCount.Load() != waiters {
		t.Fatalf("calls = %d, shared = %d", calls.Load(), sharedCount.Load())
	}
}

func TestDoHereTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := New[string, int](20*time.Millisecond, nil)
		_, err, _ := g.DoHere(context.Background(), "k", func(ctx context.Context) (int, error) {
			d, ok := ctx.Deadline()
			if !ok || ctx.Done() != nil || ctx.Err() != nil {
				return 0, errors.New("want a deadline, no Done channel, no error yet")
			}
			// Honour the deadline, as DoHere requires (a network call would set it on its connection).
			lctx, cancel := context.WithDeadline(context.Background(), d)
			defer cancel()
			<-lctx.Done()
			if ctx.Err() != context.DeadlineExceeded {
				return 0, errors.New("ctx.Err() is not DeadlineExceeded after the deadline")
			}
			return 0, lctx.Err()
		})
		if !errors.Is(err, timeoutError{}) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if g.InFlight() != 0 {
			t.Fatal("flight left behind")
		}
	})
}

func TestDoHerePanic(t *testing.T) {
	t.Parallel()
	g := New[string, int](0, nil)
	_, err, _ := g.DoHere(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("err = %v", err)
	}
	if v, err, _ := g.DoHere(context.Background(), "k", func(context.Context) (int, error) { return 1, nil }); v != 1 || err != nil {
		t.Fatalf("after a panic: %d, %v", v, err)
	}
}
