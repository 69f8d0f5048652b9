package groupcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
	"github.com/typedcache/groupcache/store"
)

// miss is the state of one miss of one key, which the functions that fill it share: what is known
// of the key, and how it is filled. It lives for one flight (or one key of a GetMany batch).
type miss[K comparable, V any] struct {
	key K
	kb  []byte // the encoded key
	// st is the cache's versions when the flight started: a Remove, Set or Clear since then keeps
	// what the flight finds from being stored (see stamp).
	st stamp
	// into is the store a load keeps its value in: the main store, or for a fallback (a key owned
	// by a peer that could not serve it) the hot store, when there is one.
	into *store.Store[K, item[V]]
	// detach makes the loader run in a goroutine of its own, so that the load timeout frees a
	// flight run by its caller (fill.DoHere) even when the loader ignores its context.
	detach bool
	// forPeer marks the miss of a peer's request: its load counts in PeerLoads.
	forPeer bool
	// lb is the memory View reads a fetched value into; nil for everything else.
	lb *lentBuffers
}

// newMiss returns the state of a miss of key, whose bytes are kb, that keeps its value in the
// main store.
func (c *Cache[K, V]) newMiss(key K, kb []byte) miss[K, V] {
	return miss[K, V]{key: key, kb: kb, into: c.store}
}

// miss is the slow path of Get: a GetMiss span around the key's flight.
func (c *Cache[K, V]) miss(ctx context.Context, key K) (V, error) {
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	kb, err := c.encodeKey(key)
	if err != nil {
		return zero, err
	}
	ctx, end := c.span(ctx, observe.Span{Step: observe.GetMiss})
	v, err := c.flight(ctx, key, kb)
	end(err)
	return v, err
}

// flight fills key, whose bytes are kb, in its single flight: runs it, or joins the one another
// caller runs.
func (c *Cache[K, V]) flight(ctx context.Context, key K, kb []byte) (V, error) {
	m := c.newMiss(key, kb)
	// A caller whose ctx can never end runs the flight itself (no goroutine, no hand-offs: most
	// of the cost of a remote hit); the loader then runs detached, so the load timeout still frees
	// this caller if the loader ignores its context.
	m.detach = ctx.Done() == nil
	start := c.waitStart()
	v, err, shared := c.flights.DoHere(ctx, key, func(lctx context.Context) (V, error) {
		return c.fill(lctx, m)
	})
	if shared {
		c.dedup.Add(1)
		c.waited(ctx, start, 1, err)
	}
	return v, c.flightErr(err)
}

// fill runs inside the single flight of m's key. It checks the stores once more (a load that
// finished just before this flight started has filled them), then asks the key's owner: the
// loader when it is this node, the owning peer otherwise. The value is stored before any waiter
// is released, so a Get right after sees a hit.
func (c *Cache[K, V]) fill(ctx context.Context, m miss[K, V]) (V, error) {
	m.st = c.stamp(m.kb) // before the lookup: a Remove after it keeps what this flight finds from being stored
	if it, ok := c.lookup(m.key); ok {
		return it.v, it.failure()
	}
	if owner, ok := c.remoteOwner(m.kb); ok {
		return c.fillRemote(ctx, owner, &m)
	}
	it, err := c.load(ctx, &m)
	return it.v, err
}

// remoteOwner returns the peer that owns the key whose bytes are kb, when it is not this node
// and the cache is on an open node.
func (c *Cache[K, V]) remoteOwner(kb []byte) (string, bool) {
	if c.node == nil || c.node.closed.Load() {
		return "", false
	}
	owner, self := c.node.owner(kb)
	return owner, !self
}

// fillRemote fills a key owned by a peer: fetched from it, or loaded here when it cannot serve
// the key (see canFallBack).
func (c *Cache[K, V]) fillRemote(ctx context.Context, owner string, m *miss[K, V]) (V, error) {
	if c.node.healthy(owner) {
		v, err := c.fetch(ctx, owner, m)
		if err == nil || !c.canFallBack(ctx, owner, err) {
			return v, err
		}
	}
	return c.fallback(ctx, m)
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
	return expires == 0 || expires > c.now().UnixNano()
}

// load loads m's key here: on a node, taken over from its owner before the last peer-set change
// when it has it, else from the loader. The stored item keeps the value's wire form too, ready
// for peers.
func (c *Cache[K, V]) load(ctx context.Context, m *miss[K, V]) (item[V], error) {
	if c.node != nil {
		if it, ok := c.handoff(ctx, m); ok {
			return it, nil
		}
	}
	return c.loadNew(ctx, m)
}

// loadNew calls the loader for m's key and keeps the value in m.into.
func (c *Cache[K, V]) loadNew(ctx context.Context, m *miss[K, V]) (item[V], error) {
	c.loads.Add(1)
	if m.forPeer {
		c.cluster.peerLoads.Add(1)
	}
	v, ttl, err := c.callLoader(ctx, m)
	if err != nil {
		return item[V]{}, c.loadFailed(ctx, m, err)
	}
	return c.keep(m, v, ttl)
}

// fallback loads a key owned by a peer that could not serve it. The value goes to the hot store
// (or the main store when there is none): it is a copy of what the owner would hold.
func (c *Cache[K, V]) fallback(ctx context.Context, m *miss[K, V]) (V, error) {
	c.cluster.fallbackLoads.Add(1)
	if c.hot != nil {
		m.into = c.hot
	}
	it, err := c.loadNew(ctx, m)
	return it.v, err
}

// loadFailed counts a failed load, caches a "not found" when WithNegativeTTL asks for it, and
// returns the error to report.
func (c *Cache[K, V]) loadFailed(ctx context.Context, m *miss[K, V], err error) error {
	c.loadErrors.Add(1)
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		c.loadFailure(c.timeoutErr)
		return c.timeoutErr
	}
	c.loadFailure(err)
	if errors.Is(err, ErrNotFound) {
		c.notFound(m, err)
	}
	return err
}

// notFound keeps err, a loader's "not found", in m.into for the negative TTL (nothing when it is
// 0).
func (c *Cache[K, V]) notFound(m *miss[K, V], err error) {
	if c.negativeTTL <= 0 {
		if it, ok := c.liveOrStale(m.into, m.key); ok && it.staleMark() != 0 {
			m.into.Remove(m.key) // a refresh learnt that the key is gone: do not serve the old value
		}
		return
	}
	c.fresh.negativeEntries.Add(1)
	expires := c.deadline(c.negativeTTL)
	if m.into == c.hot {
		expires = c.hotDeadline(expires)
	}
	c.put(m.into, m, negative[V](err), int64(len(m.kb)+len(err.Error())), expires)
}

// keep measures a value just loaded and stores it in m.into with its TTL (0: the cache's),
// returning the item. A value over the per-value limit is returned but not stored.
func (c *Cache[K, V]) keep(m *miss[K, V], v V, ttl time.Duration) (item[V], error) {
	it, size, err := c.measure(v, len(m.kb))
	if err != nil {
		c.loadErrors.Add(1)
		c.loadFailure(err)
		return it, err
	}
	if size > c.maxValue {
		c.notCached(size)
		return it, nil
	}
	expires := c.deadline(ttl)
	if it.wire != nil {
		it.wire.expires = expires
	}
	if m.into == c.hot {
		it.wire = nil
		c.put(c.hot, m, it, size, c.hotDeadline(expires))
		return it, nil
	}
	it.markStale(c.staleAt(expires))
	c.put(m.into, m, it, size, c.hardDeadline(expires))
	return it, nil
}

// notCached counts a value not cached because its cost of size bytes is over the per-value
// limit, and logs it at most once a minute (by the cache's clock).
func (c *Cache[K, V]) notCached(size int64) {
	n := c.tooLarge.Add(1)
	if !c.tooLargeLog.Pass(c.now().UnixNano(), time.Minute) {
		return
	}
	c.log.Warn("value too large to cache: returned to its callers, not cached (logged at most once a minute)",
		slog.Int64("size", size), slog.Int64("limit", c.maxValue), slog.Int64("not_cached", n))
}

// put stores an item for m's key in s unless the cache is closed or the key was removed, set or
// cleared since m.st was taken, and leaves nothing behind if that happens while it stores. It
// reports whether it stored the item.
func (c *Cache[K, V]) put(s *store.Store[K, item[V]], m *miss[K, V], it item[V], size, expires int64) bool {
	if c.closed.Load() || !c.current(m.st) {
		return false
	}
	s.Set(m.key, it, size, expires) // false only for a size over the store's bound, which maxValue rules out
	if c.closed.Load() || !c.current(m.st) {
		s.Remove(m.key)
		return false
	}
	return true
}

// callLoader calls the user's loader for m's key, in a slot of WithMaxLoads, and turns a panic
// into a *PanicError; ttl is what the loader asked for with SetTTL (0: the cache's).
func (c *Cache[K, V]) callLoader(ctx context.Context, m *miss[K, V]) (v V, ttl time.Duration, err error) {
	box := new(entryTTL)
	ctx = context.WithValue(ctx, entryTTLKey{}, box)
	ctx, end := c.span(ctx, observe.Span{Step: observe.Load})
	if m.detach {
		v, err = c.loadDetached(ctx, m.key)
	} else {
		v, err = c.loadGated(ctx, m.key)
	}
	end(err)
	return v, box.get(), err
}

// loadGated calls the loader in a slot of WithMaxLoads, waiting for one while ctx lasts.
func (c *Cache[K, V]) loadGated(ctx context.Context, key K) (V, error) {
	if err := c.acquireLoad(ctx); err != nil {
		var zero V
		return zero, err
	}
	defer c.releaseLoad()
	return c.loadHere(ctx, key)
}

// loadDetached runs the loader (in a slot of WithMaxLoads) in a goroutine of its own and returns
// when ctx ends even if the loader ignores ctx; the loader's late result is then dropped, and its
// slot freed when it returns.
func (c *Cache[K, V]) loadDetached(ctx context.Context, key K) (V, error) {
	var zero V
	if d, ok := ctx.Deadline(); ok && ctx.Done() == nil {
		// A flight run by its caller has a deadline but no timer (fill.DoHere); the loader, and
		// the wait for its slot, get a context that really ends at the deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	if err := c.acquireLoad(ctx); err != nil {
		return zero, err
	}
	type result struct {
		v   V
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer c.releaseLoad()
		v, err := c.loadHere(ctx, key)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// acquireLoad takes a slot for one loader call (WithMaxLoads), waiting for one while ctx lasts;
// it returns ctx's error if ctx ends first. Every nil return is matched by one releaseLoad, when
// the loader has returned.
func (c *Cache[K, V]) acquireLoad(ctx context.Context) error {
	select {
	case c.loadSlots <- struct{}{}:
		return nil
	default:
	}
	c.loadWaits.Add(1)
	select {
	case c.loadSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// releaseLoad frees the slot of a loader call that has returned.
func (c *Cache[K, V]) releaseLoad() { <-c.loadSlots }

// loadHere calls the loader, records its latency, and turns a panic into a *PanicError.
func (c *Cache[K, V]) loadHere(ctx context.Context, key K) (v V, err error) {
	defer c.loaded(c.mono())
	defer c.recoverInto(&err, "loader")
	return c.loader.Load(ctx, key)
}

// loaded records the latency of a loader call that started at start (by mono).
func (c *Cache[K, V]) loaded(start time.Duration) { c.obs.loadLatency.Record(c.mono() - start) }

// measure returns the item for v and its cost: the sizer's answer or the encoded size, plus the
// key length, plus on a node the size of the wire form kept with it.
func (c *Cache[K, V]) measure(v V, keyLen int) (it item[V], n int64, err error) {
	it = item[V]{v: v}
	switch {
	case c.node != nil:
		it.wire, n, err = c.wire(v)
	case c.sizer != nil:
		n, err = c.size(v)
	default:
		n, err = c.encodedSize(v)
	}
	return it, n + int64(keyLen), err
}

// wire returns v's wire form on a node and its cost: the encoded size (or the sizer's answer),
// plus the compressed bytes kept with the value when it is compressed.
func (c *Cache[K, V]) wire(v V) (*wireForm, int64, error) {
	enc, err := c.encodeValue(v)
	if err != nil {
		return nil, 0, err
	}
	w := c.wireOf(enc)
	n := int64(len(enc))
	if c.sizer != nil {
		if n, err = c.size(v); err != nil {
			return nil, 0, err
		}
	}
	if w.Compressed {
		n += int64(len(w.Data)) // the decoded value and the compressed bytes
	}
	return w, n, nil
}

// wireOf returns the wire form of an encoded value: compressed from the node's threshold.
func (c *Cache[K, V]) wireOf(enc []byte) *wireForm {
	return &wireForm{Value: peer.Compress(enc, c.node.compress), rawLen: len(enc)}
}

// size calls the sizer, turning a panic into a *PanicError and a negative answer into an error
// matching ErrCodec.
func (c *Cache[K, V]) size(v V) (n int64, err error) {
	defer c.recoverInto(&err, "sizer")
	if n = c.sizer(v); n < 0 {
		return 0, fmt.Errorf("%w: cache %q: sizer returned %d", ErrCodec, c.name, n)
	}
	return n, nil
}

// encodedSize returns the length of v's encoding, encoded into a scratch buffer.
func (c *Cache[K, V]) encodedSize(v V) (n int64, err error) {
	defer c.recoverInto(&err, "codec")
	bp := c.buffer()
	defer c.buffers.Put(bp)
	b, err := c.values.Append((*bp)[:0], v)
	if cap(b) <= maxPooledBuffer {
		*bp = b[:0]
	}
	if err != nil {
		return 0, codecError(c.name, err)
	}
	return int64(len(b)), nil
}

// encodeValue encodes v with the value codec, turning a panic into a *PanicError.
func (c *Cache[K, V]) encodeValue(v V) (b []byte, err error) {
	defer c.recoverInto(&err, "codec")
	if b, err = c.values.Append(nil, v); err != nil {
		return nil, codecError(c.name, err)
	}
	return b, nil
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
