package groupcache

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/recent"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
	"github.com/typedcache/groupcache/store"
)

// This file records what operators see of a cache and a node beyond the counters: latencies,
// evictions of fresh entries, hot keys, the last failures, and the tracer's spans. Nothing here
// runs on a hit.

// cacheObs is what a cache records for its operators; every field is safe for concurrent use.
type cacheObs struct {
	loadLatency  observe.Recorder // loader calls (Load, LoadMany)
	fetchLatency observe.Recorder // requests to owners for values
	evictionAge  observe.Recorder // ages of the entries evicted while fresh
	evictedFresh atomic.Int64
	failures     recent.Failures // the last failures
}

// fill copies what o recorded into s.
func (o *cacheObs) fill(s *Stats) {
	s.FetchLatency = o.fetchLatency.Snapshot()
	s.LoadLatency = o.loadLatency.Snapshot()
	s.EvictedFresh = o.evictedFresh.Load()
	s.EvictionAge = o.evictionAge.Snapshot()
	s.Failures = o.failures.List()
}

// peerRecord is what a node records of one peer; every field is safe for concurrent use.
type peerRecord struct {
	fetch  observe.Recorder // requests to it for values, by every cache
	errors atomic.Int64     // failed requests to it, and keys it answered with an error
}

// peerRecord returns the record of the peer at addr, made on first use.
func (n *Node) peerRecord(addr string) *peerRecord {
	if v, ok := n.peerObs.Load(addr); ok {
		return v.(*peerRecord)
	}
	v, _ := n.peerObs.LoadOrStore(addr, new(peerRecord))
	return v.(*peerRecord)
}

// mono returns the time since the cache was made by the monotonic clock, for latencies: one
// clock read, where time.Now makes two (the wall clock's and the monotonic one).
func (c *Cache[K, V]) mono() time.Duration { return time.Since(c.epoch) }

// noEnd ends a span that no tracer started.
func noEnd(error) {}

// span starts a span of the cache's tracer, when it has one: s's step, with the cache's name. With
// a tracer that propagates (observe.Propagator), a Serve span is the child of the span of the peer
// that asked, when the request carried its trace context, and the context of a Fetch or Handoff
// span carries the tracer, so that the node's client sends the span's trace context (traceInject).
func (c *Cache[K, V]) span(ctx context.Context, s observe.Span) (context.Context, func(error)) {
	if c.tracer == nil {
		return ctx, noEnd
	}
	s.Cache = c.name
	s.Keys = max(s.Keys, 1)
	p, propagates := c.tracer.(observe.Propagator)
	if b, ok := ctx.Value(remoteTraceKey{}).([]byte); ok && propagates && s.Step == observe.Serve {
		ctx = p.Extract(ctx, b)
	}
	ctx, end := c.tracer.Start(ctx, s)
	if propagates && (s.Step == observe.Fetch || s.Step == observe.Handoff) {
		ctx = context.WithValue(ctx, propagatorKey{}, p)
	}
	return ctx, end
}

// propagatorKey keys the tracer whose span's trace context a request to a peer carries;
// remoteTraceKey the trace context a peer's request carried.
type propagatorKey struct{}
type remoteTraceKey struct{}

// traceInject is the node's client's peer.WithTraceContext injector: the trace context of the
// span of a Fetch or Handoff whose cache traces with an observe.Propagator, else nothing.
func traceInject(ctx context.Context) []byte {
	if p, ok := ctx.Value(propagatorKey{}).(observe.Propagator); ok {
		return p.Inject(ctx)
	}
	return nil
}

// traceExtract is the node's server's peer.WithTraceContext extractor: it keeps a copy of the
// trace context a request carried, for the served cache's tracer (span), which alone knows how
// to read it.
func traceExtract(ctx context.Context, b []byte) context.Context {
	return context.WithValue(ctx, remoteTraceKey{}, bytes.Clone(b))
}

// waitStart returns the time a caller starts waiting for its flight when the cache has a
// tracer (the start of a WaitFlight span, should it join another caller's flight), the zero
// time otherwise.
func (c *Cache[K, V]) waitStart() time.Time {
	if c.tracer == nil {
		return time.Time{}
	}
	return time.Now()
}

// waited tells the tracer that this caller waited, from start, for flights other callers had
// started for keys of its keys, which ended with err.
func (c *Cache[K, V]) waited(ctx context.Context, start time.Time, keys int, err error) {
	if c.tracer == nil || keys == 0 {
		return
	}
	_, end := c.tracer.Start(ctx, observe.Span{Step: observe.WaitFlight, Cache: c.name, Keys: keys, Start: start})
	end(err)
}

// fetched records a request for values to peer, made with ctx, that started at start (by mono)
// and failed with err (nil on success): its latency, for the cache and the peer, and its
// failure, unless its caller gave up on it (ctx cancelled).
func (c *Cache[K, V]) fetched(ctx context.Context, peer string, start time.Duration, err error) {
	d := c.mono() - start
	c.obs.fetchLatency.Record(d)
	c.node.peerRecord(peer).fetch.Record(d)
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		c.peerError(peer, err)
	}
}

// peerError records err, the failure of a request to peer or a key's error in its reply,
// unless it says "not found" (an answer, not a failure).
func (c *Cache[K, V]) peerError(peer string, err error) {
	if notFound(err) {
		return
	}
	c.node.peerRecord(peer).errors.Add(1)
	c.failed(peer, err)
}

// notFound reports whether err says that a key does not exist: this package's ErrNotFound or a
// peer's answer.
func notFound(err error) bool {
	return errors.Is(err, ErrNotFound) || peer.StatusOf(err) == peer.StatusNotFound
}

// failed records a failure of the cache (with the peer involved, if any) among its last ones.
func (c *Cache[K, V]) failed(peer string, err error) {
	c.obs.failures.Add(time.Now(), c.name, peer, err)
}

// loadFailure records the failure of a load, unless it is a "not found" (an answer) or a
// panic (recorded where it was recovered).
func (c *Cache[K, V]) loadFailure(err error) {
	if _, panicked := errors.AsType[*PanicError](err); panicked || notFound(err) {
		return
	}
	c.failed("", err)
}

// removed is told by the stores of every entry that leaves them (after their lock is
// released): it counts the entries evicted while fresh, with their ages, and tells the removal
// listener of values.
func (c *Cache[K, V]) removed(r store.Removal[K, item[V]]) {
	if r.Reason == store.Evicted {
		if mark := r.Value.staleMark(); mark != 0 && c.now().UnixNano() >= mark {
			r.Reason = store.Expired // kept past its TTL for stale-while-revalidate
		} else {
			c.obs.evictedFresh.Add(1)
			c.obs.evictionAge.Record(r.Age)
		}
	}
	if c.onRemove != nil && r.Value.failure() == nil {
		c.tellRemoved(r.Key, r.Value.v, r.Reason)
	}
}

// tellRemoved calls the removal listener; a panic in it is logged and recorded (recoverInto),
// and goes no further.
func (c *Cache[K, V]) tellRemoved(key K, v V, reason store.Reason) {
	var panicked error
	defer c.recoverInto(&panicked, "removal listener")
	c.onRemove(key, v, reason)
}
