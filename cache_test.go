package groupcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type userID int64

type profile struct {
	Name string
	Age  int
}

// countingLoader returns "v<key>" and counts its calls.
type countingLoader struct{ calls atomic.Int64 }

func (l *countingLoader) Load(_ context.Context, k string) (string, error) {
	l.calls.Add(1)
	return "v" + k, nil
}

func TestGetLoadsOnceThenHits(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	c := MustNew[string, string]("t", l)
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		v, err := c.Get(ctx, "a")
		if err != nil || v != "va" {
			t.Fatalf("Get = %q, %v; want va, nil", v, err)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
	st := c.Stats()
	if st.Gets != 3 || st.Hits != 2 || st.Misses != 1 || st.Loads != 1 || st.Items != 1 || st.Bytes <= 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTypedKeysAndValues(t *testing.T) {
	t.Parallel()
	c := MustNew[userID, profile]("users", LoaderFunc[userID, profile](func(_ context.Context, id userID) (profile, error) {
		return profile{Name: fmt.Sprint("user", int64(id)), Age: int(id)}, nil
	}))
	defer c.Close()
	p, err := c.Get(context.Background(), 42)
	if err != nil || p != (profile{"user42", 42}) {
		t.Fatalf("Get = %+v, %v", p, err)
	}
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	t.Parallel()
	const callers = 1000
	release := make(chan struct{})
	var calls atomic.Int64
	c := MustNew[string, int]("t", LoaderFunc[string, int](func(ctx context.Context, k string) (int, error) {
		calls.Add(1)
		<-release
		return 7, nil
	}))
	defer c.Close()

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(context.Background(), "k")
			if err == nil && v != 7 {
				err = fmt.Errorf("got %d", v)
			}
			errs <- err
		}()
	}
	// Every caller has missed before the load is released (misses are counted before the flight).
	for c.Stats().Misses < callers {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
	st := c.Stats()
	if st.Loads != 1 || st.Deduplicated == 0 {
		t.Fatalf("stats = %+v: want 1 load and deduplicated waiters", st)
	}
	if v, err := c.Get(context.Background(), "k"); err != nil || v != 7 {
		t.Fatalf("Get after fill = %d, %v", v, err)
	}
	if calls.Load() != 1 {
		t.Fatal("Get after fill loaded again")
	}
}

func TestLoaderErrors(t *testing.T) {
	t.Parallel()
	errDB := errors.New("db down")
	var calls atomic.Int64
	c := MustNew[int, string]("t", LoaderFunc[int, string](func(_ context.Context, k int) (string, error) {
		calls.Add(1)
		switch k {
		case 1:
			return "", fmt.Errorf("user %d: %w", k, ErrNotFound)
		case 2:
			return "", errDB
		case 3:
			panic("boom")
		case 4:
			panic(errDB)
		}
		return "ok", nil
	}), WithLogger(discardLogger()))
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Get(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("not found: err = %v", err)
	}
	if _, err := c.Get(ctx, 2); !errors.Is(err, errDB) {
		t.Fatalf("loader error: err = %v", err)
	}
	_, err := c.Get(ctx, 3)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "cache_test.go") {
		t.Fatalf("panic: err = %v", err)
	}
	if _, err := c.Get(ctx, 4); !errors.As(err, &pe) || !errors.Is(err, errDB) {
		t.Fatalf("panic with error value: err = %v", err)
	}
	// Errors are not cached: each Get calls the loader again.
	before := calls.Load()
	for _, k := range []int{1, 2, 3} {
		c.Get(ctx, k)
	}
	if got := calls.Load() - before; got != 3 {
		t.Fatalf("loader calls after errors = %d, want 3", got)
	}
	if st := c.Stats(); st.LoadErrors != 7 || st.Items != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	c := MustNew[string, string]("t", LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
		close(started)
		select {
		case <-release:
			return "v", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}))
	defer c.Close()

	patient := make(chan error, 1)
	go func() {
		v, err := c.Get(context.Background(), "k")
		if err == nil && v != "v" {
			err = fmt.Errorf("got %q", v)
		}
		patient <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() { _, err := c.Get(ctx, "k"); impatient <- err }()
	for c.Stats().Misses < 2 {
		runtime.Gosched()
	}
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Fatalf("patient caller: %v", err)
	}
}

func TestCancelledContextBeforeMiss(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	c := MustNew[string, string]("t", l)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if l.calls.Load() != 0 {
		t.Fatal("loader called for a cancelled context")
	}
}

// TestLoadTimeout checks that the load timeout frees the callers of a loader that ignores its
// context, for a caller whose ctx can end (the flight runs detached) and one whose ctx cannot
// (the flight runs in the caller's goroutine), in a synctest bubble: time passes only when every
// goroutine waits.
func TestLoadTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		c := MustNew[string, string]("t", LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
			<-release // ignores ctx: the timeout must still free the callers
			return "late", nil
		}), WithLoadTimeout(20*time.Second))
		defer c.Close()
		start := time.Now()
		_, err := c.Get(context.Background(), "k")
		if !errors.Is(err, ErrLoadTimeout) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 20*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start = time.Now()
		if _, err := c.Get(ctx, "k2"); !errors.Is(err, ErrLoadTimeout) || time.Since(start) != 20*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
	})
}

func TestLoadTimeoutHonouredByLoader(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := MustNew[string, string]("t", LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		}), WithLoadTimeout(10*time.Second))
		defer c.Close()
		start := time.Now()
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrLoadTimeout) || time.Since(start) != 10*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
	})
}

func TestTTLWithFakeClock(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	l := &countingLoader{}
	c := MustNew[string, string]("t", l, WithTTL(time.Minute), WithClock(clk.Now))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, "a")
	clk.Advance(59 * time.Second)
	c.Get(ctx, "a")
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("loads before expiry = %d, want 1", n)
	}
	clk.Advance(2 * time.Second)
	if v, err := c.Get(ctx, "a"); err != nil || v != "va" {
		t.Fatalf("Get after expiry = %q, %v", v, err)
	}
	if n := l.calls.Load(); n != 2 {
		t.Fatalf("loads after expiry = %d, want 2", n)
	}
	if st := c.Stats(); st.Expirations != 1 {
		t.Fatalf("stats = %+v, want 1 expiration", st)
	}
}

// TestTooLargeValueIsReturnedNotCached checks that a loaded value over the per-value limit is a
// success for Get, View and GetMany: returned with a nil error, not cached, counted, and logged
// at most once a minute (by the cache's clock).
func TestTooLargeValueIsReturnedNotCached(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	big := strings.Repeat("x", 2000)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	logs := &countingHandler{}
	c := MustNew[string, string]("t", LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		calls.Add(1)
		return big, nil
	}), WithMaxValueBytes(1000), WithLogger(slog.New(logs)), WithClock(clk.Now))
	defer c.Close()
	ctx := context.Background()
	for range 2 {
		if v, err := c.Get(ctx, "k"); err != nil || v != big {
			t.Fatalf("Get = %d bytes, %v; want the value and no error", len(v), err)
		}
	}
	if err := c.View(ctx, "k", func(v string) error {
		if v != big {
			t.Error("View lent another value")
		}
		return nil
	}); err != nil {
		t.Fatalf("View = %v", err)
	}
	for _, r := range c.GetMany(ctx, []string{"k", "k2"}) {
		if r.Err != nil || r.Value != big {
			t.Fatalf("GetMany = %d bytes, %v", len(r.Value), r.Err)
		}
	}
	if calls.Load() != 5 || c.Stats().Items != 0 || c.Stats().TooLarge != 5 {
		t.Fatalf("calls = %d, stats = %+v: a too-large value must not be cached", calls.Load(), c.Stats())
	}
	if n := logs.warnings.Load(); n != 1 {
		t.Fatalf("%d warnings within a minute, want 1", n)
	}
	clk.Advance(59 * time.Second)
	c.Get(ctx, "k")
	if n := logs.warnings.Load(); n != 1 {
		t.Fatalf("%d warnings within a minute, want 1", n)
	}
	clk.Advance(time.Second)
	c.Get(ctx, "k")
	if n := logs.warnings.Load(); n != 2 {
		t.Fatalf("%d warnings after a minute, want 2", n)
	}
	if err := c.Set(ctx, "k", big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Set of a value over the limit = %v, want ErrTooLarge", err)
	}
}

// countingHandler is a slog.Handler that counts warnings.
type countingHandler struct{ warnings atomic.Int64 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warnings.Add(1)
	}
	return nil
}

func TestInvalidKey(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	c := MustNew[string, string]("t", l, WithMaxKeyBytes(8))
	defer c.Close()
	if _, err := c.Get(context.Background(), "123456789"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("err = %v", err)
	}
	if l.calls.Load() != 0 {
		t.Fatal("loader called for an invalid key")
	}
	if _, err := c.Get(context.Background(), "12345678"); err != nil {
		t.Fatalf("key at the limit: %v", err)
	}
}

type pointKey struct{ X, Y int }

func TestKeyCodecs(t *testing.T) {
	t.Parallel()
	load := LoaderFunc[pointKey, int](func(_ context.Context, p pointKey) (int, error) { return p.X + p.Y, nil })
	if _, err := New[pointKey, int]("t", load); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "WithKeyCodec") {
		t.Fatalf("struct key without key codec: err = %v", err)
	}
	c, err := New[pointKey, int]("t", load, WithKeyCodec(codec.CBOR[pointKey]()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Get(context.Background(), pointKey{2, 3}); err != nil || v != 5 {
		t.Fatalf("Get = %d, %v", v, err)
	}
}

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	l := &countingLoader{}
	var nilFunc LoaderFunc[string, string]
	tests := []struct {
		name   string
		loader Loader[string, string]
		opts   []Option
	}{
		{"nil loader", nil, nil},
		{"nil loader func", nilFunc, nil},
		{"zero max bytes", l, []Option{WithMaxBytes(0)}},
		{"negative max bytes", l, []Option{WithMaxBytes(-1)}},
		{"max bytes below overhead", l, []Option{WithMaxBytes(1)}},
		{"max value above max bytes", l, []Option{WithMaxBytes(1 << 20), WithMaxValueBytes(2 << 20)}},
		{"zero max value", l, []Option{WithMaxValueBytes(0)}},
		{"hot fraction without a node", l, []Option{WithHotFraction(0.25)}},
		{"hot TTL without a node", l, []Option{WithHotTTL(time.Minute)}},
		{"promoter without a node", l, []Option{WithPromoter(func(uint64, int) bool { return true })}},
		{"nil promoter", l, []Option{WithPromoter(nil)}},
		{"zero load timeout", l, []Option{WithLoadTimeout(0)}},
		{"negative ttl", l, []Option{WithTTL(-time.Second)}},
		{"zero key bytes", l, []Option{WithMaxKeyBytes(0)}},
		{"value codec of another type", l, []Option{WithCodec(codec.CBOR[int]())}},
		{"key codec of another type", l, []Option{WithKeyCodec(codec.CBOR[int]())}},
		{"sizer of another type", l, []Option{WithSizer(func(int) int64 { return 1 })}},
		{"nil codec", l, []Option{WithCodec[string](nil)}},
		{"nil sizer", l, []Option{WithSizer[string](nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New("t", tt.loader, tt.opts...)
			if !errors.Is(err, ErrInvalidOption) || c != nil {
				t.Fatalf("New = %v, %v; want an error matching ErrInvalidOption", c, err)
			}
		})
	}
	if _, err := New[string, string]("", l); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("empty name: err = %v", err)
	}
}

func TestCloseThenGet(t *testing.T) {
	t.Parallel()
	c := MustNew[string, string]("t", &countingLoader{})
	c.Get(context.Background(), "a")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: err = %v", err)
	}
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: err = %v", err)
	}
	if st := c.Stats(); st.Items != 0 || st.Bytes != 0 {
		t.Fatalf("Close left entries: %+v", st)
	}
}

// countingCodec is a custom codec that counts its calls.
type countingCodec struct{ appends, decodes atomic.Int64 }

func (c *countingCodec) Append(dst []byte, v profile) ([]byte, error) {
	c.appends.Add(1)
	return fmt.Appendf(dst, "%s|%d", v.Name, v.Age), nil
}

func (c *countingCodec) Decode(data []byte) (profile, error) {
	c.decodes.Add(1)
	var p profile
	name, age, ok := strings.Cut(string(data), "|")
	if !ok {
		return p, errors.New("bad profile")
	}
	p.Name = name
	_, err := fmt.Sscan(age, &p.Age)
	return p, err
}

func TestCustomCodecAndSizer(t *testing.T) {
	t.Parallel()
	load := LoaderFunc[userID, profile](func(_ context.Context, id userID) (profile, error) {
		return profile{Name: "n", Age: int(id)}, nil
	})
	cc := &countingCodec{}
	c := MustNew[userID, profile]("t", load, WithCodec[profile](cc))
	c.Get(context.Background(), 1)
	c.Get(context.Background(), 1)
	c.Close()
	if cc.appends.Load() != 1 {
		t.Fatalf("codec appends = %d, want 1 (one load measured)", cc.appends.Load())
	}

	cc = &countingCodec{}
	var sized atomic.Int64
	c = MustNew[userID, profile]("t", load, WithCodec[profile](cc), WithSizer(func(p profile) int64 {
		sized.Add(1)
		return 100
	}))
	defer c.Close()
	c.Get(context.Background(), 1)
	if cc.appends.Load() != 0 || sized.Load() != 1 {
		t.Fatalf("with a sizer: codec appends = %d, sizer calls = %d", cc.appends.Load(), sized.Load())
	}
}

func TestByteBoundAndEviction(t *testing.T) {
	t.Parallel()
	const maxBytes = 64 << 10
	c := MustNew[int, string]("t", LoaderFunc[int, string](func(_ context.Context, k int) (string, error) {
		return strings.Repeat("v", 100+k%900), nil
	}), WithMaxBytes(maxBytes))
	defer c.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if _, err := c.Get(context.Background(), g*10000+i); err != nil {
					t.Error(err)
					return
				}
				if b := c.Stats().Bytes; b > maxBytes {
					t.Errorf("bytes %d above the bound %d", b, maxBytes)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	st := c.Stats()
	if st.Evictions == 0 || st.Bytes > maxBytes || st.Items == 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestGetHitAllocatesNothing(t *testing.T) {
	c := MustNew[userID, profile]("t", LoaderFunc[userID, profile](func(_ context.Context, id userID) (profile, error) {
		return profile{Name: "n", Age: int(id)}, nil
	}))
	defer c.Close()
	ctx := context.Background()
	c.Get(ctx, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(ctx, 1); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Get hit allocates %v times", allocs)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
