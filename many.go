package groupcache

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

// maxParallelLoads bounds the loads GetMany runs at once for a loader that is not a BatchLoader.
const maxParallelLoads = 16

// GetMany returns the values of keys: one Result per key, in the order of keys, each holding what
// Get would have returned for that key. Keys found in memory are answered at once; the others are
// filled together: keys owned by a peer with one request per owner (in requests of at most the
// batch size, WithBatchSize), keys owned here with the loader's LoadMany when it is a BatchLoader
// (otherwise with up to 16 loads at once, fewer when WithMaxLoads is lower). Single flight holds per key: a key that a Get or
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
	first := make(map[K]int, len(keys)) // index of each key's first place
	var misses []miss[K, V]
	var places []int // misses[j] is for keys[places[j]]
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
		misses = append(misses, c.newMiss(k, kb))
		places = append(places, i)
	}
	c.fillMisses(ctx, misses, places, res)
	for i, k := range keys {
		if j := first[k]; j != i {
			res[i] = res[j]
		}
	}
	return res
}

// fillMisses fills the misses of a GetMany in one batch of single flights, and puts their
// results in res at places.
func (c *Cache[K, V]) fillMisses(ctx context.Context, misses []miss[K, V], places []int, res []Result[V]) {
	if len(misses) == 0 {
		return
	}
	ks := make([]K, len(misses))
	byKey := make(map[K]*miss[K, V], len(misses))
	for j := range misses {
		ks[j] = misses[j].key
		byKey[ks[j]] = &misses[j]
	}
	ctx, end := c.span(ctx, observe.Span{Step: observe.GetMiss, Keys: len(ks)})
	start := c.waitStart()
	rs := c.flights.DoMany(ctx, ks, func(lctx context.Context, ks []K, set func(int, V, error)) {
		b := &batch[K, V]{ms: make([]miss[K, V], len(ks)), set: set}
		for i, k := range ks {
			b.ms[i] = *byKey[k]
		}
		c.fillMany(lctx, b)
	})
	var shared int
	var errs []error
	for j, r := range rs {
		if r.Shared {
			c.dedup.Add(1)
			shared++
		}
		res[places[j]] = Result[V]{Value: r.Val, Err: c.flightErr(r.Err)}
		if r.Err != nil && c.tracer != nil {
			errs = append(errs, res[places[j]].Err)
		}
	}
	c.waited(ctx, start, shared, nil)
	end(errors.Join(errs...))
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

// batch is the keys a GetMany's single flight gave one run of its batch function, each with the
// state of its miss, and the function that reports each key's result.
type batch[K comparable, V any] struct {
	ms  []miss[K, V]
	set func(int, V, error)
}

// fillMany fills the keys of b: from memory when a load finished meanwhile, from their owners, or
// by loading them here. It reports each key's result through b.set as soon as it has it.
func (c *Cache[K, V]) fillMany(ctx context.Context, b *batch[K, V]) {
	var local, down []int
	var byPeer map[string][]int
	for i := range b.ms {
		m := &b.ms[i]
		m.st = c.stamp(m.kb)
		if it, ok := c.lookup(m.key); ok {
			b.set(i, it.v, it.failure())
			continue
		}
		owner, ok := c.remoteOwner(m.kb)
		switch {
		case !ok:
			local = append(local, i)
		case !c.node.healthy(owner):
			down = append(down, i)
		default:
			if byPeer == nil {
				byPeer = make(map[string][]int)
			}
			byPeer[owner] = append(byPeer[owner], i)
		}
	}
	var wg sync.WaitGroup
	for owner, idx := range byPeer {
		wg.Go(func() { c.fetchMany(ctx, owner, b, idx) })
	}
	if len(down) > 0 {
		wg.Go(func() { c.fallbackMany(ctx, b, down) })
	}
	c.loadMany(ctx, b, local)
	wg.Wait()
}

// chunks yields idx in pieces of at most size, each with the bytes of its keys.
func (b *batch[K, V]) chunks(idx []int, size int) iter.Seq2[[]int, [][]byte] {
	return func(yield func([]int, [][]byte) bool) {
		for len(idx) > 0 {
			chunk := idx[:min(len(idx), size)]
			idx = idx[len(chunk):]
			kbs := make([][]byte, len(chunk))
			for j, i := range chunk {
				kbs[j] = b.ms[i].kb
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
		at := c.now().UnixNano()
		fctx, end := c.span(ctx, observe.Span{Step: observe.Fetch, Peer: owner, Keys: len(kbs)})
		start := c.mono()
		rs, err := c.node.client.GetMany(fctx, owner, c.name, kbs)
		c.fetched(ctx, owner, start, err)
		end(err)
		if err != nil {
			c.cluster.remoteErrors.Add(int64(len(chunk)))
			if c.canFallBack(ctx, owner, err) {
				c.fallbackMany(ctx, b, chunk)
				continue
			}
			err = c.peerErr(owner, err)
			for _, i := range chunk {
				b.set(i, zero, err)
			}
			continue
		}
		c.receivedMany(ctx, owner, b, chunk, rs, at)
	}
}

// receivedMany reports the keys chunk of b from rs, owner's reply to a request sent at at. Keys
// the owner could not fit in its reply are asked for again alone; keys it could not serve are
// loaded here when Get would load them here.
func (c *Cache[K, V]) receivedMany(ctx context.Context, owner string, b *batch[K, V], chunk []int, rs []peer.Result, at int64) {
	var zero V
	var again, fallback []int
	for j, r := range rs {
		i := chunk[j]
		m := &b.ms[i]
		if r.Err == nil {
			v, err := c.receivedShared(owner, m, r.Value, at)
			b.set(i, v, err)
			continue
		}
		c.cluster.remoteErrors.Add(1)
		if peer.StatusOf(r.Err) == peer.StatusOverloaded {
			again = append(again, i) // the reply was full: ask for it alone
			continue
		}
		c.peerError(owner, r.Err)
		switch {
		case c.canFallBack(ctx, owner, r.Err):
			fallback = append(fallback, i)
		default:
			err := c.peerErr(owner, r.Err)
			c.remoteNotFound(m, err)
			b.set(i, zero, err)
		}
	}
	for _, i := range again {
		v, err := c.fillRemote(ctx, owner, &b.ms[i])
		b.set(i, v, err)
	}
	c.fallbackMany(ctx, b, fallback)
}

// loadMany loads the keys idx of b here (while values are being handed over after a peer-set
// change, from the keys' previous owners first).
func (c *Cache[K, V]) loadMany(ctx context.Context, b *batch[K, V], idx []int) {
	if len(idx) > 0 && c.node != nil {
		idx = c.handoffMany(ctx, b, idx)
	}
	c.loadBatch(ctx, b, idx)
}

// fallbackMany loads here the keys idx of b, owned by a peer that could not serve them: the
// values are kept as copies (in the hot store, when there is one).
func (c *Cache[K, V]) fallbackMany(ctx context.Context, b *batch[K, V], idx []int) {
	c.cluster.fallbackLoads.Add(int64(len(idx)))
	if c.hot != nil {
		for _, i := range idx {
			b.ms[i].into = c.hot
		}
	}
	c.loadBatch(ctx, b, idx)
}

// loadBatch loads the keys idx of b with the loader: with LoadMany in calls of at most the batch
// size when it is a BatchLoader, else with one Load per key, a few at once.
func (c *Cache[K, V]) loadBatch(ctx context.Context, b *batch[K, V], idx []int) {
	if len(idx) == 0 {
		return
	}
	if c.batch == nil {
		c.parallel(idx, func(i int) {
			it, err := c.loadNew(ctx, &b.ms[i])
			b.set(i, it.v, err)
		})
		return
	}
	for chunk := range b.chunks(idx, c.batchSize) {
		c.loadChunk(ctx, b, chunk)
	}
}

// loadChunk loads the keys chunk of b with one LoadMany call.
func (c *Cache[K, V]) loadChunk(ctx context.Context, b *batch[K, V], chunk []int) {
	var zero V
	keys := make([]K, len(chunk))
	for j, i := range chunk {
		keys[j] = b.ms[i].key
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
		c.loadFailure(err)
		for _, i := range chunk {
			b.set(i, zero, err)
		}
		return
	}
	for j, i := range chunk {
		m := &b.ms[i]
		if l := ls[j]; l.Err != nil {
			b.set(i, zero, c.loadFailed(ctx, m, l.Err))
		} else {
			it, err := c.keep(m, l.Value, l.TTL)
			b.set(i, it.v, err)
		}
	}
}

// parallel calls f for each of idx, at most maxParallelLoads (and at most WithMaxLoads) at once,
// and returns when all have returned.
func (c *Cache[K, V]) parallel(idx []int, f func(i int)) {
	sem := make(chan struct{}, min(maxParallelLoads, c.maxLoads))
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

// callBatch calls the BatchLoader in a slot of WithMaxLoads (waiting for one while ctx lasts),
// turning a panic into a *PanicError.
func (c *Cache[K, V]) callBatch(ctx context.Context, keys []K) (ls []Loaded[V], err error) {
	ctx, end := c.span(ctx, observe.Span{Step: observe.Load, Keys: len(keys)})
	defer func() { end(err) }()
	if err := c.acquireLoad(ctx); err != nil {
		return nil, err
	}
	defer c.releaseLoad()
	defer c.loaded(c.mono())
	defer c.recoverInto(&err, "batch loader")
	return c.batch.LoadMany(ctx, keys)
}
