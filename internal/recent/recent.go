// Package recent keeps what a node saw lately, for its operators: the last failures, and the
// keys fetched most often. Both are small, bounded and safe for concurrent use; both sit on slow
// paths only (a failure, a fetch from a peer).
package recent

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/typedcache/groupcache/observe"
)

// FailureSlots is the number of failures a Failures keeps.
const FailureSlots = 20

// Failures keeps the last FailureSlots failures; a failure that repeats the one before it (same
// cache, peer and message) counts in it instead of taking a slot. The zero value is ready.
type Failures struct {
	mu    sync.Mutex
	slots [FailureSlots]observe.Failure // guarded by mu; slots[(next-1)%FailureSlots] is the newest
	next  int                           // guarded by mu: slots filled so far, all time
}

// Add records a failure at at.
func (f *Failures) Add(at time.Time, cache, peer string, err error) {
	msg := Text(err.Error(), 200)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next > 0 {
		last := &f.slots[(f.next-1)%FailureSlots]
		if last.Cache == cache && last.Peer == peer && last.Msg == msg {
			last.Count++
			last.Time = at
			return
		}
	}
	f.slots[f.next%FailureSlots] = observe.Failure{Time: at, Cache: cache, Peer: peer, Msg: msg, Count: 1}
	f.next++
}

// List returns the failures kept, newest first.
func (f *Failures) List() []observe.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(f.next, FailureSlots)
	out := make([]observe.Failure, n)
	for i := range n {
		out[i] = f.slots[(f.next-1-i)%FailureSlots]
	}
	return out
}

// Newest merges lists of failures, each newest first, into the newest n of them, newest first.
func Newest(n int, lists ...[]observe.Failure) []observe.Failure {
	all := slices.Concat(lists...)
	slices.SortStableFunc(all, func(a, b observe.Failure) int { return b.Time.Compare(a.Time) })
	return all[:min(n, len(all))]
}

// Text returns s cut to at most max bytes (then ending in "..."), with anything unprintable
// escaped as Go would quote it: words that may come from a hostile peer, or a key, kept short
// and harmless.
func Text(s string, max int) string {
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// Key slots: a Keys tracks this many keys and reports the hottest of them.
const (
	keySlots = 32
	// TopKeys is the number of keys Keys.Top reports at most.
	TopKeys = 10
	// decayEvery is the number of keys seen after which every count is halved, so the list
	// follows what is hot now.
	decayEvery = 10_000
)

// Keys estimates the keys seen most often with the space-saving algorithm (Metwally, Agrawal
// and El Abbadi, 2005): it tracks keySlots keys; a key not tracked takes the place of the one
// with the lowest count, and inherits that count plus one. A key seen more than a 1/keySlots
// share of the time is always tracked; a count may exceed the key's true count by the count it
// inherited. Counts are halved every decayEvery keys. Keys are kept as they are and turned into
// text only by Top, so that seeing one allocates nothing. The zero value is ready.
type Keys[K any] struct {
	mu    sync.Mutex
	slots [keySlots]keySlot[K] // guarded by mu
	used  int                  // guarded by mu: slots in use
	seen  int                  // guarded by mu: keys seen since the last halving
}

type keySlot[K any] struct {
	hash  uint64
	key   K
	count int64
}

// See counts one sighting of key, whose hash (any good 64-bit hash of it) is hash.
func (k *Keys[K]) See(hash uint64, key K) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen++; k.seen >= decayEvery {
		k.decay()
	}
	low := 0
	for i := range k.used {
		s := &k.slots[i]
		if s.hash == hash {
			s.count++
			return
		}
		if s.count < k.slots[low].count {
			low = i
		}
	}
	if k.used < keySlots {
		low = k.used
		k.used++
	}
	s := &k.slots[low]
	*s = keySlot[K]{hash: hash, key: key, count: s.count + 1}
}

// decay halves every count and frees the slots that reach 0. Caller holds mu.
func (k *Keys[K]) decay() {
	k.seen = 0
	kept := 0
	for i := range k.used {
		if s := k.slots[i]; s.count > 1 {
			s.count /= 2
			k.slots[kept] = s
			kept++
		}
	}
	clear(k.slots[kept:k.used])
	k.used = kept
}

// Top returns the TopKeys keys with the highest counts, highest first, each as text (fmt's %v,
// cut to 64 bytes, anything unprintable escaped).
func (k *Keys[K]) Top() []observe.KeyCount {
	k.mu.Lock()
	slots := make([]keySlot[K], k.used)
	copy(slots, k.slots[:k.used])
	k.mu.Unlock()
	slices.SortStableFunc(slots, func(a, b keySlot[K]) int { return cmp.Compare(b.count, a.count) })
	out := make([]observe.KeyCount, min(TopKeys, len(slots)))
	for i := range out {
		out[i] = observe.KeyCount{Key: Text(fmt.Sprint(slots[i].key), 64), Count: slots[i].count}
	}
	return out
}
