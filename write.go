package groupcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// SetOption configures one Set call.
type SetOption interface {
	applySet(*setSettings)
}

type setSettings struct {
	ttl time.Duration
}

type setOptionFunc func(*setSettings)

func (f setOptionFunc) applySet(s *setSettings) { f(s) }

// WithEntryTTL makes the value given to Set expire d after it is stored, instead of after the
// cache's TTL (WithTTL); WithTTLJitter still applies. d <= 0 means the cache's TTL, and so does a
// d longer than the cache's TTL when it has one (WithTTL bounds every entry).
func WithEntryTTL(d time.Duration) SetOption {
	return setOptionFunc(func(s *setSettings) { s.ttl = d })
}

// Set stores v as the value of key, on the key's owner: here, or the owning peer over the network
// (the value encoded with the cache's codec). Copies of key elsewhere (in peers' hot stores, or
// loaded while the owner was down) are dropped, and a load of key in flight anywhere when Set
// arrives does not store its older value afterwards. The entry expires after the cache's TTL, or
// WithEntryTTL's.
//
// Errors: ErrClosed, ctx's error, and errors matching ErrInvalidKey, ErrTooLarge (a value over the
// per-value limit), ErrCodec, ErrUnavailable (the owner could not be reached or could not store
// the value) or a *PanicError; nothing was stored then. Once the owner has stored the value, Set
// reports peers that could not be told to drop their copies with an error matching
// ErrIncomplete; such a copy is served until it expires (docs/reliability.md, "Freshness under
// faults").
func (c *Cache[K, V]) Set(ctx context.Context, key K, v V, opts ...SetOption) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var so setSettings
	for _, o := range opts {
		if o != nil {
			o.applySet(&so)
		}
	}
	kb, err := c.encodeKey(key)
	if err != nil {
		return err
	}
	// On a node measure encodes the value: it travels, or is kept for peers, encoded.
	it, size, err := c.measure(v, len(kb))
	if err != nil {
		return err
	}
	if size > c.maxValue {
		c.tooLarge.Add(1)
		return fmt.Errorf("%w: cache %q: value of %d bytes over the limit of %d", ErrTooLarge, c.name, size, c.maxValue)
	}
	expires := c.deadline(so.ttl)
	if c.node == nil || c.node.closed.Load() {
		c.setLocal(key, kb, it, size, expires)
		c.fresh.sets.Add(1)
		return nil
	}
	return c.setOnOwner(ctx, key, kb, it, size, expires)
}

// setOnOwner is Set on a node: it stores it (of this size, expiring at expires) on the owner of
// key (here, or a peer), then tells every other peer to drop its copy.
func (c *Cache[K, V]) setOnOwner(ctx context.Context, key K, kb []byte, it item[V], size, expires int64) error {
	it.wire.expires = expires
	owner, self := c.node.owner(kb)
	if self {
		c.setLocal(key, kb, it, size, expires)
	} else {
		if err := c.node.client.Set(ctx, owner, c.name, kb, c.onWire(it.wire)); err != nil {
			c.cluster.remoteErrors.Add(1)
			c.peerFailed(ctx, owner, err)
			return c.peerErr(owner, err)
		}
		c.cluster.bytesSent.Add(int64(len(it.wire.Data)))
		c.cluster.bytesSentRaw.Add(int64(it.wire.rawLen))
		c.drop(key, kb)
	}
	c.fresh.sets.Add(1)
	// Every peer but the owner drops its copy, if it has one.
	return c.tellPeers(ctx, func(p string) [][]byte {
		if p == owner {
			return nil
		}
		return [][]byte{kb}
	})
}

// peerFailed records err, the failure of a request to p, and marks p down for the back-off
// period when err is the network's and not the end of ctx.
func (c *Cache[K, V]) peerFailed(ctx context.Context, p string, err error) {
	c.peerError(p, err)
	if peerDown(err) && ctx.Err() == nil {
		c.node.markDown(p, err)
	}
}

// setLocal stores an item in the main store in place of whatever key had (which leaves as
// replaced, for the removal listener), and keeps loads in flight from storing an older value
// afterwards.
func (c *Cache[K, V]) setLocal(key K, kb []byte, it item[V], size, expires int64) {
	c.invalidate(key, kb)
	if c.hot != nil {
		c.hot.Remove(key)
	}
	if expires != 0 && !c.live(expires) {
		c.store.Remove(key)
		return
	}
	it.markStale(c.staleAt(expires))
	m := c.newMiss(key, kb)
	m.st = c.stamp(kb)
	if !c.put(c.store, &m, it, size, c.hardDeadline(expires)) {
		c.store.Remove(key) // another write came first: the value key had goes all the same
	}
}

// drop removes key from both stores and makes loads of it in flight not store their values: a
// Get after drop loads anew.
func (c *Cache[K, V]) drop(key K, kb []byte) {
	c.invalidate(key, kb)
	c.store.Remove(key)
	if c.hot != nil {
		c.hot.Remove(key)
	}
}

// invalidate makes loads of key, whose bytes are kb, in flight not store their values, and a
// hand-off after it not take the key over.
func (c *Cache[K, V]) invalidate(key K, kb []byte) {
	i := stripeOf(kb)
	if c.node != nil {
		c.lastWrite[i].Store(c.node.writes.Add(1)) // first: a hand-off after this does not take the key over
	}
	if c.recent != nil {
		c.recent.record(kb, c.now().UnixNano()) // first: a value handed over after this is declined
	}
	c.stripes[i].Add(1) // first: a load that stores after this sees it and backs out
	c.flights.Forget(key)
}

// previousOwner is the node's previousOwner of the key whose bytes are kb, unless the key's stripe
// was written here, or the cache cleared, since the peer set changed: a write reaches the owner
// first and the previous owner after, so a value taken over from it now could be the one the write
// replaced.
func (c *Cache[K, V]) previousOwner(kb []byte) (string, bool) {
	h := c.node.handoff.Load()
	if h == nil || c.lastWrite[stripeOf(kb)].Load() > h.since || c.lastClear.Load() > h.since {
		return "", false
	}
	return c.node.previousOwner(kb)
}

// Remove deletes key: here, on its owner, and from every peer's hot store, so the next Get of key
// anywhere loads it again. A load of key in flight when Remove arrives on a node does not store its
// value there (its callers still get it). See RemoveMany for the order of the steps and errors.
func (c *Cache[K, V]) Remove(ctx context.Context, key K) error {
	return c.RemoveMany(ctx, []K{key})
}

// RemoveMany removes keys as Remove does, with one request per peer and step (in requests of at
// most the batch size). The owners are told first and the other peers after, so that a peer that
// has dropped its copy cannot fetch the old value again from an owner that has not been told yet.
//
// Errors: ErrClosed, ctx's error, an error matching ErrInvalidKey (nothing removed); an owner
// that could not be told keeps its value, and the error, matching ErrUnavailable, says which;
// other peers that could not be told are reported with an error matching ErrIncomplete, and their
// copies are served until they expire (docs/reliability.md). An owner is asked even when it is
// marked unavailable (WithPeerBackoff); another peer so marked is not, and is reported with
// ErrIncomplete.
func (c *Cache[K, V]) RemoveMany(ctx context.Context, keys []K) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	kbs := make([][]byte, len(keys))
	for i, k := range keys {
		kb, err := c.encodeKey(k)
		if err != nil {
			return err
		}
		kbs[i] = kb
	}
	c.fresh.removes.Add(int64(len(keys)))
	if c.node == nil || c.node.closed.Load() || len(keys) == 0 {
		for i, k := range keys {
			c.drop(k, kbs[i])
		}
		return nil
	}
	owners := make([]string, len(kbs))
	mine := make([]bool, len(kbs))
	for i, kb := range kbs {
		owners[i], mine[i] = c.node.owner(kb)
	}
	// The owners first (this node for the keys it owns), then the copies: here, so that a Get here
	// cannot fetch the old value again from an owner not told yet, and on the other peers.
	dropHere := func(owned bool) {
		for i, k := range keys {
			if mine[i] == owned {
				c.drop(k, kbs[i])
			}
		}
	}
	dropHere(true)
	err := c.askPeers(ctx, c.keysOf(kbs, owners, true), false)
	dropHere(false)
	if err != nil {
		return err
	}
	return c.tellPeers(ctx, c.keysOf(kbs, owners, false))
}

// keysOf returns, for a peer p, the keys of kbs it owns (owned) or does not own, by owners.
func (c *Cache[K, V]) keysOf(kbs [][]byte, owners []string, owned bool) func(string) [][]byte {
	return func(p string) [][]byte {
		var ks [][]byte
		for i, kb := range kbs {
			if (owners[i] == p) == owned {
				ks = append(ks, kb)
			}
		}
		return ks
	}
}

// Clear empties the cache on every node: each drops every entry and adopts a new generation
// number, higher than any before, and a load in flight anywhere when the generation changes does
// not store its value. Clear runs twice over the cluster, so that a copy fetched during the first
// round from an owner not yet cleared is dropped by the second. Without a node it empties this
// cache.
//
// Errors: ErrClosed, ctx's error, and peers that could not be told (errors matching
// ErrIncomplete): they keep their entries until these expire or a later Clear reaches them. A
// peer whose clock is more than a minute behind this node's refuses the Clear (its generation is
// a time, see docs/design.md) and is reported so too.
func (c *Cache[K, V]) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.fresh.clears.Add(1)
	gen := max(c.gen.Load()+1, uint64(max(c.now().UnixNano(), 0)))
	c.adopt(gen)
	if c.node == nil || c.node.closed.Load() {
		return nil
	}
	err := c.clearPeers(ctx, gen)
	c.adopt(gen + 1)
	return errors.Join(err, c.clearPeers(ctx, gen+1))
}

// adopt moves the cache to generation gen, emptying it, unless it is at gen or later already.
func (c *Cache[K, V]) adopt(gen uint64) bool {
	if c.node != nil {
		c.lastClear.Store(c.node.writes.Add(1)) // first: a hand-off after this takes nothing over
	}
	if c.recent != nil {
		c.recent.clear(c.now().UnixNano())
	}
	for {
		cur := c.gen.Load()
		if gen <= cur {
			return false
		}
		if c.gen.CompareAndSwap(cur, gen) { // first: a load that stores after this backs out
			c.flights.ForgetAll()
			c.store.Clear()
			if c.hot != nil {
				c.hot.Clear()
			}
			return true
		}
	}
}

func (c *Cache[K, V]) clearPeers(ctx context.Context, gen uint64) error {
	return c.eachPeer(ctx, true, func(ctx context.Context, p string) error {
		return c.node.client.Clear(ctx, p, c.name, gen)
	})
}

// tellPeers sends Remove requests for keysOf(p) to every peer p but this node that has keys to
// remove and is not marked unavailable. Failures are reported with ErrIncomplete.
func (c *Cache[K, V]) tellPeers(ctx context.Context, keysOf func(p string) [][]byte) error {
	return c.askPeers(ctx, keysOf, true)
}

// askPeers sends Remove requests for keysOf(p) to every peer p but this node that has keys to
// remove, in requests of at most the batch size. With optional, a failure only means that a copy
// may outlive the removal (ErrIncomplete), and peers marked unavailable are skipped.
func (c *Cache[K, V]) askPeers(ctx context.Context, keysOf func(p string) [][]byte, optional bool) error {
	return c.eachPeer(ctx, optional, func(ctx context.Context, p string) error {
		ks := keysOf(p)
		for len(ks) > 0 {
			n := min(len(ks), c.batchSize)
			if err := c.node.client.Remove(ctx, p, c.name, ks[:n]); err != nil {
				return err
			}
			ks = ks[n:]
		}
		return nil
	})
}

// eachPeer runs call for every peer but this node, all at once, and joins their errors, each
// naming its peer. With optional, peers marked unavailable are skipped and errors match
// ErrIncomplete; otherwise an unavailable peer is asked all the same.
func (c *Cache[K, V]) eachPeer(ctx context.Context, optional bool, call func(ctx context.Context, p string) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range c.node.Peers() {
		if p == c.node.self {
			continue
		}
		if optional && !c.node.healthy(p) {
			c.log.Warn("peer unavailable; its copies live until they expire", slog.String("peer", p))
			mu.Lock()
			errs = append(errs, fmt.Errorf("%w: peer %s is unavailable", ErrIncomplete, p))
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			err := call(ctx, p)
			if err == nil {
				return
			}
			c.cluster.remoteErrors.Add(1)
			c.peerFailed(ctx, p, err)
			if optional {
				err = fmt.Errorf("%w: cache %q: peer %s: %w", ErrIncomplete, c.name, p, err)
			} else {
				err = c.peerErr(p, err)
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
