package groupcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/typedcache/groupcache/peer"
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
// cache's TTL (WithTTL); WithTTLJitter still applies. d <= 0 means the cache's TTL.
func WithEntryTTL(d time.Duration) SetOption {
	return setOptionFunc(func(s *setSettings) { s.ttl = d })
}

// Set stores v as the value of key, on the key's owner: here, or the owning peer over the network
// (the value encoded with the cache's codec). Copies of key elsewhere (in peers' hot stores, or
// loaded while the owner was down) are dropped, and a load of key in flight anywhere when Set
// arrives does not store its older value afterwards. The entry expires after the cache's TTL, or
// WithEntryTTL's.
//
// Errors: ErrClosed, ctx's error, ErrInvalidKey, a *TooLargeError (matching ErrTooLarge) for a
// value over the per-value limit (nothing is stored), a codec error, and the owner's failure (a
// *peer.Error matching peer.ErrUnavailable, or with a peer.StatusOf; nothing was stored). Once the
// owner has stored the value, Set reports peers that could not be told to drop their copies with
// an error matching ErrIncomplete; such a copy is served until it expires (at most the hot TTL,
// WithHotTTL).
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
		return &TooLargeError{Cache: c.name, Size: size, Limit: c.maxValue}
	}
	expires := c.deadline(so.ttl)
	if c.node != nil && !c.node.closed.Load() && it.wire != nil {
		it.wire.Expires = expires
		owner, self := c.node.owner(kb)
		if self {
			c.setLocal(key, kb, it, size, expires)
		} else {
			if err := c.node.transport.Set(ctx, owner, c.name, kb, it.wire.Value); err != nil {
				c.cluster.remoteErrors.Add(1)
				if errors.Is(err, peer.ErrUnavailable) && ctx.Err() == nil {
					c.node.markDown(owner, err)
				}
				return fmt.Errorf("groupcache: cache %q: set on owner %s: %w", c.name, owner, err)
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
	c.setLocal(key, kb, it, size, expires)
	c.fresh.sets.Add(1)
	return nil
}

// setLocal stores an item in the main store in place of whatever key had, and keeps loads in
// flight from storing an older value afterwards.
func (c *Cache[K, V]) setLocal(key K, kb []byte, it item[V], size, expires int64) {
	c.drop(key, kb)
	if expires != 0 && !c.live(expires) {
		return
	}
	it.markStale(c.staleAt(expires))
	c.put(c.store, key, it, size, c.hardDeadline(expires), c.stamp(kb))
}

// drop removes key from both stores and makes loads of it in flight not store their values: a
// Get after drop loads anew.
func (c *Cache[K, V]) drop(key K, kb []byte) {
	c.stripes[stripeOf(kb)].Add(1) // first: a load that stores after this sees it and backs out
	c.flights.Forget(key)
	c.store.Remove(key)
	if c.hot != nil {
		c.hot.Remove(key)
	}
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
// Errors: ErrClosed, ctx's error, ErrInvalidKey (nothing removed); an owner that could not be
// told (a *peer.Error matching peer.ErrUnavailable, or with a peer.StatusOf) keeps its value and
// the error says which; other peers that could not be told are reported with an error matching
// ErrIncomplete, and their copies are served until they expire (at most the hot TTL). An owner is
// asked even when it is marked unavailable (WithPeerBackoff); another peer so marked is not, and
// is reported with ErrIncomplete.
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
	for i, k := range keys {
		c.drop(k, kbs[i])
	}
	if c.node == nil || c.node.closed.Load() || len(keys) == 0 {
		return nil
	}
	owners := make([]string, len(kbs))
	for i, kb := range kbs {
		owners[i], _ = c.node.owner(kb)
	}
	keysOf := func(owned bool) func(string) [][]byte {
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
	if err := c.askPeers(ctx, keysOf(true), false); err != nil {
		return err
	}
	return c.tellPeers(ctx, keysOf(false))
}

// Clear empties the cache on every node: each drops every entry and adopts a new generation
// number, higher than any before, and a load in flight anywhere when the generation changes does
// not store its value. Clear runs twice over the cluster, so that a copy fetched during the first
// round from an owner not yet cleared is dropped by the second. Without a node it empties this
// cache.
//
// Errors: ErrClosed, ctx's error, and peers that could not be told (errors matching
// ErrIncomplete): they keep their entries until these expire or a later Clear reaches them.
func (c *Cache[K, V]) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.fresh.clears.Add(1)
	gen := max(c.gen.Load()+1, uint64(max(c.clock.Now().UnixNano(), 0)))
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
		return c.node.transport.Clear(ctx, p, c.name, gen)
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
			if err := c.node.transport.Remove(ctx, p, c.name, ks[:n]); err != nil {
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
			if errors.Is(err, peer.ErrUnavailable) && ctx.Err() == nil {
				c.node.markDown(p, err)
			}
			if optional {
				err = fmt.Errorf("%w: peer %s: %w", ErrIncomplete, p, err)
			} else {
				err = fmt.Errorf("groupcache: cache %q: peer %s: %w", c.name, p, err)
			}
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// setFromPeer stores a value a peer sent with Set: this node owns key.
func (c *Cache[K, V]) setFromPeer(kb []byte, val peer.Value) error {
	if c.closed.Load() {
		return c.closedForPeers()
	}
	key, err := c.decodeKey(kb)
	if err != nil {
		return err
	}
	raw, err := val.Raw(int(c.maxValue))
	if err != nil {
		return wireStatus(peer.StatusTooLarge, err)
	}
	data := raw
	if val.Compressed {
		data = bytes.Clone(val.Data) // raw is fresh; the compressed bytes alias the request
	} else {
		raw = bytes.Clone(raw)
		data = raw
	}
	v, err := c.decode(raw)
	if err != nil {
		return wireStatus(peer.StatusBadRequest, err)
	}
	size := int64(len(raw))
	if c.sizer != nil {
		if size = c.sizer(v); size < 0 {
			return fmt.Errorf("groupcache: cache %q: sizer returned %d", c.name, size)
		}
	}
	if val.Compressed {
		size += int64(len(data))
	}
	size += int64(len(kb))
	if size > c.maxValue {
		c.tooLarge.Add(1)
		return wireStatus(peer.StatusTooLarge, &TooLargeError{Cache: c.name, Size: size, Limit: c.maxValue})
	}
	w := &wireForm{Value: peer.Value{Data: data, Compressed: val.Compressed, Expires: val.Expires}, rawLen: len(raw)}
	c.setLocal(key, kb, item[V]{v: v, wire: w}, size, val.Expires)
	return nil
}

// removeFromPeer drops keys a peer asked to remove.
func (c *Cache[K, V]) removeFromPeer(kbs [][]byte) error {
	if c.closed.Load() {
		return c.closedForPeers()
	}
	keys := make([]K, len(kbs))
	for i, kb := range kbs {
		k, err := c.decodeKey(kb)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	for i, k := range keys {
		c.drop(k, kbs[i])
	}
	return nil
}

// clearFromPeer adopts a generation a peer's Clear sent.
func (c *Cache[K, V]) clearFromPeer(gen uint64) error {
	if c.closed.Load() {
		return c.closedForPeers()
	}
	c.adopt(gen)
	return nil
}

// decodeKey decodes a key a peer sent, checked against the key length limit.
func (c *Cache[K, V]) decodeKey(kb []byte) (K, error) {
	var zero K
	if len(kb) > c.maxKey {
		return zero, wireStatus(peer.StatusBadRequest, fmt.Errorf("key of %d bytes over the limit of %d", len(kb), c.maxKey))
	}
	k, err := c.keys.Decode(kb)
	if err != nil {
		return zero, wireStatus(peer.StatusBadRequest, err)
	}
	return k, nil
}
