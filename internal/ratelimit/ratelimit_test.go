package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	var g Gate
	for i, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Second, false}, {time.Minute - 1, false}, {time.Minute, true}, {time.Minute + 1, false}} {
		if got := g.Pass(int64(1000+c.at), time.Minute); got != c.want {
			t.Fatalf("event %d at %v: %v, want %v", i, c.at, got, c.want)
		}
	}
}

// TestGateConcurrent: of many events at once, one passes.
func TestGateConcurrent(t *testing.T) {
	var g Gate
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if g.Pass(5, time.Minute) {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if passed.Load() != 1 {
		t.Fatalf("%d events passed", passed.Load())
	}
}
