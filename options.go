package groupcache

import (
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/internal/memlimit"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/store"
)

// Defaults of the options; each option's doc states its own.
const (
	defaultMaxBytes    = 64 << 20
	defaultLoadTimeout = 10 * time.Second
	defaultMaxKeyBytes = 4 << 10
	defaultHotFraction = 0.125
	defaultHotTTL      = time.Minute
	defaultBatchSize   = 1000
	defaultMaxLoads    = 256
	maxMaxLoads        = 1 << 16
)

// Option configures a cache in New. Options check their own argument, New then checks them
// against each other (validate), and reports the first invalid one as an error wrapping
// ErrInvalidOption.
//
// Options are not generic so that WithMaxBytes(64<<20) needs no type arguments. The few options that
// carry a typed value (WithCodec, WithKeyCodec, WithSizer, WithRemovalListener) are generic in
// the types of their argument, which Go infers; New checks that they match the cache's K and V.
type Option interface {
	apply(*settings) error
}

type optionFunc func(*settings) error

func (f optionFunc) apply(s *settings) error { return f(s) }

// settings collects the options of one New call before they are checked and turned into a cache.
type settings struct {
	maxBytes      int64
	maxBytesSet   bool                            // WithMaxBytes was given
	memFraction   float64                         // WithMemoryFraction's f; 0 = not given
	memLimit      func() (int64, memlimit.Source) // reads the process's memory limit
	maxValueBytes int64
	maxKeyBytes   int
	loadTimeout   time.Duration
	ttl           time.Duration
	logger        *slog.Logger
	now           func() time.Time
	node          *Node
	nodeOnly      []string // names of the node-only options given, which need WithNode
	hotFraction   float64
	promoter      func(keyHash uint64, size int) bool
	jitter        float64
	negativeTTL   time.Duration
	stale         time.Duration
	hotTTL        time.Duration
	batchSize     int
	maxLoads      int
	tracer        observe.Tracer

	// Typed options, checked against K and V in New.
	valueCodec typedOption
	keyCodec   typedOption
	sizer      typedOption
	onRemove   typedOption
}

// typedOption is an option value of a type that New checks against the cache's K or V.
type typedOption struct {
	value any          // a codec.Codec[T], a func(T) int64 or a func(K, V, store.Reason)
	of    reflect.Type // T
	name  string       // the option's name, for error messages
}

func invalid(option, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, option, fmt.Sprintf(format, args...))
}

// newSettings returns the settings of a cache made without options.
func newSettings() settings {
	return settings{
		maxBytes:    defaultMaxBytes,
		memLimit:    memlimit.Limit,
		maxKeyBytes: defaultMaxKeyBytes,
		loadTimeout: defaultLoadTimeout,
		hotFraction: defaultHotFraction,
		hotTTL:      defaultHotTTL,
		batchSize:   defaultBatchSize,
		maxLoads:    defaultMaxLoads,
	}
}

// validate checks the options against each other, once they have all been applied.
func (s *settings) validate() error {
	if s.node == nil && len(s.nodeOnly) > 0 {
		return invalid(s.nodeOnly[0], "applies only to a cache on a node (WithNode)")
	}
	if s.memFraction > 0 && s.maxBytesSet {
		return invalid("WithMemoryFraction", "WithMaxBytes is given too; size the cache with one of them")
	}
	return s.sizeFromMemory()
}

// sizeFromMemory sets maxBytes from the process's memory limit when WithMemoryFraction was
// given.
func (s *settings) sizeFromMemory() error {
	if s.memFraction == 0 {
		return nil
	}
	limit, src := s.memLimit()
	if src == memlimit.None {
		return invalid("WithMemoryFraction", "the process has no memory limit: set GOMEMLIMIT, run in a container with a memory limit, or use WithMaxBytes")
	}
	s.maxBytes = max(1, int64(s.memFraction*float64(limit)))
	return nil
}

// WithMaxBytes bounds the memory of the cache: the sum of the costs of its entries never exceeds n.
// An entry's cost is its encoded value size (or the WithSizer answer) plus its encoded key length
// plus store.EntryOverhead. Default 64 MiB; valid range n > 0.
func WithMaxBytes(n int64) Option {
	return optionFunc(func(s *settings) error {
		if n <= 0 {
			return invalid("WithMaxBytes", "%d is not positive", n)
		}
		s.maxBytes, s.maxBytesSet = n, true
		return nil
	})
}

// WithMemoryFraction sizes the cache as the fraction f of the process's memory limit, read once
// in New: the Go runtime's soft limit (GOMEMLIMIT, or debug.SetMemoryLimit) when one is set, else
// the memory limit of the container the process runs in (cgroup v2 memory.max, the least on the
// way up to the root, or cgroup v1 memory.limit_in_bytes). The cache's byte bound is then
// f × limit, counted as WithMaxBytes counts it, so the cache takes about that share of the heap
// (docs/store.md, "Sizing from the process's memory"). Leave room for the rest of the process:
// several caches' fractions add up, and the Go runtime needs headroom under a limit to collect
// garbage without running constantly. It excludes WithMaxBytes (both: an error), and New fails
// with ErrInvalidOption if the process has no limit. Default: not set, the cache is sized by
// WithMaxBytes; valid range 0 < f < 1.
func WithMemoryFraction(f float64) Option {
	return optionFunc(func(s *settings) error {
		if !(f > 0 && f < 1) {
			return invalid("WithMemoryFraction", "%v is not in (0, 1)", f)
		}
		s.memFraction = f
		return nil
	})
}

// WithNode attaches the cache to a node, which makes it one cache of a cluster: each key is owned
// by one peer of the node's ring, which alone loads it; other nodes fetch it from the owner and may
// keep popular keys in a hot store. Every node of the cluster must make a cache of the same name
// with the same key and value codecs. Names are unique per node. Default: no node; the cache works
// alone.
func WithNode(n *Node) Option {
	return optionFunc(func(s *settings) error {
		if n == nil {
			return invalid("WithNode", "nil node")
		}
		s.node = n
		return nil
	})
}

// WithHotFraction sets the share of the cache's bytes (WithMaxBytes) kept for the hot store:
// copies of values owned by peers, promoted there (see WithPromoter) so that popular remote keys
// are not fetched on every Get. The main store gets the rest. Only for a cache with WithNode (New
// fails otherwise). Default 1/8; valid range 0 (no hot store) to 0.5.
func WithHotFraction(f float64) Option {
	return optionFunc(func(s *settings) error {
		if !(f >= 0 && f <= 0.5) {
			return invalid("WithHotFraction", "%v is outside 0..0.5", f)
		}
		s.hotFraction = f
		s.nodeOnly = append(s.nodeOnly, "WithHotFraction")
		return nil
	})
}

// WithPromoter sets the policy that decides which values fetched from peers enter the hot store:
// promote reports whether to keep a copy of the value of the key whose encoded bytes hash (xxh3)
// to keyHash; size is the value's encoded size. It is called once per remote fetch, so it must be
// cheap and safe for concurrent use; a panic in it fails that Get with a *PanicError. Only for a
// cache with WithNode (New fails otherwise). Default: a count-min sketch of recent fetches (4 rows
// of 4,096 counters, halved every 40,960 fetches) that promotes a key from its second fetch, so a
// one-off key is never copied and a key asked for again soon is.
func WithPromoter(promote func(keyHash uint64, size int) bool) Option {
	return optionFunc(func(s *settings) error {
		if promote == nil {
			return invalid("WithPromoter", "nil function")
		}
		s.promoter = promote
		s.nodeOnly = append(s.nodeOnly, "WithPromoter")
		return nil
	})
}

// WithMaxValueBytes bounds the cost of one value. A loaded value above it is returned to the
// caller (with a nil error) but not cached, and counted in Stats.TooLarge; Set of such a value
// fails with ErrTooLarge. Default: the main store's bytes less the entry overhead (any value that
// can fit at all); valid range 0 < n <= that.
func WithMaxValueBytes(n int64) Option {
	return optionFunc(func(s *settings) error {
		if n <= 0 {
			return invalid("WithMaxValueBytes", "%d is not positive", n)
		}
		s.maxValueBytes = n
		return nil
	})
}

// WithMaxKeyBytes bounds the length of an encoded key; Get of a longer key fails with
// ErrInvalidKey before any load. Default 4 KiB; valid range 1 to 1 MiB.
func WithMaxKeyBytes(n int) Option {
	return optionFunc(func(s *settings) error {
		if n <= 0 || n > 1<<20 {
			return invalid("WithMaxKeyBytes", "%d is outside 1..1048576", n)
		}
		s.maxKeyBytes = n
		return nil
	})
}

// WithLoadTimeout bounds one load. The load runs in a context detached from the callers' (so one
// caller giving up does not fail the others) with this timeout; when it expires every waiting caller
// gets an error matching ErrLoadTimeout. Default 10 s; valid range d > 0.
func WithLoadTimeout(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d <= 0 {
			return invalid("WithLoadTimeout", "%v is not positive", d)
		}
		s.loadTimeout = d
		return nil
	})
}

// WithTTL makes entries expire d after they were loaded; an expired entry is a miss and is loaded
// again. It is also the longest any entry lives: a longer TTL given per entry (SetTTL,
// Loaded.TTL, WithEntryTTL) is cut to d, and so is an expiry a peer sends with a value (a Set, an
// owner's reply, a hand-off), counted from when the value arrives. Default 0: entries never expire
// and leave only by eviction (a per-entry TTL and a peer's expiry then apply as given). Valid range
// d >= 0.
func WithTTL(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d < 0 {
			return invalid("WithTTL", "%v is negative", d)
		}
		s.ttl = d
		return nil
	})
}

// WithTTLJitter shortens each entry's TTL (the cache's, a loader's SetTTL, a Set's WithEntryTTL)
// by a random amount of up to f of it, so that keys loaded together do not all expire, and reload,
// together. Default 0 (no jitter); valid range 0 <= f < 1.
func WithTTLJitter(f float64) Option {
	return optionFunc(func(s *settings) error {
		if !(f >= 0 && f < 1) {
			return invalid("WithTTLJitter", "%v is outside 0..1 (1 excluded)", f)
		}
		s.jitter = f
		return nil
	})
}

// WithNegativeTTL caches "not found" for d: when the loader returns an error matching ErrNotFound,
// the error is kept and returned to every Get of the key for d without calling the loader again,
// so a popular missing key does not reach the database on every Get. On a node the owner keeps it
// and answers peers "not found"; a peer keeps that answer in its hot store for d too (at most the
// hot TTL). Set, Remove and Clear drop it like any entry. Default 0: misses are not cached; valid
// range d >= 0.
func WithNegativeTTL(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d < 0 {
			return invalid("WithNegativeTTL", "%v is negative", d)
		}
		s.negativeTTL = d
		return nil
	})
}

// WithStaleWhileRevalidate keeps an expired entry for a further window d. A Get in that window
// returns the old value at once and starts one background refresh of the key (single-flight with
// any other load of it, bounded by the load timeout); the refreshed value replaces the old one.
// A refresh that fails keeps the old value until the window ends (and counts in
// Stats.RefreshErrors); one that says ErrNotFound drops it. Entries without a TTL never go stale.
// Default 0 (an expired entry is a miss); valid range d >= 0.
func WithStaleWhileRevalidate(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d < 0 {
			return invalid("WithStaleWhileRevalidate", "%v is negative", d)
		}
		s.stale = d
		return nil
	})
}

// WithHotTTL bounds how long a copy of a value owned by a peer (in the hot store, or loaded here
// while its owner was down) is served: at most d, and never past the owner's own expiry of the
// value. It is also the longest a node can go on serving a value removed or changed elsewhere when
// the node could not be told (it was unreachable during Remove, Set or Clear). Only for a cache
// with WithNode (New fails otherwise). Default 1 minute; valid range d > 0.
func WithHotTTL(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d <= 0 {
			return invalid("WithHotTTL", "%v is not positive", d)
		}
		s.hotTTL = d
		s.nodeOnly = append(s.nodeOnly, "WithHotTTL")
		return nil
	})
}

// WithBatchSize bounds the keys of one request to a peer (GetMany, RemoveMany) and of one
// BatchLoader.LoadMany call; larger sets are split into several. Default 1000;
// valid range 1 to 4096 (the transport's default limit, peer.DefaultMaxBatchKeys).
func WithBatchSize(n int) Option {
	return optionFunc(func(s *settings) error {
		if n <= 0 || n > 4096 {
			return invalid("WithBatchSize", "%d is outside 1..4096", n)
		}
		s.batchSize = n
		return nil
	})
}

// WithMaxLoads bounds the loader calls in progress in this cache at once: at most n calls of Load
// and LoadMany (one LoadMany counts one, whatever its keys), for this process's own Gets, peers'
// requests, fallbacks and refreshes alike. A load that finds n running waits for one to return,
// for as long as the load may last (the load timeout, and while a caller still waits for it);
// Stats.LoadWaits counts such waits. A slot is held until the loader returns, even when every
// caller has stopped waiting, so a loader that ignores its context holds one for as long as it
// runs. GetMany runs at most min(16, n) of its own loads at once. Hits never wait. A loader that
// calls Get of the same cache for another key holds its slot while that load waits for one.
// Default 256; valid range 1 to 65,536.
func WithMaxLoads(n int) Option {
	return optionFunc(func(s *settings) error {
		if n <= 0 || n > maxMaxLoads {
			return invalid("WithMaxLoads", "%d is outside 1..%d", n, maxMaxLoads)
		}
		s.maxLoads = n
		return nil
	})
}

// WithLogger sets the logger for events a caller does not see in a returned error (a loader panic
// is logged with its stack as well as returned). Default slog.Default(); nil means the default.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(s *settings) error {
		s.logger = l
		return nil
	})
}

// WithClock sets the clock used for entry expiry: now tells the time. Default time.Now; nil means
// the default. Tests use a fake clock to expire entries without sleeping. now must be safe for
// concurrent use.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(s *settings) error {
		s.now = now
		return nil
	})
}

// WithCodec sets the codec of the cache's values; V of the cache must be T (New checks).
// Default codec.CBOR[V](). The codec measures the cost of a value (unless WithSizer is given) and,
// in a cluster, encodes the bytes sent to peers, so every node of a cache must use the same codec.
func WithCodec[T any](c codec.Codec[T]) Option {
	return optionFunc(func(s *settings) error {
		if c == nil {
			return invalid("WithCodec", "nil codec")
		}
		s.valueCodec = typedOption{value: c, of: reflect.TypeFor[T](), name: "WithCodec"}
		return nil
	})
}

// WithKeyCodec sets how keys turn into bytes; K of the cache must be T (New checks). Every node must
// map the same key to the same bytes. Default: codec.Key[K]() for string and integer kinds; any other
// key type needs this option (New fails with ErrInvalidOption without it). For struct keys,
// codec.CBOR[T]() is deterministic and works.
func WithKeyCodec[T any](c codec.Codec[T]) Option {
	return optionFunc(func(s *settings) error {
		if c == nil {
			return invalid("WithKeyCodec", "nil codec")
		}
		s.keyCodec = typedOption{value: c, of: reflect.TypeFor[T](), name: "WithKeyCodec"}
		return nil
	})
}

// WithSizer sets a function that tells the cost in bytes of a value, used instead of its encoded
// size; V of the cache must be T (New checks). It saves encoding each loaded value on a node that
// serves no peers. It must be cheap, must not block, and must return a non-negative number.
// Default: none (the encoded size is the cost).
func WithSizer[T any](size func(T) int64) Option {
	return optionFunc(func(s *settings) error {
		if size == nil {
			return invalid("WithSizer", "nil function")
		}
		s.sizer = typedOption{value: size, of: reflect.TypeFor[T](), name: "WithSizer"}
		return nil
	})
}

// WithTracer makes the cache tell t of each step of its misses (observe.Step): the miss of a Get,
// View or GetMany, the wait on another caller's flight, the fetch from the key's owner, the
// hand-off from its previous owner, the answer to a peer's request that is not a hit, and the
// loader's call, each with the context it runs in, so that a tracer's spans nest and the
// loader's own spans are children of the Load span (the module
// github.com/typedcache/groupcache/observe/otel makes OpenTelemetry spans). Hits tell t
// nothing. The spans of one node do not yet join those of the peer it asks (no trace context
// travels on the wire). Default: no tracer; nil means none.
func WithTracer(t observe.Tracer) Option {
	return optionFunc(func(s *settings) error {
		s.tracer = t
		return nil
	})
}

// WithRemovalListener makes the cache call fn for every value that leaves its memory, with the
// reason (store.Explicit: Remove, RemoveMany, Clear, a peer's, or Close; store.Expired: found
// past its TTL, which may be long after it; store.Evicted: dropped, before its expiry, to make
// room; store.Replaced: a newer value of the key stored over it), for a program that must release
// what a value holds. K and V of the cache must be those of fn (New checks).
//
// Every value the cache stores is reported once, when it leaves (Close reports what is left),
// on the hot store's copies of peers' values as on the main store's; a cached "not found" is
// not, nor a value that was returned but never stored (too large, a copy not promoted). fn runs
// after the cache's locks are released, on the goroutine that caused the removal: the one that
// called Remove, Set, Clear or Close, a Get whose load stored a value and evicted others, a
// peer's request, a background refresh. It therefore delays that call: hand slow work to a
// goroutine of your own. Calls on different goroutines run concurrently, so fn must be safe for
// concurrent use, and two removals of one key may be reported in either order. The value may
// still be in use by callers that got it from Get: release only what they cannot be using.
// A panic in fn is logged and recovered. Hits never call fn. Default: none.
func WithRemovalListener[K comparable, V any](fn func(key K, value V, reason store.Reason)) Option {
	return optionFunc(func(s *settings) error {
		if fn == nil {
			return invalid("WithRemovalListener", "nil function")
		}
		s.onRemove = typedOption{value: fn, of: reflect.TypeOf(fn), name: "WithRemovalListener"}
		return nil
	})
}

// typed returns the value of a typed option as T, or an error naming the mismatch.
func typed[T any](o typedOption, role string, want reflect.Type) (T, bool, error) {
	var zero T
	if o.value == nil {
		return zero, false, nil
	}
	v, ok := o.value.(T)
	if !ok {
		return zero, false, invalid(o.name, "given for %s, but the cache's %s type is %s",
			o.of, role, want)
	}
	return v, true, nil
}
