package groupcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

// clusterCounters count what a cache does as part of a cluster; all atomic.
type clusterCounters struct {
	handoffs         atomic.Int64
	handedOver       atomic.Int64
	remoteGets       atomic.Int64
	remoteErrors     atomic.Int64
	peerRequests     atomic.Int64
	peerLoads        atomic.Int64
	peerLookups      atomic.Int64 // main-store lookups (store.Get) made for peers' requests
	peerHits         atomic.Int64 // those that found an entry
	fallbackLoads    atomic.Int64
	bytesSent        atomic.Int64
	bytesSentRaw     atomic.Int64
	bytesReceived    atomic.Int64
	bytesReceivedRaw atomic.Int64
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

// fetch asks owner for the value of m's key, decodes it and may keep a copy in the hot store.
// Errors are translated (peerErr) and still hold the peer's, for canFallBack. With m.lb, the value is read into lb's memory, and lb keeps the memory to reuse once the caller
// is done with the value (see reuse). After an error lb must not be reused: a reply abandoned
// halfway may still be read into it.
func (c *Cache[K, V]) fetch(ctx context.Context, owner string, m *miss[K, V]) (V, error) {
	var zero V
	c.cluster.remoteGets.Add(1)
	var val peer.Value
	var err error
	ctx, end := c.span(ctx, observe.Span{Step: observe.Fetch, Peer: owner})
	start := c.mono()
	at := c.now().UnixNano() // the value's lifetime counts from here (see peerExpiry)
	if m.lb != nil {
		val, err = c.node.client.GetInto(ctx, owner, c.name, m.kb, m.lb.wire[:0])
	} else {
		val, err = c.node.client.Get(ctx, owner, c.name, m.kb)
	}
	c.fetched(ctx, owner, start, err)
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		err = c.peerErr(owner, err)
		c.remoteNotFound(m, err)
		end(err)
		return zero, err
	}
	v, err := c.received(owner, m, val, at)
	end(err)
	return v, err
}

// received decodes a value fetched from owner for m's key, asked for at at, and may keep a copy
// in the hot store (for the lifetime the owner sent, bounded by peerExpiry and the hot TTL).
// With m.lb, a compressed value is inflated into lb's memory, and lb learns what it may reuse.
func (c *Cache[K, V]) received(owner string, m *miss[K, V], val peer.Value, at int64) (V, error) {
	var zero V
	c.cluster.bytesReceived.Add(int64(len(val.Data)))
	var dst []byte
	if m.lb != nil {
		dst = m.lb.raw
	}
	// The client has checked the value's length (decoded, when compressed) against its limit.
	raw, err := val.RawInto(dst, math.MaxInt)
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		c.peerError(owner, err)
		return zero, c.peerErr(owner, err)
	}
	c.cluster.bytesReceivedRaw.Add(int64(len(raw)))
	v, err := c.decode(raw) // raw is ours: fresh from the transport, or just decompressed
	if err != nil {
		c.cluster.remoteErrors.Add(1)
		err = fmt.Errorf("%w (value from %s)", err, owner)
		c.peerError(owner, err)
		return zero, err
	}
	h := xxh3.Hash(m.kb)
	c.hotKeys.See(h, m.key)
	kept, err := c.promote(m, h, v, raw, c.peerExpiry(at, val.TTL))
	if err != nil {
		return zero, err
	}
	if m.lb != nil {
		m.lb.reuse(val, raw, kept)
		m.lb.shared = nil
		if _, owned := c.values.(codec.OwnedDecoder[V]); owned && !kept {
			m.lb.shared = raw
		}
	}
	return v, nil
}

// receivedShared is received for a value whose bytes alias a buffer shared with other values (a
// batch reply): a codec that may keep the bytes it decodes gets a copy.
func (c *Cache[K, V]) receivedShared(owner string, m *miss[K, V], val peer.Value, at int64) (V, error) {
	if _, owned := c.values.(codec.OwnedDecoder[V]); owned && !val.Compressed {
		val.Data = bytes.Clone(val.Data)
	}
	return c.received(owner, m, val, at)
}

// promote keeps a copy of a value fetched from its owner (raw, its encoding, expiring at expires)
// in the hot store when the promoter asks for it, and reports whether it did; h is the xxh3
// hash of the key's bytes. A value over the per-value limit is not kept (and counted as such).
func (c *Cache[K, V]) promote(m *miss[K, V], h uint64, v V, raw []byte, expires int64) (bool, error) {
	if c.hot == nil || !c.live(expires) {
		return false, nil
	}
	size := int64(len(raw) + len(m.kb))
	if size > c.maxValue {
		c.notCached(size)
		return false, nil
	}
	if ok, err := c.promotes(h, len(raw)); !ok || err != nil {
		return false, err
	}
	c.put(c.hot, m, item[V]{v: v}, size, c.hotDeadline(expires))
	return true, nil
}

// promotes asks the promoter about the key whose bytes hash (xxh3) to h, turning a panic into a
// *PanicError.
func (c *Cache[K, V]) promotes(h uint64, size int) (ok bool, err error) {
	defer c.recoverInto(&err, "promoter")
	return c.promoter(h, size), nil
}

// remoteNotFound keeps an owner's "not found" answer for m's key (err, translated) in the hot
// store for the negative TTL (bounded by the hot TTL), when WithNegativeTTL asks for it.
func (c *Cache[K, V]) remoteNotFound(m *miss[K, V], err error) {
	if c.hot == nil || c.negativeTTL <= 0 || !errors.Is(err, ErrNotFound) {
		return
	}
	c.fresh.negativeEntries.Add(1)
	c.put(c.hot, m, negative[V](err), int64(len(m.kb)+len(err.Error())), c.hotDeadline(c.deadline(c.negativeTTL)))
}

// decode decodes a peer's value from a buffer this cache owns, turning a codec panic into a
// *PanicError. A codec that can keep the buffer (codec.OwnedDecoder) saves a copy.
func (c *Cache[K, V]) decode(raw []byte) (v V, err error) {
	defer c.recoverInto(&err, "codec")
	if od, ok := c.values.(codec.OwnedDecoder[V]); ok {
		v, err = od.DecodeOwned(raw)
	} else {
		v, err = c.values.Decode(raw)
	}
	if err != nil {
		return v, codecError(c.name, err)
	}
	return v, nil
}

// canFallBack reports whether a failed fetch from owner should be answered by a local load, and
// marks the owner down for the back-off period when the failure was the network's. err is the
// peer's error, translated (peerErr) or not.
func (c *Cache[K, V]) canFallBack(ctx context.Context, owner string, err error) bool {
	switch {
	case ctx.Err() != nil:
		return false // the callers left or the load timeout passed: not the peer's doing
	case peerDown(err), peer.StatusOf(err) == peer.StatusForbidden:
		// A refusal of this node (a wrong secret or certificate, an authorizer) lasts: skip the
		// peer for the back-off period as if it were down. So does a peer that is leaving.
		c.node.markDown(owner, err)
		return true
	case errors.Is(err, peer.ErrProtocol), fallbackStatus(peer.StatusOf(err)):
		c.node.warnAbout(owner, "peer could not serve, loading locally", slog.String("cache", c.name), slog.Any("err", err))
		return true
	}
	// Not found, the owner's own load error, too large, a value this codec cannot decode: the
	// same would happen here, or the caller must see it.
	return false
}

// peerDown reports a failure after which a peer is skipped for the back-off period: it is
// unreachable or slow (peer.ErrUnavailable), or leaving the cluster (peer.StatusLeaving).
func peerDown(err error) bool {
	return errors.Is(err, peer.ErrUnavailable) || peer.StatusOf(err) == peer.StatusLeaving
}

// fallbackStatus reports a peer's answer after which the key is loaded here: the owner could not
// serve it (overloaded, without the cache, refusing the request or its version).
func fallbackStatus(st peer.Status) bool {
	switch st {
	case peer.StatusOverloaded, peer.StatusUnknownCache, peer.StatusBadRequest, peer.StatusBadVersion:
		return true
	}
	return false
}

// peerWords returns what a peer said in err (the message of its *peer.Error), cut to 200 bytes,
// with anything unprintable escaped: a peer's words, which may be hostile, go into errors and
// logs short and harmless.
func peerWords(err error) string {
	var pe *peer.Error
	if !errors.As(err, &pe) || pe.Msg == "" {
		return ""
	}
	msg := pe.Msg
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "..."
	}
	q := strconv.QuoteToGraphic(msg)
	return q[1 : len(q)-1]
}

// peerErr translates the error of a request to peer to into this package's names: what the peer
// answered (peer.StatusOf), or the failure of the exchange (peer.ErrUnavailable, ErrProtocol).
// The peer's error stays in the chain (canFallBack reads it), except for "not found", which
// keeps only the owner's words (its loader's message). Other errors (nil, translated already, this package's) are returned as
// they are. This is the one place where peer errors become this package's.
func (c *Cache[K, V]) peerErr(to string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnavailable) {
		return err
	}
	switch st := peer.StatusOf(err); {
	case st == peer.StatusNotFound:
		if msg := peerWords(err); msg != "" {
			return fmt.Errorf("%w: cache %q on %s: %s", ErrNotFound, c.name, to, msg)
		}
		return fmt.Errorf("%w: cache %q on %s", ErrNotFound, c.name, to)
	case st == peer.StatusTooLarge:
		return fmt.Errorf("%w: cache %q on %s: %w", ErrTooLarge, c.name, to, err)
	case st != peer.StatusOK, errors.Is(err, peer.ErrUnavailable), errors.Is(err, peer.ErrProtocol):
		// Unreachable, timed out, overloaded, without the cache, refusing the request, or the
		// owner's own load failed (StatusInternal, with its message).
		return fmt.Errorf("%w: cache %q on %s: %w", ErrUnavailable, c.name, to, err)
	}
	return err
}

// handoff asks the owner of m's key before the last peer-set change for the value, so that a node
// that has just become the owner takes the value over instead of loading it, and stores it. It
// reports false when there is no such peer or the peer does not hold the value.
func (c *Cache[K, V]) handoff(ctx context.Context, m *miss[K, V]) (item[V], bool) {
	prev, ok := c.previousOwner(m.kb)
	if !ok {
		return item[V]{}, false
	}
	at := c.now().UnixNano()
	sctx, end := c.span(ctx, observe.Span{Step: observe.Handoff, Peer: prev})
	val, err := c.node.client.Peek(sctx, prev, c.name, m.kb)
	end(err)
	if err != nil {
		c.peerError(prev, err)
		if peerDown(err) && ctx.Err() == nil {
			c.node.markDown(prev, err) // a departed owner costs one failed peek per back-off
		}
		return item[V]{}, false
	}
	return c.takeOver(m, val, at)
}

// takeOver decodes a value handed over by the previous owner of m's key, asked for at at, and
// stores it in the main store, its expiry bounded by peerExpiry. val's bytes must be the cache's
// to keep.
func (c *Cache[K, V]) takeOver(m *miss[K, V], val peer.Value, at int64) (item[V], bool) {
	expires := c.peerExpiry(at, val.TTL) // kept with the value, and served to peers as such
	if !c.live(expires) {
		return item[V]{}, false
	}
	val.TTL = 0
	raw, err := val.Raw(int(c.maxValue))
	if err != nil {
		return item[V]{}, false
	}
	v, err := c.decode(raw)
	if err != nil {
		return item[V]{}, false
	}
	c.cluster.handoffs.Add(1)
	c.cluster.bytesReceived.Add(int64(len(val.Data)))
	c.cluster.bytesReceivedRaw.Add(int64(len(raw)))
	it := item[V]{v: v, wire: &wireForm{Value: val, rawLen: len(raw), expires: expires}}
	it.markStale(c.staleAt(expires))
	size := int64(len(raw) + len(m.kb))
	if val.Compressed {
		size += int64(len(val.Data))
	}
	if size <= c.maxValue {
		c.put(c.store, m, it, size, c.hardDeadline(expires))
	}
	return it, true
}

// handoffMany is handoff for the keys idx of a batch, with one request per previous owner. It
// returns the keys that were not handed over.
func (c *Cache[K, V]) handoffMany(ctx context.Context, b *batch[K, V], idx []int) []int {
	if !c.node.handingOff() {
		return idx
	}
	var rest []int
	byPrev := map[string][]int{}
	for _, i := range idx {
		if prev, ok := c.previousOwner(b.ms[i].kb); ok {
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
			left := c.takeOverMany(ctx, prev, b, idx)
			mu.Lock()
			rest = append(rest, left...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return rest
}

// takeOverMany asks prev, the previous owner of the keys idx of b, for their values in requests of
// at most the batch size, and takes over those it has. It returns the keys it did not take over.
func (c *Cache[K, V]) takeOverMany(ctx context.Context, prev string, b *batch[K, V], idx []int) []int {
	var left []int
	pos := 0 // where chunk starts in idx
	for chunk, kbs := range b.chunks(idx, c.batchSize) {
		at := c.now().UnixNano()
		sctx, end := c.span(ctx, observe.Span{Step: observe.Handoff, Peer: prev, Keys: len(kbs)})
		rs, err := c.node.client.PeekMany(sctx, prev, c.name, kbs)
		end(err)
		if err != nil {
			c.peerError(prev, err)
			if peerDown(err) && ctx.Err() == nil {
				c.node.markDown(prev, err)
				return append(left, idx[pos:]...) // this chunk and the ones after it
			}
			left = append(left, chunk...)
			pos += len(chunk)
			continue
		}
		pos += len(chunk)
		for j, i := range chunk {
			if rs[j].Err == nil {
				val := rs[j].Value
				val.Data = bytes.Clone(val.Data) // it aliases the reply's buffer
				if it, ok := c.takeOver(&b.ms[i], val, at); ok {
					b.set(i, it.v, nil)
					continue
				}
			}
			left = append(left, i)
		}
	}
	return left
}

// newFrequencyPromoter returns the default promoter (see WithPromoter): it keeps a count-min
// sketch of recent fetches and promotes a key from its second fetch on. Counts are halved
// periodically so that keys that were popular long ago do not stay promotable for ever.
func newFrequencyPromoter() *frequencyPromoter {
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

func (p *frequencyPromoter) promote(h uint64, _ int) bool {
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
