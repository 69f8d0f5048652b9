package groupcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/peer"
)

// A node hands its values over to the nodes that own their keys next, so that a rolling restart
// does not empty the cache node by node onto the loaders: a node that leaves (Shutdown) offers
// each value it holds to the node that owns the key once it is gone, and when a peer joins, every
// node offers the values whose keys the newcomer owns now to it. The offers go most valuable
// first (store.Ranked), within the hand-off window's half. A receiver stores an offered value only
// if it owns the key or will once the key's owner is gone, holds no live value for it, and has not
// seen it written within the hand-off window: the offer was read before it was sent, and a write
// that reached the receiver meanwhile must not be undone (docs/design.md, "Warm rolling restart").

// handOverWorkers is how many offers a cache has in flight at once while it hands values over.
const handOverWorkers = 16

// offer is one value to hand over.
type offer struct {
	to  string
	kb  []byte
	val peer.Value
}

// handOver offers the cache's live values whose keys next maps to another node (ok true) to that
// node, most valuable first, until they are all offered or ctx ends. A node that fails an offer
// is offered nothing more.
func (c *Cache[K, V]) handOver(ctx context.Context, next func(kb []byte) (string, bool)) {
	offers := make(chan offer)
	var failed sync.Map // node -> true
	var wg sync.WaitGroup
	for range handOverWorkers {
		wg.Go(func() {
			for o := range offers {
				if _, bad := failed.Load(o.to); !bad && !c.offer(ctx, o) {
					failed.Store(o.to, true)
				}
			}
		})
	}
	defer wg.Wait()
	defer close(offers)
	for key, it := range c.store.Ranked(c.store.MaxBytes()) {
		if it.wire == nil || !c.live(it.wire.expires) {
			continue // a cached "not found", or a value past its TTL
		}
		kb, err := c.encodeKey(key)
		if err != nil {
			continue
		}
		to, ok := next(kb)
		if !ok {
			continue
		}
		if _, bad := failed.Load(to); bad {
			continue
		}
		select {
		case offers <- offer{to: to, kb: kb, val: c.onWire(it.wire)}:
		case <-ctx.Done():
			return
		}
	}
}

// offer sends o and reports whether its receiver answered.
func (c *Cache[K, V]) offer(ctx context.Context, o offer) bool {
	if ctx.Err() != nil || !c.node.healthy(o.to) {
		return false
	}
	if err := c.node.client.Offer(ctx, o.to, c.name, o.kb, o.val); err != nil {
		c.cluster.remoteErrors.Add(1)
		c.peerFailed(ctx, o.to, err)
		return false
	}
	c.cluster.handedOver.Add(1)
	c.cluster.bytesSent.Add(int64(len(o.val.Data)))
	return true
}

// offerFromPeer stores a value a peer hands over (OpOffer) if this node owns its key, or will once
// the key's owner is gone, holds no live value for it, and has not seen it written within the
// hand-off window; otherwise it declines it. A write that reaches this node while the value is
// stored wins, as it does over a load (stamp). The peer is answered nil either way.
func (c *Cache[K, V]) offerFromPeer(kb []byte, val peer.Value) error {
	if c.closed.Load() {
		return c.errGone()
	}
	st := c.stamp(kb) // first: a write after it keeps the value from being stored
	if c.recent == nil || c.node.leaving.Load() || !c.node.takesOver(kb) || c.recent.wrote(kb, c.now().UnixNano()) {
		return nil
	}
	key, it, size, err := c.fromPeer(kb, val)
	if err != nil {
		return err
	}
	if _, held := c.liveItem(key); held || !c.live(it.wire.expires) {
		return nil
	}
	it.markStale(c.staleAt(it.wire.expires))
	m := c.newMiss(key, kb)
	m.st = st
	c.put(c.store, &m, it, size, c.hardDeadline(it.wire.expires))
	c.cluster.handoffs.Add(1)
	c.cluster.bytesReceived.Add(int64(len(val.Data)))
	c.cluster.bytesReceivedRaw.Add(int64(it.wire.rawLen))
	return nil
}

// takesOver reports whether this node owns the key whose bytes are kb, or would once the key's
// owner is gone: a value a leaving owner hands over goes to the node its ring names next, which
// a node that has not yet dropped the owner from its ring must accept too.
func (n *Node) takesOver(kb []byte) bool {
	r := n.ring.Load()
	owner, ok := r.Owner(kb)
	if ok && owner != n.self {
		owner, ok = r.OwnerWithout(kb, owner)
	}
	return ok && owner == n.self
}

// handOver runs every cache's handOver with next, one cache after another.
func (n *Node) handOver(ctx context.Context, next func(kb []byte) (string, bool)) {
	for _, c := range *n.caches.Load() {
		if ctx.Err() != nil {
			return
		}
		c.handOver(ctx, next)
	}
}

// startHandOver hands the values whose keys a peer that just joined owns now over to it, in the
// background, for at most half the hand-off window; a later peer-set change or Close stops it.
// n.mu is held.
func (n *Node) startHandOver() {
	if n.stopHandOver != nil {
		n.stopHandOver()
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.window/2)
	n.stopHandOver = cancel
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer cancel()
		n.handOver(ctx, func(kb []byte) (string, bool) {
			owner, self := n.owner(kb)
			return owner, !self
		})
	}()
}

// leaveHandOver, in Shutdown, hands every value over to the node that owns its key once this
// one is gone, for at most half the hand-off window and half of what is left of ctx: the rest is
// for the requests in flight.
func (n *Node) leaveHandOver(ctx context.Context) {
	limit := n.window / 2
	if d, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(d)/2)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	n.handOver(ctx, func(kb []byte) (string, bool) {
		return n.ring.Load().OwnerWithout(kb, n.self)
	})
}

// recentWrites remembers which keys of a cache were written here lately (a Set or a Remove of
// the key, from this node or a peer), as bits of their hashes, and when the cache was last
// cleared, so that a value handed over that its sender read before such a write is declined. A
// key's bit stays set for one to two periods (the hand-off window): bits go to the current set,
// and each period the older set is emptied and becomes the current one. Two sets of 65,536
// bits take 16 KiB; keys sharing a bit only decline each other's hand-overs.
type recentWrites struct {
	period  int64 // nanoseconds
	sets    [2][recentWords]atomic.Uint64
	cur     atomic.Int32 // the set written to now
	started atomic.Int64 // when it became current, unix nanoseconds by the cache's clock
	cleared atomic.Int64 // the last Clear, unix nanoseconds; 0: none
	mu      sync.Mutex   // serializes rotations
}

const recentWords = 1 << 10 // words of 64 bits per set

func newRecentWrites(period int64, now int64) *recentWrites {
	w := &recentWrites{period: period}
	w.started.Store(now)
	return w
}

// bit returns the word and bit of the key whose bytes are kb.
func recentBit(kb []byte) (word int, bit uint64) {
	h := keyHash(kb) >> 48 // 16 bits; the low bits choose the key's stripe
	return int(h >> 6), 1 << (h & 63)
}

// record notes a write of the key whose bytes are kb at now.
func (w *recentWrites) record(kb []byte, now int64) {
	w.rotate(now)
	i, b := recentBit(kb)
	w.sets[w.cur.Load()][i].Or(b)
}

// clear notes a Clear of the cache at now.
func (w *recentWrites) clear(now int64) { w.cleared.Store(now) }

// wrote reports whether the key whose bytes are kb may have been written, or the cache cleared,
// within the last period.
func (w *recentWrites) wrote(kb []byte, now int64) bool {
	w.rotate(now)
	if c := w.cleared.Load(); c != 0 && now-c < w.period {
		return true
	}
	i, b := recentBit(kb)
	return w.sets[0][i].Load()&b != 0 || w.sets[1][i].Load()&b != 0
}

// rotate makes the older set, emptied, the current one once the current one is a period old
// (and empties both after two periods).
func (w *recentWrites) rotate(now int64) {
	if now-w.started.Load() < w.period {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if now-w.started.Load() < w.period {
		return
	}
	older := 1 - w.cur.Load()
	emptySet(&w.sets[older])
	if now-w.started.Load() >= 2*w.period {
		emptySet(&w.sets[1-older]) // no write for a period: both sets are past
	}
	w.cur.Store(older)
	w.started.Store(now)
}

// emptySet empties a set of bits.
func emptySet(set *[recentWords]atomic.Uint64) {
	for i := range set {
		set[i].Store(0)
	}
}
