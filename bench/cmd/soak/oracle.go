//go:build linux

package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// oracle knows, for every key, the oldest version a Get that starts now may return under the
// freshness contract (docs/reliability.md, "Freshness under faults"):
//
//   - a write (Set, Remove) that returned nil, and made while every node had the same peer set,
//     binds at once: no Get that starts after it returns an older version;
//   - a write that returned ErrIncomplete, or that overlapped a change of the peer set, binds
//     window later (the TTL plus the load timeout): a node that was not told may serve what it
//     held, or was loading, until that expires;
//   - a write that failed binds nothing (the application retries it); a later write does;
//   - a Clear binds the same way, for every key, with the versions the database had when the
//     Clear started.
//
// Besides, no Get may return a version the database never had (higher than its current one), or
// a value of another key or cache.
type oracle struct {
	db     *db
	start  time.Time
	window time.Duration
	keys   [][]keyState // [cache][key]
	clears []clearState // per cache
	// flux is odd while the peer set changes (the nodes are told one after the other).
	flux atomic.Uint64
}

type keyState struct {
	w         sync.Mutex // one write of the key at a time
	holdUntil time.Time  // guarded by w: after a failed write, the key is not written again before
	mu        sync.Mutex
	floor     uint64   // guarded by mu: the version of the latest write that binds
	pending   []bound  // guarded by mu: writes that bind later
	history   []string // guarded by mu: the last writes, to explain a wrong value
}

// note records a write of the key, for the explanation of a wrong value.
func (o *oracle) note(c, k int, what string, p *proc, inc int, v uint64, start, ack time.Time, kind string) {
	s := fmt.Sprintf("%s v%d via node %d#%d, %v..%v: %q", what, v, p.id, inc, o.since(start), o.since(ack), kind)
	ks := &o.keys[c][k]
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.history) >= 6 {
		ks.history = ks.history[1:]
	}
	ks.history = append(ks.history, s)
}

func (o *oracle) since(t time.Time) time.Duration { return t.Sub(o.start).Round(time.Microsecond) }

// explain returns the last writes of a key.
func (o *oracle) explain(c, k int) []string {
	ks := &o.keys[c][k]
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return slices.Clone(ks.history)
}

type bound struct {
	v  uint64
	at time.Time
}

type clearState struct {
	mu      sync.Mutex
	floor   []uint64 // per key: the versions of the Clears that bind
	pending []clearBound
}

type clearBound struct {
	snap []uint64
	at   time.Time
}

func newOracle(d *db, caches int, window time.Duration) *oracle {
	o := &oracle{db: d, start: time.Now(), window: window, keys: make([][]keyState, caches), clears: make([]clearState, caches)}
	for c := range o.keys {
		o.keys[c] = make([]keyState, d.keys)
		o.clears[c].floor = make([]uint64, d.keys)
	}
	return o
}

// floor returns the oldest version of key k of cache c that a Get starting now may return, and
// the version of the latest write acknowledged, bound or not (strict: a Get older than it but not
// older than floor saw a stale value the contract allows).
func (o *oracle) floor(c, k int, now time.Time) (floor, strict uint64) {
	ks := &o.keys[c][k]
	ks.mu.Lock()
	kept := ks.pending[:0]
	for _, b := range ks.pending {
		if !now.Before(b.at) {
			ks.floor = max(ks.floor, b.v)
			continue
		}
		strict = max(strict, b.v)
		kept = append(kept, b)
	}
	ks.pending = kept
	floor = ks.floor
	ks.mu.Unlock()
	cf, cs := o.clearFloor(c, k, now)
	return max(floor, cf), max(floor, strict, cf, cs)
}

// clearFloor is floor for the Clears of cache c.
func (o *oracle) clearFloor(c, k int, now time.Time) (floor, strict uint64) {
	cs := &o.clears[c]
	cs.mu.Lock()
	defer cs.mu.Unlock()
	kept := cs.pending[:0]
	for _, b := range cs.pending {
		if !now.Before(b.at) {
			for i, v := range b.snap {
				cs.floor[i] = max(cs.floor[i], v)
			}
			continue
		}
		strict = max(strict, b.snap[k])
		kept = append(kept, b)
	}
	cs.pending = kept
	return cs.floor[k], strict
}

// acked records a write of version v of key k of cache c acknowledged at ack: it binds at once when
// clean, a window later otherwise.
func (o *oracle) acked(c, k int, v uint64, clean bool, ack time.Time) {
	ks := &o.keys[c][k]
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if clean {
		ks.floor = max(ks.floor, v)
		return
	}
	ks.pending = append(ks.pending, bound{v: v, at: ack.Add(o.window)})
}

// cleared records a Clear of cache c that started when the database held snap, acknowledged at
// ack.
func (o *oracle) cleared(c int, snap []uint64, clean bool, ack time.Time) {
	cs := &o.clears[c]
	cs.mu.Lock()
	defer cs.mu.Unlock()
	at := ack
	if !clean {
		at = ack.Add(o.window)
	}
	cs.pending = append(cs.pending, clearBound{snap: snap, at: at})
}

// steady returns a token of the peer set's state for a write that starts now.
func (o *oracle) steady() uint64 { return o.flux.Load() }

// stillSteady reports whether no change of the peer set overlapped a write that started with tok.
func (o *oracle) stillSteady(tok uint64) bool { return tok%2 == 0 && o.flux.Load() == tok }

// verdict of one value a Get or GetMany returned.
type verdict int

const (
	fresh        verdict = iota
	staleAllowed         // older than the latest acknowledged write, within the contract's window
	wrong
)

// check judges val, returned for key k of cache c by a Get that started with floor and strict
// (see floor).
func (o *oracle) check(c, k int, val string, floor, strict uint64) verdict {
	v, ok := parseValue(cacheNames[c], keyName(k), val)
	switch {
	case !ok, v > o.db.version(c, k), v < floor:
		return wrong
	case v < strict:
		return staleAllowed
	}
	return fresh
}
