package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// EntryOverhead is the fixed number of bytes added to the cost of every entry to stand for the
// memory the store itself spends on it: the entry header (key and value headers, expiry, size,
// policy links and counter), its share of the hash table (16-byte slots kept between 3/8 and
// 3/4 full) and of the frequency sketch (8 to 16 bytes per entry).
//
// It was measured, not guessed: TestEntryOverheadEstimate (go test -v -run Overhead) counts the
// growth of the Go heap per entry, not counting the key and value bytes that the caller's cost
// already covers. On 64-bit Go it finds about 90 bytes for uint64 keys with pointer values, 103
// for string keys with []byte values, and 116 in a full store that has been evicting (whose
// table holds tombstones and whose sketch is sized for every entry). The root package's
// TestBytesChargedMatchHeap checks the whole cache: its charge per entry stays within 15% of
// the heap it takes, for the smallest entries (uint64 keys and values) and for 100-byte values.
const EntryOverhead = 112

// ErrInvalidConfig is wrapped by the error New returns for an invalid Config.
var ErrInvalidConfig = errors.New("store: invalid config")

// Config configures a Store. MaxBytes is required; the zero value of every other field means its
// documented default.
type Config[K comparable, V any] struct {
	// MaxBytes bounds the sum of (cost + EntryOverhead) over all entries. It must be > 0. The
	// bound holds at every moment, also while many goroutines write concurrently.
	MaxBytes int64
	// Shards is the number of hash-table shards, a power of two. 0 means DefaultShards().
	Shards int
	// Hash hashes a key. nil means hash/maphash.Comparable with a seed chosen at random for each
	// store. A custom hash must be deterministic; its quality matters (the store mixes it once
	// more, so an identity hash of integers is fine).
	Hash func(K) uint64
	// Now returns the current time in unix nanoseconds. nil means time.Now().UnixNano(). It is
	// called for entries that have an expiry and, with OnRemove, once per Set to date the entry
	// (see Removal.Age).
	Now func() int64
	// OnRemove, when not nil, is told of every entry that leaves the store, with the reason
	// (see Reason). It is called after the store's lock is released, on the goroutine whose call
	// removed the entry: Set (for the entries it evicts or replaces), Remove or Clear; so it
	// may call the store, and it delays that call by its own cost. The entries one call removes
	// are reported in the order they left; calls on different goroutines report concurrently,
	// so two removals of one key may be reported in either order. Get and Peek never remove.
	OnRemove func(Removal[K, V])
}

// Reason says why an entry left the store.
type Reason uint8

// The reasons an entry leaves the store.
const (
	// Explicit: Remove or Clear.
	Explicit Reason = iota + 1
	// Expired: the entry was past its expiry when the policy met it or Set replaced it. An
	// expired entry stays until then, so this may come long after the expiry.
	Expired
	// Evicted: the policy dropped the entry, before its expiry, to make room for others.
	Evicted
	// Replaced: Set stored another value for the key (or refused one too large for the store,
	// which drops the old value too).
	Replaced
)

var reasonNames = [...]string{"unknown", "explicit", "expired", "evicted", "replaced"}

// String returns the reason's name: "explicit", "expired", "evicted" or "replaced".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return reasonNames[0]
}

// Removal is an entry that left the store, as Config.OnRemove is told of it.
type Removal[K comparable, V any] struct {
	Key    K
	Value  V
	Reason Reason
	// Age is how long the entry was in the store, from the Set that stored it, by Config.Now:
	// to within about 67 ms, and modulo about 13 days (an entry keeps its date in 3 bytes that
	// would otherwise be padding, in units of 2^26 ns).
	Age time.Duration
}

// Entries keep their date (Set's time) in 3 bytes, in units of 2^ageShift ns (about 67 ms),
// modulo 2^24 units (about 13 days): the padding after the queue byte, so dating entries makes
// them no larger.
const ageShift = 26

// dateOf returns the date of an entry stored at now (unix nanoseconds).
func dateOf(now int64) [3]byte {
	u := uint32(now >> ageShift)
	return [3]byte{byte(u), byte(u >> 8), byte(u >> 16)}
}

// ageAt returns the age at now of an entry dated born: the units between the two, which is the
// true age to within one unit.
func ageAt(born [3]byte, now int64) time.Duration {
	b := uint32(born[0]) | uint32(born[1])<<8 | uint32(born[2])<<16
	d := (uint32(now>>ageShift) - b) & (1<<24 - 1)
	return time.Duration(d) << ageShift
}

// DefaultShards is the number of shards used when Config.Shards is 0: 16 per GOMAXPROCS, rounded
// up to a power of two, between 16 and 1024.
func DefaultShards() int {
	n := 16 * runtime.GOMAXPROCS(0)
	n = min(max(n, 16), 1024)
	return 1 << bits.Len(uint(n-1))
}

// Stats is a snapshot of a store's counters. The counters are kept per shard and summed when
// Stats is called, so a snapshot taken under concurrent use is not atomic across fields.
type Stats struct {
	// Hits is the number of Get calls that returned a value.
	Hits int64
	// Misses is the number of Get calls that returned no value: the key was absent or its entry
	// had expired. Expired lookups are also counted in Expirations.
	Misses int64
	// Evictions is the number of entries the policy removed to make room for others (expired
	// entries met by the policy included). Remove, Clear and replacing a key are not evictions.
	Evictions int64
	// Expirations is the number of Get calls that found an entry past its expiry (each is also
	// a miss). Peek does not count.
	Expirations int64
	// Items is the number of entries held, expired ones not yet evicted included (same as Len).
	Items int64
	// Bytes is the sum of (cost + EntryOverhead) over the entries held (same as Bytes()).
	Bytes int64
}

// entry is one key/value pair. key, val, hash, expiresAt and size never change after the entry is
// published, so readers use them without a lock; a new value for the key is a new entry. freq is
// the only field written by readers.
type entry[K comparable, V any] struct {
	key       K
	val       V
	expiresAt int64
	freq      atomic.Int32
	queue     uint8   // guarded by Store.mu
	born      [3]byte // its date (dateOf), with Config.OnRemove; in what would be padding
	size      int64   // cost + EntryOverhead
	prev      *entry[K, V]
	next      *entry[K, V]
	// The key's hash is not kept here: it is in the table slot, and writers recompute it when
	// they need it. Leaving it out keeps common entries (string key, word-sized value) within one
	// 64-byte allocation, which measurably speeds up hits on tables larger than the CPU caches.
}

// Store is a sharded, byte-bounded, concurrent in-memory key/value store with adaptive eviction.
// Get and Peek take no lock; Set, Remove and Clear serialize on one mutex. All methods are safe
// for concurrent use.
type Store[K comparable, V any] struct {
	// Read-mostly fields used by Get.
	shards   []shard[K, V]
	shift    uint // 64 - log2(len(shards))
	seed     maphash.Seed
	userHash func(K) uint64
	now      func() int64
	tomb     *entry[K, V] // tombstone sentinel for table slots
	max      int64
	onRemove func(Removal[K, V])
	_        [cacheLine]byte

	mu       sync.Mutex
	used     int64 // sum of entry sizes; guarded by mu
	smallMax int64 // the window's share of max, moved by the climber; guarded by mu
	// newest is the share of contests whose victim is probation's newest entry rather than its
	// oldest, moved by the climber; newestAcc spreads them. Guarded by mu.
	newest, newestAcc float64
	small             list[K, V]
	prob              list[K, V]
	prot              list[K, V]
	sketch            sketch
	climb             climber
	// removed collects what the writer call in progress removed, for OnRemove; guarded by mu.
	removed []Removal[K, V]
	_       [cacheLine]byte

	// Published copies for lock-free readers of Bytes, Len and Stats.
	bytes     atomic.Int64
	items     atomic.Int64
	evictions atomic.Int64
}

// New returns an empty store. It returns an error wrapping ErrInvalidConfig if MaxBytes is not
// positive or Shards is negative or not a power of two.
func New[K comparable, V any](cfg Config[K, V]) (*Store[K, V], error) {
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("%w: MaxBytes must be > 0, got %d", ErrInvalidConfig, cfg.MaxBytes)
	}
	n := cfg.Shards
	if n == 0 {
		n = DefaultShards()
	}
	if n < 0 || n&(n-1) != 0 || n > 1<<16 {
		return nil, fmt.Errorf("%w: Shards must be a power of two (at most 65536), got %d", ErrInvalidConfig, cfg.Shards)
	}
	s := &Store[K, V]{
		shards:   make([]shard[K, V], n),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		seed:     maphash.MakeSeed(),
		userHash: cfg.Hash,
		now:      cfg.Now,
		tomb:     new(entry[K, V]),
		max:      cfg.MaxBytes,
		onRemove: cfg.OnRemove,
		smallMax: cfg.MaxBytes * windowPercent / 100,
	}
	if s.now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	}
	for i := range s.shards {
		s.shards[i].tab.Store(newTable[K, V](minTableSize))
	}
	s.climb.reset(s.max)
	return s, nil
}

// hash returns the mixed hash of k: the top bits pick the shard, the low bits the table slot.
func (s *Store[K, V]) hash(k K) uint64 {
	var h uint64
	if s.userHash != nil {
		h = s.userHash(k)
	} else {
		h = maphash.Comparable(s.seed, k)
	}
	// Fibonacci mixing spreads a weak user hash over the top (shard) bits.
	return h * 0x9e3779b97f4a7c15
}

func (s *Store[K, V]) shardOf(h uint64) *shard[K, V] {
	return &s.shards[h>>s.shift&uint64(len(s.shards)-1)]
}

// Get returns the value for k and whether it was found. An entry past its expiry is not returned
// (a miss, also counted as an expiration). A hit records the access for the eviction policy and
// allocates nothing.
func (s *Store[K, V]) Get(k K) (V, bool) {
	h := s.hash(k)
	sh := s.shardOf(h)
	e := sh.tab.Load().find(h, k, s.tomb)
	if e == nil {
		sh.misses.Add(1)
		var zero V
		return zero, false
	}
	if e.expiresAt != 0 && s.now() >= e.expiresAt {
		sh.misses.Add(1)
		sh.expirations.Add(1)
		var zero V
		return zero, false
	}
	// Saturating 2-bit counter; no write once saturated, so hot entries stay read-only.
	// Concurrent bumps may lose an increment, which the policy tolerates.
	if f := e.freq.Load(); f < maxFreq {
		e.freq.Store(f + 1)
	}
	sh.hits.Add(1)
	return e.val, true
}

// Peek returns the value for k and its expiry (unix nanoseconds, 0 = never) without recording an
// access or counting a hit or miss. Unlike Get it also returns an expired entry, so that a caller
// can serve a stale value while it loads a fresh one.
func (s *Store[K, V]) Peek(k K) (v V, expiresAt int64, ok bool) {
	h := s.hash(k)
	e := s.shardOf(h).tab.Load().find(h, k, s.tomb)
	if e == nil {
		return v, 0, false
	}
	return e.val, e.expiresAt, true
}

// Set stores v under k with the given cost in bytes and expiry (unix nanoseconds, 0 = never),
// replacing any existing entry for k; the replacement keeps the old entry's place in the policy.
// It evicts entries, if needed, before the new one becomes visible, so Bytes never exceeds
// MaxBytes. It reports whether it stored v: it does not when cost+EntryOverhead exceeds MaxBytes
// (the entry is larger than the store), and then removes any existing entry for k so that a stale
// value is not served. A negative cost is a programming error: Set panics.
func (s *Store[K, V]) Set(k K, v V, cost int64, expiresAt int64) (stored bool) {
	if cost < 0 {
		panic(fmt.Sprintf("store: Set with a negative cost %d", cost))
	}
	h := s.hash(k)
	var gone pending[K, V]
	s.mu.Lock()
	if cost > s.max-EntryOverhead {
		s.removeKey(k, h, Replaced) // the entry is larger than the store: no stale value stays
	} else {
		s.set(&entry[K, V]{key: k, val: v, expiresAt: expiresAt, size: cost + EntryOverhead}, h)
		stored = true
	}
	s.take(&gone)
	s.mu.Unlock()
	s.tell(&gone)
	return stored
}

// set stores ne, whose key hashes to h, evicting what it must first. Caller holds mu.
func (s *Store[K, V]) set(ne *entry[K, V], h uint64) {
	var now int64
	if s.onRemove != nil {
		now = s.now()
		ne.born = dateOf(now)
	}
	sh := s.shardOf(h)
	if i, _ := sh.tab.Load().lookup(h, ne.key, s.tomb); i >= 0 {
		old := sh.tab.Load().slots[i].e.Load()
		// Make room while the old entry is still counted; the policy may evict it too.
		for old.queue != qNone && s.used-old.size+ne.size > s.max {
			s.evictOne(0)
		}
		if old.queue != qNone {
			ne.freq.Store(old.freq.Load())
			ne.queue = old.queue
			s.queueOf(old.queue).replace(old, ne)
			old.queue = qNone
			t := sh.tab.Load()
			t.slots[t.indexOf(old, h)].e.Store(ne)
			s.used += ne.size - old.size
			s.bytes.Store(s.used)
			if s.onRemove != nil {
				reason := Replaced
				if old.expiresAt != 0 && now >= old.expiresAt {
					reason = Expired
				}
				s.report(old, reason, now)
			}
			return
		}
	}
	for s.used+ne.size > s.max {
		if !s.evictOne(ne.size) {
			break // unreachable: an entry that fits always fits an empty store
		}
	}
	if n := int(s.items.Load()) + 1; n > len(s.sketch.table) {
		s.sketch.ensure(n)
	}
	s.link(ne, h)
	_, at := sh.tab.Load().lookup(h, ne.key, s.tomb)
	sh.insert(ne, h, at, s.tomb)
	s.used += ne.size
	s.bytes.Store(s.used)
	s.items.Add(1)
	s.adapt()
}

// release accounts for an entry that left the table. Caller holds mu.
func (s *Store[K, V]) release(e *entry[K, V]) {
	s.used -= e.size
	s.bytes.Store(s.used)
	s.items.Add(-1)
}

// Remove deletes the entry for k and reports whether there was one.
func (s *Store[K, V]) Remove(k K) bool {
	h := s.hash(k)
	var gone pending[K, V]
	s.mu.Lock()
	ok := s.removeKey(k, h, Explicit)
	s.take(&gone)
	s.mu.Unlock()
	s.tell(&gone)
	return ok
}

// removeKey deletes the entry for k, whose hash is h, for reason, and reports whether there
// was one. Caller holds mu.
func (s *Store[K, V]) removeKey(k K, h uint64, reason Reason) bool {
	sh := s.shardOf(h)
	i, _ := sh.tab.Load().lookup(h, k, s.tomb)
	if i < 0 {
		return false
	}
	e := sh.tab.Load().slots[i].e.Load()
	s.unlink(e)
	sh.remove(e, h, s.tomb)
	s.release(e)
	if s.onRemove != nil {
		s.report(e, reason, s.now())
	}
	return true
}

// Clear deletes every entry. Counters other than Items and Bytes are kept.
func (s *Store[K, V]) Clear() {
	var gone pending[K, V]
	s.mu.Lock()
	s.clear()
	s.take(&gone)
	s.mu.Unlock()
	s.tell(&gone)
}

// clear deletes every entry. Caller holds mu.
func (s *Store[K, V]) clear() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.tab.Store(newTable[K, V](minTableSize))
		sh.live, sh.tombs = 0, 0
	}
	var now int64
	if s.onRemove != nil {
		now = s.now()
	}
	// Unlink everything so that a reader still holding an old table pins only its own entries.
	for _, l := range []*list[K, V]{&s.small, &s.prob, &s.prot} {
		for e := l.head; e != nil; {
			next := e.next
			e.prev, e.next, e.queue = nil, nil, qNone
			s.report(e, Explicit, now)
			e = next
		}
		*l = list[K, V]{}
	}
	s.sketch.reset()
	s.used = 0
	s.bytes.Store(0)
	s.items.Store(0)
}

// report records that e left the store for reason at now (unix nanoseconds), for OnRemove.
// Caller holds mu.
func (s *Store[K, V]) report(e *entry[K, V], reason Reason, now int64) {
	if s.onRemove != nil {
		s.removed = append(s.removed, Removal[K, V]{Key: e.key, Value: e.val, Reason: reason, Age: ageAt(e.born, now)})
	}
}

// pending is what one writer call has to tell OnRemove once it has released the lock: a few
// removals kept in place (a Set evicts one or two entries at a time), and the rest.
type pending[K comparable, V any] struct {
	few  [2]Removal[K, V]
	n    int
	more []Removal[K, V]
}

// take moves the removals recorded so far into p. Caller holds mu.
func (s *Store[K, V]) take(p *pending[K, V]) {
	if len(s.removed) == 0 {
		return
	}
	p.n = copy(p.few[:], s.removed)
	if len(s.removed) > len(p.few) {
		p.more = slices.Clone(s.removed[len(p.few):])
	}
	clear(s.removed) // no keys or values pinned
	s.removed = s.removed[:0]
	if cap(s.removed) > 64 {
		s.removed = nil // a Clear's worth is not kept
	}
}

// tell reports p's removals to OnRemove. Caller does not hold mu.
func (s *Store[K, V]) tell(p *pending[K, V]) {
	for i := range p.n {
		s.onRemove(p.few[i])
	}
	for _, r := range p.more {
		s.onRemove(r)
	}
}

// Len returns the number of entries held, expired ones not yet evicted included.
func (s *Store[K, V]) Len() int { return int(s.items.Load()) }

// Bytes returns the sum of (cost + EntryOverhead) over the entries held; never more than
// MaxBytes.
func (s *Store[K, V]) Bytes() int64 { return s.bytes.Load() }

// MaxBytes returns the configured bound.
func (s *Store[K, V]) MaxBytes() int64 { return s.max }

// Stats returns a snapshot of the counters.
func (s *Store[K, V]) Stats() Stats {
	var st Stats
	for i := range s.shards {
		sh := &s.shards[i]
		st.Hits += sh.hits.Load()
		st.Misses += sh.misses.Load()
		st.Expirations += sh.expirations.Load()
	}
	st.Evictions = s.evictions.Load()
	st.Items = s.items.Load()
	st.Bytes = s.bytes.Load()
	return st
}
