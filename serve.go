package groupcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

// This file is the cache's side of the node's server: it answers the requests of peers.

// serve answers a peer's request for key bytes kb: from the main store, or by loading the value
// here. The owner never forwards a request, even when its ring says another peer owns the key, so
// two nodes that briefly disagree on the ring cannot bounce a request between them.
func (c *Cache[K, V]) serve(ctx context.Context, kb []byte) (peer.Value, error) {
	if c.closed.Load() {
		return peer.Value{}, c.errGone()
	}
	c.cluster.peerRequests.Add(1)
	key, err := c.decodeKey(kb)
	if err != nil {
		return peer.Value{}, err
	}
	if w, err, ok := c.served(key); ok {
		return w, err
	}
	ctx, end := c.span(ctx, observe.Span{Step: observe.Serve})
	v, err := c.serveMiss(ctx, key, kb)
	end(err)
	return v, err
}

// serveMiss answers a peer's request for key, whose bytes are kb, that missed the main store:
// with the value of its flight, which loads it here or waits for the load in progress.
func (c *Cache[K, V]) serveMiss(ctx context.Context, key K, kb []byte) (peer.Value, error) {
	m := c.newMiss(key, bytes.Clone(kb)) // the load may outlive this request
	m.forPeer = true
	var loaded *wireForm
	v, err, shared := c.flights.Do(ctx, key, func(lctx context.Context) (V, error) {
		m.st = c.stamp(m.kb)
		if it, ok := c.liveItem(key); ok {
			loaded = it.wire
			return it.v, it.failure()
		}
		it, err := c.load(lctx, &m)
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

// serveInline answers a peer's request for key bytes kb if it can without waiting: a hit (see
// served). ok false: it did nothing, serve answers (and says why when it refuses).
func (c *Cache[K, V]) serveInline(kb []byte) (v peer.Value, ok bool, err error) {
	if c.closed.Load() {
		return peer.Value{}, false, nil
	}
	key, err := c.decodeKey(kb)
	if err != nil {
		return peer.Value{}, false, nil
	}
	if v, err, ok = c.served(key); ok {
		c.cluster.peerRequests.Add(1)
	}
	return v, ok, err
}

// served answers a peer's request from the main store: ok reports a hit (a value, which may be
// stale and then starts a refresh, or a cached "not found"). The lookup counts in the store's
// hits and misses; peerLookups and peerHits say how many of them were peers', so that Stats
// counts only this process's own Gets.
func (c *Cache[K, V]) served(key K) (peer.Value, error, bool) {
	it, ok := c.store.Get(key)
	c.cluster.peerLookups.Add(1)
	if !ok {
		return peer.Value{}, nil, false
	}
	c.cluster.peerHits.Add(1)
	if err := it.failure(); err != nil {
		return peer.Value{}, wireError(err), true
	}
	if it.wire == nil {
		return peer.Value{}, nil, false
	}
	if mark := it.staleMark(); mark != 0 && c.now().UnixNano() >= mark {
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
	return c.sent(c.wireOf(enc)), nil
}

// sent counts the bytes of a reply to a peer and returns its wire value.
func (c *Cache[K, V]) sent(w *wireForm) peer.Value {
	c.cluster.bytesSent.Add(int64(len(w.Data)))
	c.cluster.bytesSentRaw.Add(int64(w.rawLen))
	return c.onWire(w)
}

// peek answers a peer's hand-off request: the value of key bytes kb if the main store holds it,
// "not found" otherwise. It never loads.
func (c *Cache[K, V]) peek(kb []byte) (peer.Value, error) {
	if c.closed.Load() {
		return peer.Value{}, c.errGone()
	}
	key, err := c.decodeKey(kb)
	if err != nil {
		return peer.Value{}, err
	}
	it, ok := c.liveItem(key)
	if !ok || it.wire == nil { // a cached "not found" is not handed off: the new owner asks again
		return peer.Value{}, wireStatus(peer.StatusNotFound, nil)
	}
	return c.sent(it.wire), nil
}

// peekMany is peek for many keys.
func (c *Cache[K, V]) peekMany(kbs [][]byte) ([]peer.Result, error) {
	if c.closed.Load() {
		return nil, c.errGone()
	}
	res := make([]peer.Result, len(kbs))
	for i, kb := range kbs {
		res[i].Value, res[i].Err = c.peek(kb)
	}
	return res, nil
}

// serveMany answers a peer's GetMany: each key from the main store, or loaded here (with the
// other keys missed, through the BatchLoader when there is one). Like serve, it never forwards.
func (c *Cache[K, V]) serveMany(ctx context.Context, kbs [][]byte) ([]peer.Result, error) {
	if c.closed.Load() {
		return nil, c.errGone()
	}
	c.cluster.peerRequests.Add(int64(len(kbs)))
	res := make([]peer.Result, len(kbs))
	keys := make([]K, len(kbs))
	bad := make([]bool, len(kbs))
	first := make(map[K]int, len(kbs)) // index of each key's first place
	var misses []miss[K, V]
	var places []int // misses[j] is for kbs[places[j]]
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
		misses = append(misses, c.newMiss(k, bytes.Clone(kb))) // the loads may outlive this request
		places = append(places, i)
	}
	c.serveMisses(ctx, misses, places, res)
	for i := range kbs {
		if j := first[keys[i]]; !bad[i] && j != i {
			res[i] = res[j]
		}
	}
	return res, nil
}

// serveMisses fills the misses of a peer's GetMany, loaded here with the other keys missed, and
// puts their replies in res at places.
func (c *Cache[K, V]) serveMisses(ctx context.Context, misses []miss[K, V], places []int, res []peer.Result) {
	if len(misses) == 0 {
		return
	}
	ks := make([]K, len(misses))
	byKey := make(map[K]*miss[K, V], len(misses))
	for j := range misses {
		ks[j] = misses[j].key
		byKey[ks[j]] = &misses[j]
	}
	ctx, end := c.span(ctx, observe.Span{Step: observe.Serve, Keys: len(ks)})
	defer end(nil) // one key's failure is in its reply, not the request's
	rs := c.flights.DoMany(ctx, ks, func(lctx context.Context, ks []K, set func(int, V, error)) {
		b := &batch[K, V]{ms: make([]miss[K, V], len(ks)), set: set}
		var local []int
		for i, k := range ks {
			b.ms[i] = *byKey[k]
			b.ms[i].st = c.stamp(b.ms[i].kb)
			if it, ok := c.liveItem(k); ok {
				set(i, it.v, it.failure())
				continue
			}
			local = append(local, i)
		}
		c.cluster.peerLoads.Add(int64(len(local)))
		c.loadMany(lctx, b, local)
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
		res[i].Value, res[i].Err = c.reply(ks[j], r.Val)
	}
}

// setFromPeer stores a value a peer sent with Set: this node owns key. Its lifetime counts from
// now, bounded by peerExpiry.
func (c *Cache[K, V]) setFromPeer(kb []byte, val peer.Value) error {
	if c.closed.Load() {
		return c.errGone()
	}
	key, it, size, err := c.fromPeer(kb, val)
	if err != nil {
		return err
	}
	c.setLocal(key, kb, it, size, it.wire.expires)
	return nil
}

// fromPeer decodes the key and value a peer sent (val aliases the request: the item keeps
// copies) into the item to store, its cost, and its expiry (item.wire.expires).
func (c *Cache[K, V]) fromPeer(kb []byte, val peer.Value) (key K, it item[V], size int64, err error) {
	if key, err = c.decodeKey(kb); err != nil {
		return key, it, 0, err
	}
	raw, err := val.Raw(int(c.maxValue))
	if err != nil {
		return key, it, 0, wireStatus(peer.StatusTooLarge, err)
	}
	var data []byte
	if val.Compressed {
		data = bytes.Clone(val.Data) // raw is fresh; the compressed bytes alias the request
	} else {
		raw = bytes.Clone(raw)
		data = raw
	}
	v, err := c.decode(raw)
	if err != nil {
		return key, it, 0, wireStatus(peer.StatusBadRequest, err)
	}
	if size, err = c.peerSize(v, raw, data, val.Compressed); err != nil {
		return key, it, 0, err
	}
	if size += int64(len(kb)); size > c.maxValue {
		c.tooLarge.Add(1)
		return key, it, 0, wireStatus(peer.StatusTooLarge, fmt.Errorf("cache %q: value of %d bytes over the limit of %d", c.name, size, c.maxValue))
	}
	expires := c.peerExpiry(c.now().UnixNano(), val.TTL)
	w := &wireForm{Value: peer.Value{Data: data, Compressed: val.Compressed}, rawLen: len(raw), expires: expires}
	return key, item[V]{v: v, wire: w}, size, nil
}

// peerSize returns the cost of a value a peer sent, decoded as v from raw: the sizer's answer or
// raw's length, plus the compressed bytes data kept with it when it came compressed.
func (c *Cache[K, V]) peerSize(v V, raw, data []byte, compressed bool) (int64, error) {
	size := int64(len(raw))
	if c.sizer != nil {
		var err error
		if size, err = c.size(v); err != nil {
			return 0, err
		}
	}
	if compressed {
		size += int64(len(data))
	}
	return size, nil
}

// removeFromPeer drops keys a peer asked to remove.
func (c *Cache[K, V]) removeFromPeer(kbs [][]byte) error {
	if c.closed.Load() {
		return c.errGone()
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

// maxClockSkew is how far ahead of this node's clock a peer's Clear generation (a time in Unix
// nanoseconds, see Clear) may be. Past it the Clear is refused: one request must not push the
// generation out of reach of later Clears.
const maxClockSkew = time.Minute

// clearFromPeer empties the cache for a peer's Clear of generation gen: it adopts gen when gen is
// higher than the cache's generation, and its own generation plus one otherwise, so a peer's Clear
// always empties the cache. A generation more than maxClockSkew ahead of this node's clock is
// refused with StatusBadRequest, and nothing is cleared.
func (c *Cache[K, V]) clearFromPeer(gen uint64) error {
	if c.closed.Load() {
		return c.errGone()
	}
	now := c.now()
	if limit := uint64(max(now.Add(maxClockSkew).UnixNano(), 0)); gen > limit {
		return wireStatus(peer.StatusBadRequest, fmt.Errorf(
			"cache %q: Clear generation %d is more than %v ahead of this node's clock (%d): refused; are the nodes' clocks synchronised?",
			c.name, gen, maxClockSkew, now.UnixNano()))
	}
	for !c.adopt(max(gen, c.gen.Load()+1)) { // false: another Clear moved it meanwhile; go past that
	}
	return nil
}

// decodeKey decodes a key a peer sent, checked against the key length limit.
func (c *Cache[K, V]) decodeKey(kb []byte) (k K, err error) {
	defer c.recoverInto(&err, "key codec")
	if len(kb) > c.maxKey {
		return k, wireStatus(peer.StatusBadRequest, fmt.Errorf("key of %d bytes over the limit of %d", len(kb), c.maxKey))
	}
	if k, err = c.keys.Decode(kb); err != nil {
		return k, wireStatus(peer.StatusBadRequest, err)
	}
	return k, nil
}

// The errors below are what the node's server answers peers: an error holding a *peer.Error
// with a Status sends that status, anything else StatusInternal with its message.

// errGone is the answer to a peer's request for a cache that is closed: as if it did not exist.
func (c *Cache[K, V]) errGone() error {
	return &peer.Error{Status: peer.StatusUnknownCache, Msg: fmt.Sprintf("cache %q closed", c.name)}
}

// wireStatus returns an error that answers a peer with st, err's text as the message (the server
// sends none for a not-found status).
func wireStatus(st peer.Status, err error) error {
	return &peer.Error{Status: st, Err: err}
}

// wireError maps a load's error to what the server answers for it: "not found" and "too large"
// with their statuses, anything else as StatusInternal with its message (a status another peer
// answered this node, in a flight this request joined, is not this node's answer).
func wireError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return wireStatus(peer.StatusNotFound, err)
	case errors.Is(err, ErrTooLarge):
		return wireStatus(peer.StatusTooLarge, err)
	case peer.StatusOf(err) != peer.StatusOK:
		return errors.New(err.Error())
	}
	return err
}
