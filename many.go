package groupcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/typedcache/groupcache/peer"
)

// maxParallelLoads bounds the loads GetMany runs at once for a loader that is not a BatchLoader.
const maxParallelLoads = 16

// GetMany returns the values of keys: one Result per key, in the order of keys, each holding what
// Get would have returned for that key. Keys found in memory are answered at once; the others are
// filled together: keys owned by a peer with one request per owner (in requests of at most the
// batch size, WithBatchSize), keys owned here with the loader's LoadMany when it is a BatchLoader
// (otherwise with up to 16 loads at once). Single flight holds per key: a key that a Get or
// another GetMany is already filling is joined, not filled twice, and a Get of a key this call is
// filling joins it.
//
// A duplicate key is filled once and gets the same Result at each of its places. One failure
// fails only its keys: a peer that cannot be reached is skipped and its keys are loaded here, as
// for Get. When ctx ends, the keys not filled yet get ctx's error while their loads go on for
// other callers.
func (c *Cache[K, V]) GetMany(ctx context.Context, keys []K) []Result[V] {
	res := make([]Result[V], len(keys))
	if len(keys) == 0 {
		return res
	}
	c.fresh.batchGets.Add(1)
	c.fresh.batchKeys.Add(int64(len(keys)))
	if c.closed.Load() {
		for i := range res {
			res[i].Err = ErrClosed
		}
		return res
	}
	var (
		first  = make(map[K]int, len(keys)) // index of each key's first place
		misses []K
		places []int // misses[j] is keys[places[j]]
		kbs    = make(map[K][]byte)
	)
	for i, k := range keys {
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		if v, err, ok := c.cached(k); ok {
			res[i] = Result[V]{Value: v, Err: err}
			continue
		}
		kb, err := c.encodeKey(k)
		if err != nil {
			res[i].Err = err
			continue
		}
		kbs[k] = kb
		misses = append(misses, k)
		places = append(places, i)
	}
	if len(misses) > 0 {
		rs := c.flights.DoMany(ctx, misses, func(lctx context.Context, ks []K, set func(int, V, error)) {
			c.fillMany(lctx, ks, kbs, set)
		})
		for j, r := range rs {
			if r.Shared {
				c.dedup.Add(1)
			}
			res[places[j]] = Result[V]{Value: r.Val, Err: c.flightErr(r.Err)}
		}
	}
	for i, k := range keys {
		if j := first[k]; j != i {
			res[i] = res[j]
		}
	}
	return res
}

// cached is Get's lookup in memory: ok reports a hit, a value or a cached "not found".
func (c *Cache[K, V]) cached(key K) (V, error, bool) {
	if it, ok := c.store.Get(key); ok {
		if it.meta == nil {
			return it.v, nil, true
		}
		v, err := c.special(key, it)
		return v, err, true
	}
	if c.hot != nil {
		if it, ok := c.hot.Get(key); ok {
			if it.meta == nil {
				return it.v, nil, true
			}
			v, err := c.special(key, it)
			return v, err, true
		}
	}
	var zero V
	return zero, nil, false
}

// fillMany fills the keys a GetMany's single flight gave it (ks, whose bytes are in kbs): from
// memory when a load finished meanwhile, from their owners, or by loading them here. It reports
// each key's result through set as soon as it has it.
func (c *Cache[K, V]) fillMany(ctx context.Context, ks []K, kbs map[K][]byte, set func(int, V, error)) {
	b := &batch[K, V]{ks: ks, kbs: make([][]byte, len(ks)), sts: make([]stamp, len(ks)), set: set}
	var (
		local  []int
		down   []int
		byPeer map[string][]int
	)
	clustered := c.node != nil && !c.node.closed.Load()
	for i, k := range ks {
		kb := kbs[k]
		b.kbs[i] = kb
		b.sts[i] = c.stamp(kb)
		if it, ok := c.lookup(k); ok {
			set(i, it.v, it.failure())
			continue
		}
		if clustered {
			if owner, self := c.node.owner(kb); !self {
				if !c.node.healthy(owner) {
					down = append(down, i)
					continue
				}
				if byPeer == nil {
					byPeer = make(map[string][]int)
				}
				byPeer[owner] = append(byPeer[owner], i)
				continue
			}
		}
		local = append(local, i)
	}
	var wg sync.WaitGroup
	for owner, idx := range byPeer {
		wg.Go(func() { c.fetchMany(ctx, owner, b, idx) })
	}
	if len(down) > 0 {
		wg.Go(func() { c.loadMany(ctx, b, down, true) })
	}
	c.loadMany(ctx, b, local, false)
	wg.Wait()
}

// batch is the keys of one fillMany with what it knows of each: bytes and stamp.
type batch[K comparable, V any] struct {
	ks  []K
	kbs [][]byte
	sts []stamp
	set func(int, V, error)
}

// chunks yields idx in pieces of at most size, each with the bytes of its keys.
func (b *batch[K, V]) chunks(idx []int, size int) iter.Seq2[[]int, [][]byte] {
	return func(yield func([]int, [][]byte) bool) {
		for len(idx) > 0 {
			chunk := idx[:min(len(idx), size)]
			idx = idx[len(chunk):]
			kbs := make([][]byte, len(chunk))
			for j, i := range chunk {
				kbs[j] = b.kbs[i]
			}
			if !yield(chunk, kbs) {
				return
			}
		}
	}
}

// fetchMany asks owner for the keys idx of b, in requests of at most the batch size. Keys the owner
// cannot serve are loaded here when Get would load them here.
func (c *Cache[K, V]) fetchMany(ctx context.Context, owner string, b *batch[K, V], idx []int) {
	var zero V
	for chunk, kbs := range b.chunks(idx, c.batchSize) {
		c.fresh.batchRequests.Add(1)
		c.cluster.remoteGets.Add(int64(len(chunk)))
		rs, err := c.node.transport.GetMany(ctx, owner, c.name, kbs)
		if err != nil {
			c.cluster.remoteErrors.Add(int64(len(chunk)))
			if c.canFallBack(ctx, owner, err) {
				c.loadMany(ctx, b, chunk, true)
				continue
			}
			err = fmt.Errorf("groupcache: cache %q: owner %s: %w", c.name, owner, err)
			for _, i := range chunk {
				b.set(i, zero, err)
			}
			continue
		}
		var again, fallback []int
		for j, r := range rs {
			i := chunk[j]
			if r.Err == nil {
				v, err := c.received(owner, b.ks[i], b.kbs[i], r.Value, true, b.sts[i], nil)
				b.set(i, v, err)
				continue
			}
			c.cluster.remoteErrors.Add(1)
			switch {
			case errors.Is(r.Err, peer.ErrNotFound):
				err := fmt.Errorf("groupcache: cache %q: owner %s: %w", c.name, owner, ErrNotFound)
				c.remoteNotFound(b.ks[i], b.kbs[i], err, b.sts[i])
				b.set(i, zero, err)
			case errors.Is(r.Err, peer.ErrOverloaded):
				again = append(again, i) // the reply was full: ask for it alone
			case c.canFallBack(ctx, owner, r.Err):
				fallback = append(fallback, i)
			default:
				b.set(i, zero, r.Err)
			}
		}
		for _, i := range again {
			v, err := c.fetch(ctx, owner, b.ks[i], b.kbs[i], b.sts[i])
			if err != nil && c.canFallBack(ctx, owner, err) {
				v, err = c.fallback(ctx, b.ks[i], b.kbs[i], false, b.sts[i])
			}
			b.set(i, v, err)
		}
		c.loadMany(ctx, b, fallback, true)
	}
}

// loadMany loads the keys idx of b here, with the BatchLoader when there is one. With fallback
// they are keys of a peer that could not serve them, kept as copies (in the hot store).
func (c *Cache[K, V]) loadMany(ctx context.Context, b *batch[K, V], idx []int, fallback bool) {
	if len(idx) == 0 {
		return
	}
	if !fallback && c.node != nil {
		// While values are being handed over after a peer-set change, ask the keys' previous
		// owners first.
		if idx = c.handoffMany(ctx, b, idx); len(idx) == 0 {
			return
		}
	}
	if c.batch == nil {
		// One load per key, a few at once.
		c.parallel(idx, func(i int) {
			var v V
			var err error
			if fallback {
				v, err = c.fallback(ctx, b.ks[i], b.kbs[i], false, b.sts[i])
			} else {
				var it item[V]
				it, err = c.loadNew(ctx, b.ks[i], b.kbs[i], false, false, b.sts[i])
				v = it.v
			}
			b.set(i, v, err)
		})
		return
	}
	s := c.store
	if fallback {
		c.cluster.fallbackLoads.Add(int64(len(idx)))
		if c.hot != nil {
			s = c.hot
		}
	}
	var zero V
	for len(idx) > 0 {
		chunk := idx[:min(len(idx), c.batchSize)]
		idx = idx[len(chunk):]
		keys := make([]K, len(chunk))
		for j, i := range chunk {
			keys[j] = b.ks[i]
		}
		c.fresh.batchLoads.Add(1)
		c.loads.Add(int64(len(chunk)))
		ls, err := c.callBatch(ctx, keys)
		if err == nil && len(ls) != len(keys) {
			err = fmt.Errorf("groupcache: cache %q: LoadMany returned %d results for %d keys", c.name, len(ls), len(keys))
		}
		if err != nil {
			c.loadErrors.Add(int64(len(chunk)))
			if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = c.timeoutErr
			}
			for _, i := range chunk {
				b.set(i, zero, err)
			}
			continue
		}
		for j, i := range chunk {
			if l := ls[j]; l.Err != nil {
				b.set(i, zero, c.loadFailed(ctx, s, b.ks[i], b.kbs[i], l.Err, b.sts[i]))
			} else {
				it, err := c.keep(s, b.ks[i], b.kbs[i], l.Value, l.TTL, b.sts[i])
				b.set(i, it.v, err)
			}
		}
	}
}

// parallel calls f for each of idx, at most maxParallelLoads at once, and returns when all have
// returned.
func (c *Cache[K, V]) parallel(idx []int, f func(i int)) {
	sem := make(chan struct{}, maxParallelLoads)
	var wg sync.WaitGroup
	for _, i := range idx {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// callBatch calls the BatchLoader, turning a panic into a *PanicError.
func (c *Cache[K, V]) callBatch(ctx context.Context, keys []K) (ls []Loaded[V], err error) {
	defer c.recoverInto(&err, "batch loader")
	return c.batch.LoadMany(ctx, keys)
}

// serveMany answers a peer's GetMany: each key from the main store, or loaded here (with the
// other keys missed, through the BatchLoader when there is one). Like serve, it never forwards.
func (c *Cache[K, V]) serveMany(ctx context.Context, kbs [][]byte) ([]peer.Result, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("cache %q closed: %w", c.name, peer.ErrUnknownCache)
	}
	c.cluster.peerRequests.Add(int64(len(kbs)))
	res := make([]peer.Result, len(kbs))
	var (
		first  = make(map[K]int, len(kbs))
		keys   = make([]K, len(kbs))
		bad    = make([]bool, len(kbs))
		misses []K
		places []int
		owned  = make(map[K][]byte)
	)
	for i, kb := range kbs {
		k, err := c.decodeKey(kb)
		if err != nil {
			res[i].Err, bad[i] = err, true
			continue
		}
		keys[i] = k
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		if w, err, ok := c.served(k); ok {
			res[i] = peer.Result{Value: w, Err: err}
			continue
		}
		owned[k] = bytes.Clone(kb) // the loads may outlive this request
		misses = append(misses, k)
		places = append(places, i)
	}
	if len(misses) > 0 {
		rs := c.flights.DoMany(ctx, misses, func(lctx context.Context, ks []K, set func(int, V, error)) {
			b := &batch[K, V]{ks: ks, kbs: make([][]byte, len(ks)), sts: make([]stamp, len(ks)), set: set}
			var local []int
			for i, k := range ks {
				b.kbs[i] = owned[k]
				b.sts[i] = c.stamp(b.kbs[i])
				if it, ok := c.liveItem(k); ok {
					set(i, it.v, it.failure())
					continue
				}
				local = append(local, i)
			}
			c.cluster.peerLoads.Add(int64(len(local)))
			c.loadMany(lctx, b, local, false)
		})
		for j, r := range rs {
			i := places[j]
			if r.Shared {
				c.dedup.Add(1)
			}
			if err := c.flightErr(r.Err); err != nil {
				res[i].Err = wireError(err)
				continue
			}
			res[i].Value, res[i].Err = c.reply(misses[j], r.Val)
		}
	}
	for i := range kbs {
		if bad[i] {
			continue
		}
		if j := first[keys[i]]; j != i {
			res[i] = res[j]
		}
	}
	return res, nil
}
