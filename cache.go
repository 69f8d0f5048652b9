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
	"github.com/typedcache/groupcache/peer"
	"github.com/typedcache/groupcache/store"
)

// Loader loads the value of a key on a miss. It is called at most once at a time per key in a
// process, however many callers wait for that key.
//
// ctx is detached from the callers' contexts (it keeps their values, not their cancellation) and
// carries the load timeout; it is cancelled early only when every caller waiting for the key has
// gone. A loader says that a key does not exist by returning ErrNotFound (wrapped or not). Errors are
// not cached (the next Get of the key calls the loader again), except "not found" when
// WithNegativeTTL asks for it. A loader can give its value a TTL of its own with SetTTL; a loader
// that also implements BatchLoader serves GetMany in batches.
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
	batch       BatchLoader[K, V] // the loader, when it also loads in batches; else nil
	values      codec.Codec[V]
	keys        codec.Codec[K]
	sizer       func(V) int64            // nil: the encoded size is the cost
	store       *store.Store[K, item[V]] // main store: keys this node owns (all keys without a node)
	hot         *store.Store[K, item[V]] // copies of keys owned by peers; nil without a node
	promoter    Promoter                 // decides what enters hot; nil without a node
	node        *Node                    // nil: the cache works alone
	flights     *fill.Group[K, V]
	timeoutErr  error // what a load past loadTimeout returns: matches ErrLoadTimeout
	ttl         time.Duration
	jitter      float64
	negativeTTL time.Duration
	stale       time.Duration // stale-while-revalidate window
	hotTTL      time.Duration
	batchSize   int
	loadTimeout time.Duration
	maxValue    int64
	maxKey      int
	clock       Clock
	log         *slog.Logger
	buffers     sync.Pool // *[]byte scratch space for encoding keys and values
	lent        sync.Pool // *lentBuffers: memory View reads remote values into, reused once fn returns

	// Versions that let a load tell whether Remove, Set or Clear ran while it was in flight (see
	// stamp): the generation of Clear, and per stripe of keys a count of removals and sets.
	gen     atomic.Uint64
	stripes *[stripeCount]atomic.Uint64

	refreshing sync.Map       // keys with a stale-while-revalidate refresh running
	background sync.WaitGroup // refresh goroutines, waited for by Close
	bgMu       sync.Mutex     // guards bgStopped, so no refresh starts after Close waits
	bgStopped  bool

	closed    atomic.Bool
	closeOnce sync.Once

	// Counters of the slow paths, all atomic. Hits and misses are counted by the stores.
	loads      atomic.Int64
	loadErrors atomic.Int64
	dedup      atomic.Int64
	tooLarge   atomic.Int64
	fresh      freshCounters
	cluster    clusterCounters
}

// item is what the stores keep for a key: the typed value and, on a node, its wire form, so a
// value served to many peers is encoded and compressed once.
//
// The value is held inline (an item is stored by value), so a hit reads one entry and no more.
type item[V any] struct {
	v    V
	wire *wireForm // nil without a node, in the hot store, and for a cached "not found"
	meta *itemMeta // nil for a plain value: a hit checks one pointer
}

// itemMeta is what an entry that is not a plain value carries.
type itemMeta struct {
	// stale is when an entry kept for stale-while-revalidate stops being fresh (unix
	// nanoseconds); the store drops it at the end of the window. 0 for every other entry.
	stale int64
	err   error // a cached "not found" (WithNegativeTTL): the loader's error; v is zero
}

// staleMark returns the item's stale mark (see itemMeta), 0 if it has none.
func (it *item[V]) staleMark() int64 {
	if it.meta == nil {
		return 0
	}
	return it.meta.stale
}

// failure returns the error of a cached "not found", nil for a value.
func (it *item[V]) failure() error {
	if it.meta == nil {
		return nil
	}
	return it.meta.err
}

// markStale gives the item the stale mark mark (no mark when 0).
func (it *item[V]) markStale(mark int64) {
	if mark != 0 {
		it.meta = &itemMeta{stale: mark}
	}
}

// negative returns the item of a cached "not found".
func negative[V any](err error) item[V] { return item[V]{meta: &itemMeta{err: err}} }

// wireForm is a value as served to peers.
type wireForm struct {
	peer.Value
	rawLen int // length of the encoded value before compression
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
		hotFraction: DefaultHotFraction,
		hotTTL:      DefaultHotTTL,
		batchSize:   DefaultBatchSize,
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
		if keys, ok = codec.Key[K](); !ok {
			return nil, fmt.Errorf("%w %s: only string and integer kinds have one; use WithKeyCodec", ErrNoKeyCodec, kType)
		}
	}
	sizer, _, err := typed[func(V) int64](s.sizer, "value", vType)
	if err != nil {
		return nil, err
	}

	// On a node, the hot store takes its share of the bytes; the main store has the rest.
	var hotBytes int64
	if s.node != nil {
		hotBytes = int64(float64(s.maxBytes) * s.hotFraction)
		if hotBytes <= store.EntryOverhead {
			hotBytes = 0
		}
	}
	mainBytes := s.maxBytes - hotBytes
	maxValue := mainBytes - store.EntryOverhead
	if s.maxValueBytes > 0 {
		if s.maxValueBytes > maxValue {
			return nil, invalid("WithMaxValueBytes", "%d is above the main store's %d bytes less the entry overhead %d",
				s.maxValueBytes, mainBytes, store.EntryOverhead)
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
	now := func() int64 { return clock.Now().UnixNano() }
	c := &Cache[K, V]{
		name:        name,
		loader:      loader,
		values:      values,
		keys:        keys,
		sizer:       sizer,
		node:        s.node,
		timeoutErr:  fmt.Errorf("groupcache: cache %q: load exceeded %v: %w", name, s.loadTimeout, ErrLoadTimeout),
		ttl:         s.ttl,
		jitter:      s.jitter,
		negativeTTL: s.negativeTTL,
		stale:       s.stale,
		hotTTL:      s.hotTTL,
		batchSize:   s.batchSize,
		stripes:     new([stripeCount]atomic.Uint64),
		loadTimeout: s.loadTimeout,
		maxValue:    maxValue,
		maxKey:      s.maxKeyBytes,
		clock:       clock,
		log:         log.With(slog.String("cache", name)),
	}
	c.flights = fill.New[K, V](s.loadTimeout, c.timeoutErr)
	c.batch, _ = loader.(BatchLoader[K, V])
	if hotBytes > 0 {
		if c.hot, err = store.New[K, item[V]](store.Config[K]{MaxBytes: hotBytes, Shards: s.shards, Now: now}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		c.promoter = s.promoter
		if c.promoter == nil {
			c.promoter = NewFrequencyPromoter()
		}
	}
	if c.store, err = store.New[K, item[V]](store.Config[K]{MaxBytes: mainBytes, Shards: s.shards, Now: now}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	if c.node != nil {
		if err := c.node.register(name, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Name returns the name the cache was made with.
func (c *Cache[K, V]) Name() string { return c.name }

// Get returns the value of key: from memory when it is there, otherwise, once for all concurrent
// callers of the same key in this process, from the key's owner: the loader when this process owns
// the key (or works alone), the owning peer otherwise. A peer that cannot be reached is skipped for
// a back-off period and its keys are loaded locally meanwhile.
//
// A hit does not allocate and does not look at ctx. On a miss, a caller whose ctx ends stops
// waiting at once and gets ctx's error, while the load goes on for the other callers. Errors: the
// loader's own error (so errors.Is(err, ErrNotFound) works; a remote owner's not-found matches
// ErrNotFound too), ErrLoadTimeout, *PanicError, ErrInvalidKey, ErrClosed, ctx's error, a decoding
// error (*codec.Error) for a peer's value that this cache's codec cannot read; and for a value
// above the per-value limit, the value itself together with a *TooLargeError (it is not cached).
func (c *Cache[K, V]) Get(ctx context.Context, key K) (V, error) {
	if c.closed.Load() {
		var zero V
		return zero, ErrClosed
	}
	if it, ok := c.store.Get(key); ok {
		if it.meta == nil {
			return it.v, nil
		}
		return c.special(key, it)
	}
	if c.hot != nil {
		if it, ok := c.hot.Get(key); ok {
			if it.meta == nil {
				return it.v, nil
			}
			return c.special(key, it)
		}
	}
	return c.miss(ctx, key)
}

// miss is the slow path of Get.
func (c *Cache[K, V]) miss(ctx context.Context, key K) (V, error) {
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	kb, err := c.encodeKey(key)
	if err != nil {
		return zero, err
	}
	// A caller whose ctx can never end runs the flight itself (no goroutine, no hand-offs: most
	// of the cost of a remote hit); the loader then runs detached, so the load timeout still frees
	// this caller if the loader ignores its context.
	detach := ctx.Done() == nil
	v, err, shared := c.flights.DoHere(ctx, key, func(lctx context.Context) (V, error) {
		return c.fill(lctx, key, kb, detach)
	})
	if shared {
		c.dedup.Add(1)
	}
	return v, c.flightErr(err)
}

// flightErr translates an error of the single flight into this package's names: a panic the
// flight recovered becomes a *PanicError (the timeout is c.timeoutErr already).
func (c *Cache[K, V]) flightErr(err error) error {
	if pe, ok := errors.AsType[*fill.PanicError](err); ok {
		return &PanicError{Value: pe.Value, Stack: pe.Stack}
	}
	return err
}

// encodeKey returns the key's bytes, checked against the key length limit.
func (c *Cache[K, V]) encodeKey(key K) ([]byte, error) {
	b, err := c.keys.Append(nil, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if len(b) > c.maxKey {
		return nil, fmt.Errorf("%w: encoded key of %d bytes exceeds the limit of %d", ErrInvalidKey, len(b), c.maxKey)
	}
	return b, nil
}

// fill runs inside the single flight of key. It checks the stores once more (a load that finished
// just before this flight started has filled them), then asks the key's owner: the loader when it
// is this node, the owning peer otherwise. The value is stored before any waiter is released, so a
// Get right after sees a hit.
//
// detach makes the loader run in a goroutine of its own, for flights run by their caller.
func (c *Cache[K, V]) fill(ctx context.Context, key K, kb []byte, detach bool) (V, error) {
	st := c.stamp(kb) // before the lookup: a Remove after it keeps what this flight finds from being stored
	if it, ok := c.lookup(key); ok {
		return it.v, it.failure()
	}
	if c.node != nil && !c.node.closed.Load() {
		if owner, self := c.node.owner(kb); !self {
			if !c.node.healthy(owner) {
				return c.fallback(ctx, key, kb, detach, st)
			}
			v, err := c.fetch(ctx, owner, key, kb, st)
			if err == nil || !c.canFallBack(ctx, owner, err) {
				return v, err
			}
			return c.fallback(ctx, key, kb, detach, st)
		}
	}
	it, err := c.load(ctx, key, kb, false, detach, st)
	return it.v, err
}

// lookup finds a fresh entry, or a cached "not found", without counting a hit or a miss.
func (c *Cache[K, V]) lookup(key K) (item[V], bool) {
	if it, ok := c.liveItem(key); ok {
		return it, true
	}
	if c.hot != nil {
		if it, expires, ok := c.hot.Peek(key); ok && c.live(expires) {
			return it, true
		}
	}
	return item[V]{}, false
}

// live reports whether an entry with this expiry (unix nanoseconds, 0 = never) is still valid.
func (c *Cache[K, V]) live(expires int64) bool {
	return expires == 0 || expires > c.clock.Now().UnixNano()
}

// load calls the loader and stores the value in the main store. On a node the stored item keeps
// the value's wire form too, ready for peers. forPeer counts the load as one run for a peer.
func (c *Cache[K, V]) load(ctx context.Context, key K, kb []byte, forPeer, detach bool, st stamp) (item[V], error) {
	if c.node != nil {
		if it, ok := c.handoff(ctx, key, kb, st); ok {
			return it, nil
		}
	}
	return c.loadNew(ctx, key, kb, forPeer, detach, st)
}

// loadNew is load without asking a previous owner first.
func (c *Cache[K, V]) loadNew(ctx context.Context, key K, kb []byte, forPeer, detach bool, st stamp) (item[V], error) {
	c.loads.Add(1)
	if forPeer {
		c.cluster.peerLoads.Add(1)
	}
	v, ttl, err := c.callLoader(ctx, key, detach)
	if err != nil {
		return item[V]{}, c.loadFailed(ctx, c.store, key, kb, err, st)
	}
	return c.keep(c.store, key, kb, v, ttl, st)
}

// loadFailed counts a failed load, caches a "not found" when WithNegativeTTL asks for it, and
// returns the error to report.
func (c *Cache[K, V]) loadFailed(ctx context.Context, s *store.Store[K, item[V]], key K, kb []byte, err error, st stamp) error {
	c.loadErrors.Add(1)
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return c.timeoutErr
	}
	if errors.Is(err, ErrNotFound) {
		c.notFound(s, key, kb, err, c.negativeTTL, st)
	}
	return err
}

// notFound keeps err, a loader's or an owner's "not found", in s for ttl (nothing when ttl is 0).
func (c *Cache[K, V]) notFound(s *store.Store[K, item[V]], key K, kb []byte, err error, ttl time.Duration, st stamp) {
	if ttl <= 0 {
		if it, ok := c.liveOrStale(s, key); ok && it.staleMark() != 0 {
			s.Remove(key) // a refresh learnt that the key is gone: do not serve the old value
		}
		return
	}
	c.fresh.negativeEntries.Add(1)
	expires := c.deadline(ttl)
	if s == c.hot {
		expires = c.hotDeadline(expires)
	}
	c.put(s, key, negative[V](err), int64(len(kb)+len(err.Error())), expires, st)
}

// keep measures a value just loaded and stores it in s with its TTL (0: the cache's), returning
// the stored item. A value over the per-value limit is returned with a *TooLargeError.
func (c *Cache[K, V]) keep(s *store.Store[K, item[V]], key K, kb []byte, v V, ttl time.Duration, st stamp) (item[V], error) {
	it, size, err := c.measure(v, len(kb))
	if err != nil {
		c.loadErrors.Add(1)
		return it, err
	}
	if size > c.maxValue {
		c.tooLarge.Add(1)
		c.log.Warn("value too large to cache", slog.Int64("size", size), slog.Int64("limit", c.maxValue))
		return it, &TooLargeError{Cache: c.name, Size: size, Limit: c.maxValue}
	}
	expires := c.deadline(ttl)
	if it.wire != nil {
		it.wire.Expires = expires
	}
	if s == c.hot {
		if size > c.hot.MaxBytes()-store.EntryOverhead {
			return it, nil
		}
		it.wire = nil
		c.put(s, key, it, size, c.hotDeadline(expires), st)
		return it, nil
	}
	it.markStale(c.staleAt(expires))
	c.put(s, key, it, size, c.hardDeadline(expires), st)
	return it, nil
}

// put stores an item unless the cache is closed or the key was removed, set or cleared since st
// was taken, and leaves nothing behind if that happens while it stores.
func (c *Cache[K, V]) put(s *store.Store[K, item[V]], key K, it item[V], size, expires int64, st stamp) {
	if c.closed.Load() || !c.current(st) {
		return
	}
	// Set stores it: maxValue rules out a size above the store's bound.
	s.Set(key, it, size, expires)
	if c.closed.Load() || !c.current(st) {
		s.Remove(key)
	}
}

// callLoader calls the user's loader and turns a panic into a *PanicError; ttl is what the loader
// asked for with SetTTL (0: the cache's). With detach the loader runs in a goroutine of its own and
// callLoader returns when ctx ends even if the loader ignores ctx; the loader's late result is then
// dropped.
func (c *Cache[K, V]) callLoader(ctx context.Context, key K, detach bool) (v V, ttl time.Duration, err error) {
	box := new(entryTTL)
	ctx = context.WithValue(ctx, entryTTLKey{}, box)
	if !detach {
		v, err = c.loadHere(ctx, key)
		return v, box.get(), err
	}
	if d, ok := ctx.Deadline(); ok && ctx.Done() == nil {
		// A flight run by its caller has a deadline but no timer (fill.DoHere); the loader gets a
		// context that really ends at the deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	type result struct {
		v   V
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.loadHere(ctx, key)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, box.get(), r.err
	case <-ctx.Done():
		return v, 0, ctx.Err()
	}
}

func (c *Cache[K, V]) loadHere(ctx context.Context, key K) (v V, err error) {
	defer c.recoverInto(&err, "loader")
	return c.loader.Load(ctx, key)
}

// measure returns the item for v and its cost: the sizer's answer or the encoded size, plus the
// key length, plus on a node the size of the wire form kept with it.
func (c *Cache[K, V]) measure(v V, keyLen int) (it item[V], n int64, err error) {
	it = item[V]{v: v}
	defer c.recoverInto(&err, "codec")
	if c.sizer != nil && c.node == nil {
		n = c.sizer(v)
		if n < 0 {
			return it, 0, fmt.Errorf("groupcache: cache %q: sizer returned %d", c.name, n)
		}
		return it, n + int64(keyLen), nil
	}
	if c.node != nil {
		enc, err := c.values.Append(nil, v)
		if err != nil {
			return it, 0, fmt.Errorf("groupcache: cache %q: %w", c.name, err)
		}
		it.wire = &wireForm{Value: peer.Compress(enc, c.node.compress), rawLen: len(enc)}
		n = int64(len(enc))
		if c.sizer != nil {
			if n = c.sizer(v); n < 0 {
				return it, 0, fmt.Errorf("groupcache: cache %q: sizer returned %d", c.name, n)
			}
		}
		if it.wire.Compressed {
			n += int64(len(it.wire.Data)) // the decoded value and the compressed bytes
		}
		return it, n + int64(keyLen), nil
	}
	bp := c.buffer()
	defer c.buffers.Put(bp)
	b, err := c.values.Append((*bp)[:0], v)
	if cap(b) <= maxPooledBuffer {
		*bp = b[:0]
	}
	if err != nil {
		return it, 0, fmt.Errorf("groupcache: cache %q: %w", c.name, err)
	}
	return it, int64(len(b)) + int64(keyLen), nil
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

// Close empties the cache, detaches it from its node and makes every later call return ErrClosed.
// Loads in flight finish for the callers already waiting for them, but their values are not
// stored. Close waits for background refreshes (WithStaleWhileRevalidate), each bounded by the
// load timeout. Close is idempotent: the first call returns nil, later ones ErrClosed.
func (c *Cache[K, V]) Close() error {
	err := ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.node != nil {
			c.node.unregister(c.name, c)
		}
		c.store.Clear()
		if c.hot != nil {
			c.hot.Clear()
		}
		c.bgMu.Lock()
		c.bgStopped = true
		c.bgMu.Unlock()
		c.background.Wait()
		err = nil
	})
	return err
}
