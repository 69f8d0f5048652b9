package groupcache

import (
	"bytes"
	"context"
	"time"

	"github.com/typedcache/groupcache/internal/deadline"
	"github.com/typedcache/groupcache/observe"
)

// maxLentBuffer is the largest buffer a cache keeps for View's remote hits; a larger value is
// read into new memory, as for Get.
const maxLentBuffer = 1 << 20

// View calls fn with the value of key, found as Get finds it, but lends the value instead of
// giving it: fn must not keep v, or anything that shares its memory, after it returns. In
// exchange, a remote hit reads the value's bytes into memory the cache reuses for the next View,
// instead of new memory that is garbage once the caller drops it. With values of tens of
// kilobytes and more, that is most of the cost of a remote hit on the calling side (see
// docs/benchmarks.md); for small values the difference is small.
//
// fn runs once, in the calling goroutine, when there is a value; View returns fn's error as it
// is. Otherwise fn does not run and View returns the error Get would (ErrNotFound, ErrClosed,
// ctx's error, and so on). Hits, loads, fallbacks and the load timeout are those of Get, and
// concurrent Views and Gets of a key share one request to its owner: the caller that makes it is
// lent the value, the others get a copy of their own (made once, and only when the codec's
// decoded value shares the bytes it came from, as codec.Bytes's does). A value promoted to the
// hot store keeps its memory; only values up to 1 MiB are read into reused memory.
func (c *Cache[K, V]) View(ctx context.Context, key K, fn func(v V) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if it, ok := c.store.Get(key); ok {
		return c.viewItem(key, it, fn)
	}
	if c.hot != nil {
		if it, ok := c.hot.Get(key); ok {
			return c.viewItem(key, it, fn)
		}
	}
	v, lb, err := c.viewMiss(ctx, key)
	if err != nil {
		return err
	}
	err = fn(v)
	if lb != nil {
		c.lent.Put(lb)
	}
	return err
}

// viewItem calls fn with a hit's value, or returns its error (a cached "not found").
func (c *Cache[K, V]) viewItem(key K, it item[V], fn func(V) error) error {
	if it.meta == nil {
		return fn(it.v)
	}
	v, err := c.special(key, it)
	if err != nil {
		return err
	}
	return fn(v)
}

// viewMiss is the slow path of View. A key owned by a healthy peer is fetched into buffers of the
// cache's pool, in a single flight that Gets and other Views join: lb is those buffers when this
// caller ran the flight and v shares them, to put back once the caller is done with v (nil: v is
// in memory of its own, as the callers that joined get it). Everything else takes Get's path.
func (c *Cache[K, V]) viewMiss(ctx context.Context, key K) (v V, lb *lentBuffers, err error) {
	if err := ctx.Err(); err != nil {
		return v, nil, err
	}
	kb, err := c.encodeKey(key)
	if err != nil {
		return v, nil, err
	}
	ctx, end := c.span(ctx, observe.Span{Step: observe.GetMiss})
	v, lb, err = c.viewFlight(ctx, key, kb)
	end(err)
	return v, lb, err
}

// viewFlight is viewMiss once the key's bytes kb are known.
func (c *Cache[K, V]) viewFlight(ctx context.Context, key K, kb []byte) (v V, lb *lentBuffers, err error) {
	if owner, ok := c.remoteOwner(kb); ok && c.node.healthy(owner) {
		lb, _ := c.lent.Get().(*lentBuffers)
		if lb == nil {
			lb = new(lentBuffers)
		}
		m := c.newMiss(key, kb)
		m.lb = lb
		start := c.waitStart()
		v, err, ran := c.flights.DoLent(ctx, key, func(ctx context.Context) (V, func() (V, error), error) {
			return c.fillLent(ctx, owner, m)
		})
		switch {
		case !ran:
			c.dedup.Add(1)
			c.waited(ctx, start, 1, err)
			c.lent.Put(lb) // not read into: v, or err, came from the flight another caller ran
		case err == nil:
			return v, lb, nil
		}
		// After an error of this caller's fetch the buffers may still be written into: they
		// are dropped.
		if err == nil || !c.canFallBack(ctx, owner, err) {
			return v, nil, c.flightErr(err)
		}
		// Get's path: the owner is now marked down (or asked once more) and the key loaded
		// here, once for all callers.
	}
	v, err = c.flight(ctx, key, kb)
	return v, nil, err
}

// fillLent runs inside View's single flight of m's key: as fill, it checks the stores once more,
// then asks owner, reading the value into m.lb. own makes the copy the callers that joined the
// flight get, when the value shares m.lb's memory.
func (c *Cache[K, V]) fillLent(ctx context.Context, owner string, m miss[K, V]) (v V, own func() (V, error), err error) {
	m.st = c.stamp(m.kb)
	if it, ok := c.lookup(m.key); ok {
		return it.v, nil, it.failure()
	}
	fctx, cancel := c.fetchContext(ctx)
	v, err = c.fetch(fctx, owner, &m)
	if cancel != nil {
		cancel()
	}
	if err != nil || m.lb.shared == nil {
		return v, nil, err
	}
	raw := m.lb.shared
	return v, func() (V, error) { return c.decode(bytes.Clone(raw)) }, nil
}

// fetchContext bounds a View's remote fetch by the load timeout, as the single flight bounds
// Get's. A context that can never end gets a deadline without a timer (the transport honours
// deadlines); one whose own deadline comes first is used as it is.
func (c *Cache[K, V]) fetchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	at := time.Now().Add(c.loadTimeout)
	if d, ok := ctx.Deadline(); ok && !d.After(at) {
		return ctx, nil
	}
	if ctx.Done() == nil {
		return deadline.Context{Context: ctx, At: at}, nil
	}
	return context.WithDeadline(ctx, at)
}
