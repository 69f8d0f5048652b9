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
	"github.com/typedcache/groupcache/internal/ratelimit"
	"github.com/typedcache/groupcache/internal/recent"
	"github.com/typedcache/groupcache/observe"
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
	sizer       func(V) int64                       // nil: the encoded size is the cost
	store       *store.Store[K, item[V]]            // main store: keys this node owns (all keys without a node)
	hot         *store.Store[K, item[V]]            // copies of keys owned by peers; nil without a node
	promoter    func(keyHash uint64, size int) bool // decides what enters hot; nil without a node
	node        *Node                               // nil: the cache works alone
	flights     *fill.Group[K, V]
	timeoutErr  error // what a load past loadTimeout returns: matches ErrLoadTimeout
	ttl         time.Duration
	jitter      float64
	negativeTTL time.Duration
	stale       time.Duration // stale-while-revalidate window
	hotTTL      time.Duration
	batchSize   int
	maxLoads    int
	loadSlots   chan struct{} // a token per loader call in progress (WithMaxLoads)
	loadTimeout time.Duration
	maxValue    int64
	maxKey      int
	now         func() time.Time // the cache's clock (WithClock)
	log         *slog.Logger
	buffers     sync.Pool // *[]byte scratch space for encoding keys and values
	lent        sync.Pool // *lentBuffers: memory View reads remote values into, reused once fn returns

	// Versions that let a load tell whether Remove, Set or Clear ran while it was in flight (see
	// stamp): the generation of Clear, and per stripe of keys a count of removals and sets.
	gen     atomic.Uint64
	stripes *[stripeCount]atomic.Uint64
	// On a node, when each stripe was last written here and when the cache was last cleared, in
	// the node's count of writes (Node.writes): a key written since the last peer-set change is
	// not taken over from its previous owner, which may not have been told of the write yet.
	lastWrite *[stripeCount]atomic.Uint64
	lastClear atomic.Uint64
	// recent is the keys written here within the hand-off window, whose values handed over by
	// peers are declined; nil without a node or hand-off.
	recent *recentWrites

	refreshing sync.Map       // keys with a stale-while-revalidate refresh running
	background sync.WaitGroup // refresh goroutines, waited for by Close
	bgMu       sync.Mutex     // guards bgStopped, so no refresh starts after Close waits
	bgStopped  bool

	closed    atomic.Bool
	closeOnce sync.Once

	// tooLargeLog lets a value too large to cache be logged once a minute, by the cache's clock.
	tooLargeLog ratelimit.Gate

	// Counters of the slow paths, all atomic. Hits and misses are counted by the stores.
	loads      atomic.Int64
	loadErrors atomic.Int64
	loadWaits  atomic.Int64
	dedup      atomic.Int64
	tooLarge   atomic.Int64
	fresh      freshCounters
	cluster    clusterCounters

	epoch    time.Time                // when the cache was made: the origin of mono
	tracer   observe.Tracer           // nil: none (WithTracer)
	onRemove func(K, V, store.Reason) // nil: none (WithRemovalListener)
	obs      cacheObs                 // latencies, evictions, failures
	hotKeys  recent.Keys[K]           // keys fetched from peers
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

// wireForm is a value as served to peers. Its Value has no TTL: peers are sent the lifetime left
// until expires (see onWire).
type wireForm struct {
	peer.Value
	rawLen  int   // length of the encoded value before compression
	expires int64 // the value's expiry by this node's clock, unix nanoseconds; 0: never
}

// New makes a cache named name whose misses are filled by loader. It returns an error wrapping
// ErrInvalidOption for an invalid or misplaced option (a node-only option without WithNode, a
// codec for another type) and when K has no built-in key codec and no WithKeyCodec option was
// given. A cache holds no goroutine while idle; Close releases its memory.
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
	s := newSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&s); err != nil {
			return nil, err
		}
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return build(name, loader, &s)
}

// build checks the settings against K and V, and makes the cache.
func build[K comparable, V any](name string, loader Loader[K, V], s *settings) (*Cache[K, V], error) {
	c := &Cache[K, V]{
		name:        name,
		loader:      loader,
		node:        s.node,
		ttl:         s.ttl,
		jitter:      s.jitter,
		negativeTTL: s.negativeTTL,
		stale:       s.stale,
		hotTTL:      s.hotTTL,
		batchSize:   s.batchSize,
		maxLoads:    s.maxLoads,
		loadSlots:   make(chan struct{}, s.maxLoads),
		stripes:     new([stripeCount]atomic.Uint64),
		lastWrite:   new([stripeCount]atomic.Uint64),
		loadTimeout: s.loadTimeout,
		maxKey:      s.maxKeyBytes,
		now:         s.now,
		timeoutErr:  fmt.Errorf("groupcache: cache %q: load exceeded %v: %w", name, s.loadTimeout, ErrLoadTimeout),
		tracer:      s.tracer,
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.epoch = time.Now()
	log := s.logger
	if log == nil {
		log = slog.Default()
	}
	c.log = log.With(slog.String("cache", name))
	c.flights = fill.New[K, V](s.loadTimeout, c.timeoutErr)
	c.batch, _ = loader.(BatchLoader[K, V])
	if err := c.setCodecs(s); err != nil {
		return nil, err
	}
	if err := c.setStores(s); err != nil {
		return nil, err
	}
	if c.node != nil {
		if c.node.window > 0 {
			c.recent = newRecentWrites(int64(c.node.window), c.now().UnixNano())
		}
		if err := c.node.register(name, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// setCodecs sets the value codec, key codec and sizer from the typed options, checked against K
// and V, or to their defaults.
func (c *Cache[K, V]) setCodecs(s *settings) error {
	kType, vType := reflect.TypeFor[K](), reflect.TypeFor[V]()
	values, ok, err := typed[codec.Codec[V]](s.valueCodec, "value", vType)
	if err != nil {
		return err
	}
	if !ok {
		values = codec.CBOR[V]()
	}
	keys, ok, err := typed[codec.Codec[K]](s.keyCodec, "key", kType)
	if err != nil {
		return err
	}
	if !ok {
		if keys, ok = codec.Key[K](); !ok {
			return invalid("New", "no built-in key codec for %s (only string and integer kinds have one): use WithKeyCodec", kType)
		}
	}
	sizer, _, err := typed[func(V) int64](s.sizer, "value", vType)
	if err != nil {
		return err
	}
	onRemove, _, err := typed[func(K, V, store.Reason)](s.onRemove, "listener", reflect.TypeFor[func(K, V, store.Reason)]())
	if err != nil {
		return err
	}
	c.values, c.keys, c.sizer, c.onRemove = values, keys, sizer, onRemove
	return nil
}

// setStores makes the main store and, on a node, the hot store, which takes its share of the
// bytes; the main store has the rest.
func (c *Cache[K, V]) setStores(s *settings) error {
	var hotBytes int64
	if s.node != nil {
		hotBytes = int64(float64(s.maxBytes) * s.hotFraction)
		if hotBytes <= store.EntryOverhead {
			hotBytes = 0
		}
	}
	mainBytes := s.maxBytes - hotBytes
	c.maxValue = mainBytes - store.EntryOverhead
	if s.maxValueBytes > 0 {
		if s.maxValueBytes > c.maxValue {
			return invalid("WithMaxValueBytes", "%d is above the main store's %d bytes less the entry overhead %d",
				s.maxValueBytes, mainBytes, store.EntryOverhead)
		}
		c.maxValue = s.maxValueBytes
	}
	if c.maxValue <= 0 {
		return invalid("WithMaxBytes", "%d leaves no room for an entry (entry overhead %d)", s.maxBytes, store.EntryOverhead)
	}
	now := func() int64 { return c.now().UnixNano() }
	var err error
	if hotBytes > 0 {
		if c.hot, err = store.New(store.Config[K, item[V]]{MaxBytes: hotBytes, Now: now, OnRemove: c.removed}); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		c.promoter = s.promoter
		if c.promoter == nil {
			c.promoter = newFrequencyPromoter().promote
		}
	}
	if c.store, err = store.New(store.Config[K, item[V]]{MaxBytes: mainBytes, Now: now, OnRemove: c.removed}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return nil
}

// Get returns the value of key: from memory when it is there, otherwise, once for all concurrent
// callers of the same key in this process, from the key's owner: the loader when this process owns
// the key (or works alone), the owning peer otherwise. A peer that cannot be reached is skipped for
// a back-off period and its keys are loaded locally meanwhile. A value too large to cache
// (WithMaxValueBytes) is returned with a nil error but not cached (Stats.TooLarge counts it).
//
// A hit does not allocate and does not look at ctx. On a miss, a caller whose ctx ends stops
// waiting at once and gets ctx's error, while the load goes on for the other callers. Errors: the
// loader's own error (so errors.Is(err, ErrNotFound) works; a remote owner's "not found" matches
// ErrNotFound too), ctx's error, and errors matching ErrLoadTimeout, ErrInvalidKey, ErrCodec (a
// value a peer sent that this cache's codec cannot decode), ErrUnavailable (the owner could not
// serve the key and it could not be loaded here instead), ErrClosed, or a *PanicError.
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

// flightErr translates an error of the single flight into this package's names: a panic the
// flight recovered becomes a *PanicError (the timeout is c.timeoutErr already).
func (c *Cache[K, V]) flightErr(err error) error {
	if pe, ok := errors.AsType[*fill.PanicError](err); ok {
		return &PanicError{Value: pe.Value, Stack: pe.Stack}
	}
	return err
}

// encodeKey returns the key's bytes, checked against the key length limit.
func (c *Cache[K, V]) encodeKey(key K) (b []byte, err error) {
	defer c.recoverInto(&err, "key codec")
	if b, err = c.keys.Append(nil, key); err != nil {
		return nil, fmt.Errorf("%w: cache %q: %w", ErrInvalidKey, c.name, err)
	}
	if len(b) > c.maxKey {
		return nil, fmt.Errorf("%w: cache %q: encoded key of %d bytes exceeds the limit of %d", ErrInvalidKey, c.name, len(b), c.maxKey)
	}
	return b, nil
}

// recoverInto turns a panic in user code into a *PanicError stored in *err, and logs it. what
// names the code: "loader", "codec", ...
func (c *Cache[K, V]) recoverInto(err *error, what string) {
	if r := recover(); r != nil {
		pe := &PanicError{Value: r, Stack: debug.Stack(), in: what}
		c.log.Error("panic in "+what, slog.Any("panic", r), slog.String("stack", string(pe.Stack)))
		c.failed("", pe)
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
