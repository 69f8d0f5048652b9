package groupcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/fill"
	"github.com/typedcache/groupcache/store"
)

// Loader loads the value of a key on a miss. It is called at most once at a time per key in a
// process, however many callers wait for that key.
//
// ctx is detached from the callers' contexts (it keeps their values, not their cancellation) and
// carries the load timeout; it is cancelled early only when every caller waiting for the key has
// gone. A loader says that a key does not exist by returning ErrNotFound (wrapped or not). Errors are
// not cached: the next Get of the key calls the loader again.
type Loader[K comparable, V any] interface {
	Load(ctx context.Context, key K) (V, error)
}

// LoaderFunc adapts a function to the Loader interface.
type LoaderFunc[K comparable, V any] func(ctx context.Context, key K) (V, error)

// Load calls f(ctx, key).
func (f LoaderFunc[K, V]) Load(ctx context.Context, key K) (V, error) { return f(ctx, key) }

// Cache is a loading cache of values of type V by keys of type K. It is safe for concurrent use.
//
// Values returned by Get are shared with every other caller of the same key and with the cache
// itself: treat them as read-only, and copy before changing them.
type Cache[K comparable, V any] struct {
	name        string
	loader      Loader[K, V]
	values      codec.Codec[V]
	keys        codec.Codec[K]
	sizer       func(V) int64 // nil: the encoded size is the cost
	store       *store.Store[K, V]
	flights     *fill.Group[K, V]
	ttl         time.Duration
	loadTimeout time.Duration
	maxValue    int64
	maxKey      int
	clock       Clock
	log         *slog.Logger
	buffers     sync.Pool // *[]byte scratch space for encoding keys and values

	closed    atomic.Bool
	closeOnce sync.Once

	// Counters of the slow paths, all atomic. Hits and misses are counted by the store.
	loads      atomic.Int64
	loadErrors atomic.Int64
	dedup      atomic.Int64
	tooLarge   atomic.Int64
}

// New makes a cache named name whose misses are filled by loader. It returns an error wrapping
// ErrInvalidOption for an invalid option and ErrNoKeyCodec when K has no built-in key codec and no
// WithKeyCodec option was given. A cache holds no goroutine while idle; Close releases its memory.
func New[K comparable, V any](name string, loader Loader[K, V], opts ...Option) (*Cache[K, V], error) {
	if name == "" {
		return nil, invalid("New", "empty cache name")
	}
	if loader == nil {
		return nil, invalid("New", "nil loader")
	}
	if v := reflect.ValueOf(loader); v.Kind() == reflect.Func && v.IsNil() {
		return nil, invalid("New", "nil loader function")
	}
	s := settings{
		maxBytes:    DefaultMaxBytes,
		maxKeyBytes: DefaultMaxKeyBytes,
		loadTimeout: DefaultLoadTimeout,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&s); err != nil {
			return nil, err
		}
	}
	return build(name, loader, &s)
}

// MustNew is like New but panics on error. It is meant for tests and examples.
func MustNew[K comparable, V any](name string, loader Loader[K, V], opts ...Option) *Cache[K, V] {
	c, err := New(name, loader, opts...)
	if err != nil {
		panic(err)
	}
	return c
}

// build checks the settings against each other and against K and V, and makes the cache.
func build[K comparable, V any](name string, loader Loader[K, V], s *settings) (*Cache[K, V], error) {
	kType, vType := reflect.TypeFor[K](), reflect.TypeFor[V]()
	values, ok, err := typed[codec.Codec[V]](s.valueCodec, "value", vType)
	if err != nil {
		return nil, err
	}
	if !ok {
		values = codec.CBOR[V]()
	}
	keys, ok, err := typed[codec.Codec[K]](s.keyCodec, "key", kType)
	if err != nil {
		return nil, err
	}
	if !ok {
		if keys, err = codec.Key[K](); err != nil {
			return nil, fmt.Errorf("%w %s: use WithKeyCodec (%v)", ErrNoKeyCodec, kType, err)
		}
	}
	sizer, _, err := typed[func(V) int64](s.sizer, "value", vType)
	if err != nil {
		return nil, err
	}

	maxValue := s.maxBytes - store.EntryOverhead
	if s.maxValueBytes > 0 {
		if s.maxValueBytes > maxValue {
			return nil, invalid("WithMaxValueBytes", "%d is above the max bytes %d less the entry overhead %d",
				s.maxValueBytes, s.maxBytes, store.EntryOverhead)
		}
		maxValue = s.maxValueBytes
	}
	if maxValue <= 0 {
		return nil, invalid("WithMaxBytes", "%d leaves no room for an entry (entry overhead %d)", s.maxBytes, store.EntryOverhead)
	}

	clock := s.clock
	if clock == nil {
		clock = systemClock{}
	}
	log := s.logger
	if log == nil {
		log = slog.Default()
	}
	st, err := store.New[K, V](store.Config[K]{
		MaxBytes: s.maxBytes,
		Shards:   s.shards,
		Now:      func() int64 { return clock.Now().UnixNano() },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return &Cache[K, V]{
		name:        name,
		loader:      loader,
		values:      values,
		keys:        keys,
		sizer:       sizer,
		store:       st,
		flights:     fill.New[K, V](s.loadTimeout),
		ttl:         s.ttl,
		loadTimeout: s.loadTimeout,
		maxValue:    maxValue,
		maxKey:      s.maxKeyBytes,
		clock:       clock,
		log:         log.With(slog.String("cache", name)),
	}, nil
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Name returns the name the cache was made with.
func (c *Cache[K, V]) Name() string { return c.name }

// Get returns the value of key: from memory when it is there, otherwise from the loader, once for
// all concurrent callers of the same key.
//
// A hit does not allocate and does not look at ctx. On a miss, a caller whose ctx ends stops
// waiting at once and gets ctx's error, while the load goes on for the other callers. Errors: the
// loader's own error (so errors.Is(err, ErrNotFound) works), ErrLoadTimeout, *PanicError,
// ErrInvalidKey, ErrClosed, ctx's error; and for a value above the per-value limit, the value
// itself together with a *TooLargeError (it is not cached).
func (c *Cache[K, V]) Get(ctx context.Context, key K) (V, error) {
	if c.closed.Load() {
		var zero V
		return zero, ErrClosed
	}
	if v, ok := c.store.Get(key); ok {
		return v, nil
	}
	return c.miss(ctx, key)
}

// miss is the slow path of Get.
func (c *Cache[K, V]) miss(ctx context.Context, key K) (V, error) {
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	keyLen, err := c.keyLen(key)
	if err != nil {
		return zero, err
	}
	v, err, shared := c.flights.Do(ctx, key, func(lctx context.Context) (V, error) {
		return c.load(lctx, key, keyLen)
	})
	if shared {
		c.dedup.Add(1)
	}
	if err != nil && errors.Is(err, fill.ErrTimeout) {
		return zero, fmt.Errorf("groupcache: cache %q: load exceeded %v: %w", c.name, c.loadTimeout, ErrLoadTimeout)
	}
	return v, err
}

// keyLen encodes key to check it and returns the length of its encoding.
func (c *Cache[K, V]) keyLen(key K) (int, error) {
	bp := c.buffer()
	defer c.buffers.Put(bp)
	b, err := c.keys.Append((*bp)[:0], key)
	*bp = b[:0]
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if len(b) > c.maxKey {
		return 0, fmt.Errorf("%w: encoded key of %d bytes exceeds the limit of %d", ErrInvalidKey, len(b), c.maxKey)
	}
	return len(b), nil
}

// load runs inside the single flight of key: it checks the store once more (a load that finished
// just before this flight started has filled it), calls the loader and stores the value before
// any waiter is released, so a Get right after sees a hit.
func (c *Cache[K, V]) load(ctx context.Context, key K, keyLen int) (V, error) {
	var zero V
	if v, expires, ok := c.store.Peek(key); ok && (expires == 0 || expires > c.clock.Now().UnixNano()) {
		return v, nil
	}
	c.loads.Add(1)
	v, err := c.callLoader(ctx, key)
	if err != nil {
		c.loadErrors.Add(1)
		if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return zero, fmt.Errorf("groupcache: cache %q: load exceeded %v: %w", c.name, c.loadTimeout, ErrLoadTimeout)
		}
		return zero, err
	}
	size, err := c.cost(v)
	if err != nil {
		c.loadErrors.Add(1)
		return zero, err
	}
	size += int64(keyLen)
	if size > c.maxValue {
		c.tooLarge.Add(1)
		c.log.Warn("value too large to cache", slog.Int64("size", size), slog.Int64("limit", c.maxValue))
		return v, &TooLargeError{Cache: c.name, Size: size, Limit: c.maxValue}
	}
	if c.closed.Load() {
		return v, nil
	}
	var expires int64
	if c.ttl > 0 {
		expires = c.clock.Now().Add(c.ttl).UnixNano()
	}
	if err := c.store.Set(key, v, size, expires); err != nil {
		// Unreachable while maxValue <= maxBytes - overhead; report rather than hide it.
		return v, fmt.Errorf("groupcache: cache %q: %w", c.name, err)
	}
	if c.closed.Load() { // Close ran between the check above and Set: leave nothing behind.
		c.store.Remove(key)
	}
	return v, nil
}

// callLoader calls the user's loader and turns a panic into a *PanicError.
func (c *Cache[K, V]) callLoader(ctx context.Context, key K) (v V, err error) {
	defer c.recoverInto(&err, "loader")
	return c.loader.Load(ctx, key)
}

// cost measures a value: the sizer's answer, or its encoded size.
func (c *Cache[K, V]) cost(v V) (n int64, err error) {
	defer c.recoverInto(&err, "codec")
	if c.sizer != nil {
		n = c.sizer(v)
		if n < 0 {
			return 0, fmt.Errorf("groupcache: cache %q: sizer returned %d", c.name, n)
		}
		return n, nil
	}
	bp := c.buffer()
	defer c.buffers.Put(bp)
	b, err := c.values.Append((*bp)[:0], v)
	if cap(b) <= maxPooledBuffer {
		*bp = b[:0]
	}
	if err != nil {
		return 0, fmt.Errorf("groupcache: cache %q: %w", c.name, err)
	}
	return int64(len(b)), nil
}

// maxPooledBuffer bounds the scratch buffers kept for reuse, so one huge value does not pin its
// encoding buffer in the pool.
const maxPooledBuffer = 64 << 10

func (c *Cache[K, V]) buffer() *[]byte {
	if bp, ok := c.buffers.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 512)
	return &b
}

// recoverInto turns a panic in user code into a *PanicError stored in *err, and logs it.
func (c *Cache[K, V]) recoverInto(err *error, what string) {
	if r := recover(); r != nil {
		pe := &PanicError{Value: r, Stack: debug.Stack()}
		c.log.Error("panic in "+what, slog.Any("panic", r), slog.String("stack", string(pe.Stack)))
		*err = pe
	}
}

// Close empties the cache and makes every later call return ErrClosed. Loads in flight finish for
// the callers already waiting for them, but their values are not stored. Close is idempotent: the
// first call returns nil, later ones ErrClosed.
func (c *Cache[K, V]) Close() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.store.Clear()
		err = nil
	})
	return err
}
