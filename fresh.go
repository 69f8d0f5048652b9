package groupcache

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/typedcache/groupcache/peer"
	"github.com/typedcache/groupcache/store"
)

// freshCounters count expiry, negative caching, refreshes, writes and batches; all atomic.
type freshCounters struct {
	negativeEntries atomic.Int64
	negativeHits    atomic.Int64
	staleHits       atomic.Int64
	refreshes       atomic.Int64
	refreshErrors   atomic.Int64
	removes         atomic.Int64
	sets            atomic.Int64
	clears          atomic.Int64
	batchGets       atomic.Int64
	batchKeys       atomic.Int64
	batchRequests   atomic.Int64
	batchLoads      atomic.Int64
}

// SetTTL sets the TTL of the value that the running Load returns: called from Loader.Load with the
// ctx it was given, it overrides the cache's WithTTL for that one entry (WithTTLJitter still
// applies; a d longer than the cache's TTL, when it has one, is cut to it). It reports false, and
// does nothing, when ctx is not a loader's context or d <= 0. The last call before Load returns
// wins. A BatchLoader sets TTLs per key in its Loaded results instead.
func SetTTL(ctx context.Context, d time.Duration) bool {
	box, ok := ctx.Value(entryTTLKey{}).(*entryTTL)
	if !ok || d <= 0 {
		return false
	}
	box.d.Store(int64(d))
	return true
}

type entryTTLKey struct{}

// entryTTL is where SetTTL leaves the TTL for the load in progress.
type entryTTL struct{ d atomic.Int64 }

func (b *entryTTL) get() time.Duration { return time.Duration(b.d.Load()) }

// deadline returns the expiry (unix nanoseconds, 0 = never) of an entry stored now with ttl, or
// with the cache's TTL when ttl is 0 or longer than it (the cache's TTL, when it has one, is the
// longest any entry lives), shortened by the jitter.
func (c *Cache[K, V]) deadline(ttl time.Duration) int64 {
	if ttl <= 0 || (c.ttl > 0 && ttl > c.ttl) {
		ttl = c.ttl
	}
	if ttl <= 0 {
		return 0
	}
	if c.jitter > 0 {
		ttl -= time.Duration(rand.Float64() * c.jitter * float64(ttl))
	}
	return c.now().Add(ttl).UnixNano()
}

// peerExpiry returns the expiry, by this node's clock (unix nanoseconds, 0 = never), of a value a
// peer sent with ttl, the lifetime it had left when sent (0: never; negative: expired): a Set, an
// owner's reply, a hand-off. The lifetime counts from at, when this node sent the request the
// value answers (the round trip then shortens the copy's life, never lengthens it), or when a
// peer's Set arrived; no clock of another node is read, so skew does not matter. With a TTL, the
// lifetime is cut to it, as if the value had been stored here at: a peer cannot make this node
// keep a value longer than its own settings would (a century, or never, becomes the TTL).
// Without a TTL this node keeps its own entries until they are evicted, so any lifetime a peer
// sends is within that and is kept as sent (one past what an int64 deadline can say: never). An
// expired value gets -1, which no clock reading makes live. Every expiry that comes from the
// network goes through here.
func (c *Cache[K, V]) peerExpiry(at int64, ttl time.Duration) int64 {
	if c.ttl > 0 && (ttl == 0 || ttl > c.ttl) {
		ttl = c.ttl
	}
	switch {
	case ttl < 0:
		return -1
	case ttl == 0 || int64(ttl) > math.MaxInt64-at:
		return 0
	}
	return at + int64(ttl)
}

// remaining returns the lifetime left, by this node's clock, of a value that expires at expires
// (unix nanoseconds; 0 = never, and then 0): what a peer is sent instead of the expiry, so that
// it counts the lifetime from its own clock. A value already expired (a stale value served while
// it is refreshed) has a negative one, never 0.
func (c *Cache[K, V]) remaining(expires int64) time.Duration {
	if expires == 0 {
		return 0
	}
	if d := expires - c.now().UnixNano(); d != 0 {
		return time.Duration(d)
	}
	return -1
}

// onWire returns w's value as it is sent to a peer now: with the lifetime it has left.
func (c *Cache[K, V]) onWire(w *wireForm) peer.Value {
	v := w.Value
	v.TTL = c.remaining(w.expires)
	return v
}

// hardDeadline returns when the main store drops an entry that expires at expires: then, or at
// the end of the stale-while-revalidate window after it.
func (c *Cache[K, V]) hardDeadline(expires int64) int64 {
	if expires == 0 || c.stale <= 0 {
		return expires
	}
	return expires + int64(c.stale)
}

// staleAt returns the item's stale mark for an entry that expires at expires: the expiry when the
// entry is kept past it for stale-while-revalidate, 0 otherwise.
func (c *Cache[K, V]) staleAt(expires int64) int64 {
	if c.stale <= 0 {
		return 0
	}
	return expires
}

// hotDeadline returns when a copy of a peer's value that expires at expires (0 = never) leaves the
// hot store: at that expiry, and no later than the hot TTL from now.
func (c *Cache[K, V]) hotDeadline(expires int64) int64 {
	limit := c.now().Add(c.hotTTL).UnixNano()
	if expires != 0 && expires < limit {
		return expires
	}
	return limit
}

// special answers a hit on an entry that is not a plain fresh value: a cached "not found", or a
// stale value (which starts a refresh).
func (c *Cache[K, V]) special(key K, it item[V]) (V, error) {
	if err := it.failure(); err != nil {
		c.fresh.negativeHits.Add(1)
		return it.v, err
	}
	if c.now().UnixNano() >= it.staleMark() {
		c.fresh.staleHits.Add(1)
		c.refresh(key)
	}
	return it.v, nil
}

// liveItem returns the main store's fresh item for key (a value, or a cached "not found") without
// counting a lookup. A stale item (kept for stale-while-revalidate) does not count.
func (c *Cache[K, V]) liveItem(key K) (item[V], bool) {
	it, expires, ok := c.store.Peek(key)
	if !ok || !c.live(expires) || (it.staleMark() != 0 && !c.live(it.staleMark())) {
		return item[V]{}, false
	}
	return it, true
}

// liveOrStale returns s's unexpired item for key, stale or not.
func (c *Cache[K, V]) liveOrStale(s *store.Store[K, item[V]], key K) (item[V], bool) {
	it, expires, ok := s.Peek(key)
	if !ok || !c.live(expires) {
		return item[V]{}, false
	}
	return it, true
}

// refresh starts one background load of key, unless one is running, to replace its stale value.
// The load joins the key's single flight, so it never runs twice at once.
func (c *Cache[K, V]) refresh(key K) {
	if _, busy := c.refreshing.LoadOrStore(key, struct{}{}); busy {
		return
	}
	c.bgMu.Lock()
	if c.bgStopped {
		c.bgMu.Unlock()
		c.refreshing.Delete(key)
		return
	}
	c.background.Add(1)
	c.bgMu.Unlock()
	c.fresh.refreshes.Add(1)
	go func() {
		defer c.background.Done()
		defer c.refreshing.Delete(key)
		kb, err := c.encodeKey(key)
		if err == nil {
			m := c.newMiss(key, kb)
			_, err, _ = c.flights.Do(context.Background(), key, func(ctx context.Context) (V, error) {
				return c.fill(ctx, m)
			})
			err = c.flightErr(err)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.fresh.refreshErrors.Add(1)
			c.log.Warn("refresh failed; serving the stale value until its window ends", slog.Any("err", err))
		}
	}()
}

// stripeCount is the number of stripes of keys whose removals and sets are counted (see stamp).
const stripeCount = 1024

// stamp is what a load remembers of the cache's versions when it starts: the Clear generation and
// the write count of its key's stripe. A load stores its value only if both are unchanged when it
// is done, so a value loaded before a Remove, Set or Clear is never stored after it. Keys sharing
// a stripe only cost each other that one store.
type stamp struct {
	gen, n uint64
	i      uint32
}

func stripeOf(kb []byte) uint32 { return uint32(keyHash(kb) % stripeCount) }

// keyHash is the hash of a key's bytes that chooses its stripe (its low bits) and its bit among
// the keys written lately (its high bits, see recentWrites).
func keyHash(kb []byte) uint64 { return xxh3.Hash(kb) }

func (c *Cache[K, V]) stamp(kb []byte) stamp {
	i := stripeOf(kb)
	return stamp{gen: c.gen.Load(), n: c.stripes[i].Load(), i: i}
}

// current reports whether nothing was removed, set or cleared in st's stripe since st was taken.
func (c *Cache[K, V]) current(st stamp) bool {
	return c.gen.Load() == st.gen && c.stripes[st.i].Load() == st.n
}
