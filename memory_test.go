package groupcache

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/typedcache/groupcache/internal/memlimit"
)

// withMemLimit makes New read limit from src instead of the process's.
func withMemLimit(limit int64, src memlimit.Source) Option {
	return optionFunc(func(s *settings) error {
		s.memLimit = func() (int64, memlimit.Source) { return limit, src }
		return nil
	})
}

func TestWithMemoryFraction(t *testing.T) {
	t.Parallel()
	l := LoaderFunc[string, string](func(context.Context, string) (string, error) { return "", nil })
	c, err := New("sized", l, WithMemoryFraction(0.25), withMemLimit(1<<30, memlimit.CgroupV2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Stats().MaxBytes; got != 1<<28 {
		t.Fatalf("MaxBytes = %d, want a quarter of 1 GiB (%d)", got, 1<<28)
	}
	bad := []struct {
		name string
		opts []Option
	}{
		{"zero", []Option{WithMemoryFraction(0)}},
		{"negative", []Option{WithMemoryFraction(-0.5)}},
		{"one", []Option{WithMemoryFraction(1)}},
		{"NaN", []Option{WithMemoryFraction(zero / zero)}},
		{"with WithMaxBytes", []Option{WithMaxBytes(1 << 20), WithMemoryFraction(0.1), withMemLimit(1<<30, memlimit.GoLimit)}},
		{"no limit", []Option{WithMemoryFraction(0.1), withMemLimit(0, memlimit.None)}},
		{"limit too small for an entry", []Option{WithMemoryFraction(0.1), withMemLimit(100, memlimit.CgroupV1)}},
	}
	for _, tt := range bad {
		if _, err := New("bad", l, tt.opts...); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: New = %v, want ErrInvalidOption", tt.name, err)
		}
	}
}

var zero float64

// TestWithMemoryFractionReadsGOMEMLIMIT sizes a cache from the Go runtime's soft limit, the
// first source New reads. Not parallel: the limit is the process's.
func TestWithMemoryFractionReadsGOMEMLIMIT(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(8 << 30)
	c := MustNew("gomemlimit", LoaderFunc[int, int](func(context.Context, int) (int, error) { return 0, nil }),
		WithMemoryFraction(0.5))
	defer c.Close()
	if got := c.Stats().MaxBytes; got != 4<<30 {
		t.Fatalf("MaxBytes = %d, want half of GOMEMLIMIT (%d)", got, int64(4<<30))
	}
}

// TestBytesChargedMatchHeap checks that the bytes a cache charges for its entries stay close to
// the heap they take, so that a cache sized as a fraction of the memory limit takes about that
// fraction: for the smallest entries (uint64 keys and values, where the per-entry overhead is
// most of the cost), and for 100-byte string values.
func TestBytesChargedMatchHeap(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("heap figures need a full, uninstrumented run")
	}
	const n = 100_000
	t.Run("uint64", func(t *testing.T) {
		c := MustNew("heap", LoaderFunc[uint64, uint64](func(_ context.Context, k uint64) (uint64, error) { return k * 7919, nil }),
			WithMaxBytes(1<<40))
		defer c.Close()
		checkHeap(t, c, n, func(i int) uint64 { return uint64(i) << 20 })
	})
	t.Run("string value", func(t *testing.T) {
		// The loader makes each value, as one reading a database would.
		c := MustNew("heap", LoaderFunc[int, string](func(_ context.Context, k int) (string, error) {
			return strings.Repeat("v", 96) + strconv.Itoa(1000+k%9000), nil
		}),
			WithMaxBytes(1<<40))
		defer c.Close()
		checkHeap(t, c, n, func(i int) int { return i })
	})
}

func checkHeap[K comparable, V any](t *testing.T, c *Cache[K, V], n int, key func(int) K) {
	t.Helper()
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if _, err := c.Get(ctx, key(i)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	charged := float64(c.Stats().Bytes) / float64(n)
	t.Logf("per entry: %.1f bytes charged, %.1f bytes of heap", charged, used)
	if charged < used*0.85 || charged > used*1.15 {
		t.Errorf("charged %.1f bytes per entry for %.1f bytes of heap: more than 15%% apart", charged, used)
	}
}
