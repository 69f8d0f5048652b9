package groupcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/peer"
)

// clusterCounters count what a cache does as part of a cluster; all atomic.
type clusterCounters struct {
	handoffs         atomic.Int64
	remoteGets       atomic.Int64
	remoteErrors     atomic.Int64
	peerRequests     atomic.Int64
	peerLoads        atomic.Int64
	fallbackLoads    atomic.Int64
	bytesSent        atomic.Int64
	bytesSentRaw     atomic.Int64
	bytesReceived    atomic.Int64
	bytesReceivedRaw atomic.Int64
}

// fetch asks owner for the value of key, decodes it and may keep a copy in the hot store.
func (c *Cache[K, V]) fetch(ctx context.Context, owner string, key K, kb []byte, st stamp) (V, error) {
	return c.fetchInto(ctx, owner, key, kb, st, nil)
}

// lentBuffers is the memory a View reads a remote value into, reused from View to View: wire
// for the bytes as they come, raw for a compressed value's inflated bytes. shared is, after a
// fetch, the bytes the value was decoded from when the value may share their memory (nil when it
// is in memory of its own).
type lentBuffers struct{ wire, raw, shared []byte }

// reuse keeps for the next View the larger of each buffer and the memory the value came in,
// except memory the hot store now holds (kept) and buffers over maxLentBuffer.
func (lb *lentBuffers) reuse(val peer.Value, raw []byte, kept bool) {
	if cap(val.Data) > cap(lb.wire) {
		lb.wire = val.Data[:0]
	}
	if val.Compressed && cap(raw) > cap(lb.raw) {
		lb.raw = raw[:0]
	}
	if kept {
		if val.Compressed {
			lb.raw = nil
		} else {
			lb.wire = nil
		}
	}
	if cap(lb.wire) > maxLentBuffer {
		lb.wire = nil
	}
	if cap(lb.raw) > maxLentBuffer {
		lb.raw = nil
	}
}

// fetchInto is fetch, reading the value into lb's memory when lb is not nil and the transport
// can (peer.IntoGetter); lb then keeps the memory to reuse once the caller is done with the value
// (see reuse). After an error lb must not be reused: a reply abandoned halfway may still be read
// into it.
func (c *Cache[K, V]) fetchInto(ctx context.Context, owner string, key K, kb []byte, st stamp, lb *lentBuffers) (V, error) {
	var zero V
	c.cluster.remoteGets.Add(1)
	var val peer.Value
	var err error
	if lb != nil && c.node.into != nil {
		val, err = c.node.into.GetInto(ctx, owner, c.name, kb, lb.wire[:0])
	} else {
		lb = nil
		val, err = c.node.transport.Get(ctx, owner, c.name, kb)
	}
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		if errors.Is(err, peer.ErrNotFound) {
			// The owner's word is final: no local load.
			err = fmt.Errorf("groupcache: cache %q: owner %s: %w", c.name, owner, ErrNotFound)
			c.remoteNotFound(key, kb, err, st)
		}
		return zero, err
	}
	return c.received(owner, key, kb, val, false, st, lb)
}

// received decodes a value fetched from owner and may keep a copy in the hot store. With shared,
// the value's bytes are copied before a codec that keeps its input could keep them. With lb, a
// compressed value is inflated into lb's memory, and lb learns what it may reuse.
func (c *Cache[K, V]) received(owner string, key K, kb []byte, val peer.Value, shared bool, st stamp, lb *lentBuffers) (V, error) {
	var zero V
	c.cluster.bytesReceived.Add(int64(len(val.Data)))
	var dst []byte
	if lb != nil {
		dst = lb.raw
	}
	raw, err := val.RawInto(dst, int(c.maxValue))
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		return zero, fmt.Errorf("groupcache: cache %q: value from %s: %w", c.name, owner, err)
	}
	c.cluster.bytesReceivedRaw.Add(int64(len(raw)))
	var v V
	if shared && !val.Compressed {
		v, err = c.decodeCopy(raw) // raw aliases a buffer shared by other values
	} else {
		v, err = c.decode(raw) // raw is ours: fresh from the transport, or just decompressed
	}
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		return zero, fmt.Errorf("groupcache: cache %q: value from %s: %w", c.name, owner, err)
	}
	kept := false
	if c.hot != nil && c.live(val.Expires) && c.promoter.Promote(xxh3.Hash(kb), len(raw)) {
		c.put(c.hot, key, item[V]{v: v}, int64(len(raw)+len(kb)), c.hotDeadline(val.Expires), st)
		kept = true
	}
	if lb != nil {
		lb.reuse(val, raw, kept)
		lb.shared = nil
		if _, owned := c.values.(codec.OwnedDecoder[V]); owned && !kept {
			lb.shared = raw
		}
	}
	return v, nil
}

// remoteNotFound keeps an owner's "not found" answer in the hot store for the negative TTL
// (bounded by the hot TTL), when WithNegativeTTL asks for it.
func (c *Cache[K, V]) remoteNotFound(key K, kb []byte, err error, st stamp) {
	if c.hot == nil || c.negativeTTL <= 0 {
		return
	}
	c.fresh.negativeEntries.Add(1)
	c.put(c.hot, key, negative[V](err), int64(len(kb)+len(err.Error())), c.hotDeadline(c.deadline(c.negativeTTL)), st)
}

// decode decodes a peer's value from a buffer this cache owns, turning a codec panic into a
// *PanicError. A codec that can keep the buffer (codec.OwnedDecoder) saves a copy.
func (c *Cache[K, V]) decode(raw []byte) (v V, err error) {
	defer c.recoverInto(&err, "codec")
	if od, ok := c.values.(codec.OwnedDecoder[V]); ok {
		return od.DecodeOwned(raw)
	}
	return c.values.Decode(raw)
}

// decodeCopy decodes a peer's value from a buffer this cache does not own (the codec may not keep
// it), turning a codec panic into a *PanicError.
func (c *Cache[K, V]) decodeCopy(raw []byte) (v V, err error) {
	defer c.recoverInto(&err, "codec")
	return c.values.Decode(raw)
}

// canFallBack reports whether a failed fetch from owner should be answered by a local load, and
// marks the owner down for the back-off period when the failure was the network's.
func (c *Cache[K, V]) canFallBack(ctx context.Context, owner string, err error) bool {
	switch {
	case errors.Is(err, peer.ErrUnavailable):
		c.node.markDown(owner, err)
		return ctx.Err() == nil // past the load timeout the flight is over anyway
	case errors.Is(err, peer.ErrOverloaded), errors.Is(err, peer.ErrUnknownCache),
		errors.Is(err, peer.ErrProtocol), errors.Is(err, peer.ErrVersion),
		errors.Is(err, peer.ErrBadRequest), errors.Is(err, peer.ErrClosed):
		c.log.Warn("peer could not serve, loading locally", slog.String("peer", owner), slog.Any("err", err))
		return ctx.Err() == nil
	}
	// Not found, the owner's own load error, too large, a value this codec cannot decode: the
	// same would happen here, or the caller must see it.
	return false
}

// fallback loads a key owned by an unavailable peer. The value goes to the hot store (or the main
// store when there is none): it is a copy of what the owner would hold.
func (c *Cache[K, V]) fallback(ctx context.Context, key K, kb []byte, detach bool, st stamp) (V, error) {
	c.cluster.fallbackLoads.Add(1)
	if c.hot == nil {
		it, err := c.load(ctx, key, kb, false, detach, st)
		return it.v, err
	}
	c.loads.Add(1)
	v, ttl, err := c.callLoader(ctx, key, detach)
	if err != nil {
		return v, c.loadFailed(ctx, c.hot, key, kb, err, st)
	}
	it, err := c.keep(c.hot, key, kb, v, ttl, st)
	return it.v, err
}

// serve answers a peer's request for key bytes kb: from the main store, or by loading the value
// here. The owner never forwards a request, even when its ring says another peer owns the key, so
// two nodes that briefly disagree on the ring cannot bounce a request between them.
func (c *Cache[K, V]) serve(ctx context.Context, kb []byte) (peer.Value, error) {
	if c.closed.Load() {
		return peer.Value{}, fmt.Errorf("cache %q closed: %w", c.name, peer.ErrUnknownCache)
	}
	c.cluster.peerRequests.Add(1)
	if len(kb) > c.maxKey {
		return peer.Value{}, fmt.Errorf("%w: key of %d bytes over the limit of %d", peer.ErrBadRequest, len(kb), c.maxKey)
	}
	key, err := c.keys.Decode(kb)
	if err != nil {
		return peer.Value{}, fmt.Errorf("%w: %w", peer.ErrBadRequest, err)
	}
	if w, err, ok := c.served(key); ok {
		return w, err
	}
	kb = bytes.Clone(kb) // the load may outlive this request
	var loaded *wireForm
	v, err, shared := c.flights.Do(ctx, key, func(lctx context.Context) (V, error) {
		st := c.stamp(kb)
		if it, ok := c.liveItem(key); ok {
			loaded = it.wire
			return it.v, it.failure()
		}
		it, err := c.load(lctx, key, kb, true, false, st)
		loaded = it.wire
		return it.v, err
	})
	if shared {
		c.dedup.Add(1)
	}
	if err = c.flightErr(err); err != nil {
		return peer.Value{}, wireError(err)
	}
	if !shared && loaded != nil {
		return c.sent(loaded), nil
	}
	return c.reply(key, v)
}

// serveInline answers a peer's request for key bytes kb if it can without waiting: a refusal, or a
// hit (see served). ok false: it did nothing, serve answers.
func (c *Cache[K, V]) serveInline(kb []byte) (v peer.Value, ok bool, err error) {
	if c.closed.Load() || len(kb) > c.maxKey {
		return peer.Value{}, false, nil // serve says why
	}
	key, err := c.keys.Decode(kb)
	if err != nil {
		return peer.Value{}, false, nil
	}
	if v, err, ok = c.served(key); ok {
		c.cluster.peerRequests.Add(1)
	}
	return v, ok, err
}

// served answers a peer's request from the main store: ok reports a hit (a value, which may be
// stale and then starts a refresh, or a cached "not found").
func (c *Cache[K, V]) served(key K) (peer.Value, error, bool) {
	it, ok := c.store.Get(key)
	if !ok {
		return peer.Value{}, nil, false
	}
	if err := it.failure(); err != nil {
		c.fresh.negativeHits.Add(1)
		return peer.Value{}, wireError(err), true
	}
	if it.wire == nil {
		return peer.Value{}, nil, false
	}
	if mark := it.staleMark(); mark != 0 && c.clock.Now().UnixNano() >= mark {
		c.fresh.staleHits.Add(1)
		c.refresh(key)
	}
	return c.sent(it.wire), nil, true
}

// reply returns the wire form of v, a value a flight produced without handing its wire form over:
// the stored one, or else v encoded for this reply (a flight that fetched or fell back while the
// ring disagreed keeps no wire form).
func (c *Cache[K, V]) reply(key K, v V) (peer.Value, error) {
	if it, ok := c.liveItem(key); ok && it.wire != nil {
		return c.sent(it.wire), nil
	}
	enc, err := c.encodeValue(v)
	if err != nil {
		return peer.Value{}, err
	}
	return c.sent(&wireForm{Value: peer.Compress(enc, c.node.compress), rawLen: len(enc)}), nil
}

// wireError maps a load's error to what the transport answers for it.
func wireError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: %w", peer.ErrNotFound, err)
	case errors.Is(err, ErrTooLarge):
		return fmt.Errorf("%w: %w", peer.ErrTooLarge, err)
	}
	return err
}

// peek answers a peer's hand-off request: the value of key bytes kb if the main store holds it,
// peer.ErrNotFound otherwise. It never loads.
func (c *Cache[K, V]) peek(kb []byte) (peer.Value, error) {
	if c.closed.Load() {
		return peer.Value{}, fmt.Errorf("cache %q closed: %w", c.name, peer.ErrUnknownCache)
	}
	key, err := c.keys.Decode(kb)
	if err != nil {
		return peer.Value{}, fmt.Errorf("%w: %w", peer.ErrBadRequest, err)
	}
	it, ok := c.liveItem(key)
	if !ok || it.wire == nil { // a cached "not found" is not handed off: the new owner asks again
		return peer.Value{}, peer.ErrNotFound
	}
	return c.sent(it.wire), nil
}

// peekMany is peek for many keys.
func (c *Cache[K, V]) peekMany(kbs [][]byte) ([]peer.Result, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("cache %q closed: %w", c.name, peer.ErrUnknownCache)
	}
	res := make([]peer.Result, len(kbs))
	for i, kb := range kbs {
		res[i].Value, res[i].Err = c.peek(kb)
	}
	return res, nil
}

// handoff asks the key's owner before the last peer-set change for the value, so that a node that
// has just become the owner takes the value over instead of loading it, and stores it. It reports
// false when there is no such peer or the peer does not hold the value.
func (c *Cache[K, V]) handoff(ctx context.Context, key K, kb []byte, st stamp) (item[V], bool) {
	prev, p, ok := c.node.previousOwner(kb)
	if !ok {
		return item[V]{}, false
	}
	val, err := p.Peek(ctx, prev, c.name, kb)
	if err != nil {
		if errors.Is(err, peer.ErrUnavailable) {
			c.node.markDown(prev, err) // a departed owner costs one failed peek per back-off
		}
		return item[V]{}, false
	}
	return c.takeOver(key, kb, val, false, st)
}

// takeOver decodes a value handed over by a key's previous owner and stores it in the main store.
// With shared, val's bytes alias a buffer shared with other values, and are copied.
func (c *Cache[K, V]) takeOver(key K, kb []byte, val peer.Value, shared bool, st stamp) (item[V], bool) {
	if !c.live(val.Expires) {
		return item[V]{}, false
	}
	raw, err := val.Raw(int(c.maxValue))
	if err != nil {
		return item[V]{}, false
	}
	if shared { // raw is fresh when it was decompressed
		if val.Compressed {
			val.Data = bytes.Clone(val.Data)
		} else {
			raw = bytes.Clone(raw)
			val.Data = raw
		}
	}
	v, err := c.decode(raw)
	if err != nil {
		return item[V]{}, false
	}
	c.cluster.handoffs.Add(1)
	c.cluster.bytesReceived.Add(int64(len(val.Data)))
	c.cluster.bytesReceivedRaw.Add(int64(len(raw)))
	it := item[V]{v: v, wire: &wireForm{Value: val, rawLen: len(raw)}}
	it.markStale(c.staleAt(val.Expires))
	size := int64(len(raw) + len(kb))
	if val.Compressed {
		size += int64(len(val.Data))
	}
	if size <= c.maxValue {
		c.put(c.store, key, it, size, c.hardDeadline(val.Expires), st)
	}
	return it, true
}

// handoffMany is handoff for the keys idx of a batch, with one request per previous owner when
// the transport can peek in batches. It returns the keys that were not handed over.
func (c *Cache[K, V]) handoffMany(ctx context.Context, b *batch[K, V], idx []int) []int {
	if !c.node.handingOff() {
		return idx
	}
	bp, ok := c.node.transport.(batchPeeker)
	if !ok {
		// One peek per key, a few at once.
		var mu sync.Mutex
		var rest []int
		c.parallel(idx, func(i int) {
			if it, ok := c.handoff(ctx, b.ks[i], b.kbs[i], b.sts[i]); ok {
				b.set(i, it.v, nil)
				return
			}
			mu.Lock()
			rest = append(rest, i)
			mu.Unlock()
		})
		return rest
	}
	var rest []int
	byPrev := map[string][]int{}
	for _, i := range idx {
		if prev, _, ok := c.node.previousOwner(b.kbs[i]); ok {
			byPrev[prev] = append(byPrev[prev], i)
		} else {
			rest = append(rest, i)
		}
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for prev, idx := range byPrev {
		wg.Go(func() {
			var left []int
			down := false
			for chunk, kbs := range b.chunks(idx, c.batchSize) {
				if down {
					left = append(left, chunk...)
					continue
				}
				rs, err := bp.PeekMany(ctx, prev, c.name, kbs)
				if err != nil {
					if errors.Is(err, peer.ErrUnavailable) {
						c.node.markDown(prev, err)
						down = true
					}
					left = append(left, chunk...)
					continue
				}
				for j, i := range chunk {
					if rs[j].Err == nil {
						if it, ok := c.takeOver(b.ks[i], b.kbs[i], rs[j].Value, true, b.sts[i]); ok {
							b.set(i, it.v, nil)
							continue
						}
					}
					left = append(left, i)
				}
			}
			mu.Lock()
			rest = append(rest, left...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return rest
}

// batchPeeker is implemented by transports that can peek many keys in one request (peer.Client
// does).
type batchPeeker interface {
	PeekMany(ctx context.Context, peer, cache string, keys [][]byte) ([]peer.Result, error)
}

// sent counts the bytes of a reply to a peer and returns its wire value.
func (c *Cache[K, V]) sent(w *wireForm) peer.Value {
	c.cluster.bytesSent.Add(int64(len(w.Data)))
	c.cluster.bytesSentRaw.Add(int64(w.rawLen))
	return w.Value
}

// encodeValue encodes v with the value codec, turning a panic into a *PanicError.
func (c *Cache[K, V]) encodeValue(v V) (b []byte, err error) {
	defer c.recoverInto(&err, "codec")
	if b, err = c.values.Append(nil, v); err != nil {
		return nil, fmt.Errorf("groupcache: cache %q: %w", c.name, err)
	}
	return b, nil
}

// Promoter decides which values fetched from their owners are kept in the hot store, so that a
// popular key owned by a peer is not fetched on every Get. It must be safe for concurrent use and
// cheap: it is called once per remote fetch.
type Promoter interface {
	// Promote reports whether to keep a copy of the value of the key whose bytes hash (xxh3) to
	// keyHash; size is the value's encoded size.
	Promote(keyHash uint64, size int) bool
}

// PromoterFunc adapts a function to the Promoter interface.
type PromoterFunc func(keyHash uint64, size int) bool

// Promote calls f(keyHash, size).
func (f PromoterFunc) Promote(keyHash uint64, size int) bool { return f(keyHash, size) }

// NewFrequencyPromoter returns the default Promoter: it keeps a count-min sketch of recent fetches
// and promotes a key from its second fetch on. Counts are halved periodically so that keys that
// were popular long ago do not stay promotable for ever. A one-off key is therefore never copied,
// and a key fetched again soon is.
func NewFrequencyPromoter() Promoter {
	return &frequencyPromoter{}
}

const (
	sketchRows  = 4
	sketchWidth = 1 << 12 // counters per row
	// After sketchReset increments all counters are halved.
	sketchReset = 10 * sketchWidth
	// promoteAt is the estimated count (this fetch included) from which a key is promoted.
	promoteAt = 2
)

type frequencyPromoter struct {
	mu        sync.Mutex
	counts    [sketchRows][sketchWidth]uint8 // guarded by mu
	additions int                            // guarded by mu
}

func (p *frequencyPromoter) Promote(h uint64, _ int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	var idx [sketchRows]uint32
	est := uint8(255)
	for r := range sketchRows {
		// Each row takes its own 16 bits of the (already well mixed) xxh3 hash, remixed per row.
		idx[r] = uint32((h>>(16*r))^(h*uint64(2*r+1)>>40)) & (sketchWidth - 1)
		est = min(est, p.counts[r][idx[r]])
	}
	if est < 255 {
		est++
		for r := range sketchRows { // conservative update: raise only the counters at the minimum
			if p.counts[r][idx[r]] < est {
				p.counts[r][idx[r]] = est
			}
		}
	}
	if p.additions++; p.additions >= sketchReset {
		p.additions = 0
		for r := range p.counts {
			for i := range p.counts[r] {
				p.counts[r][i] >>= 1
			}
		}
	}
	return est >= promoteAt
}
