package store

import "sync/atomic"

// slot is one cell of a shard's open-addressing table. Readers load it without a lock; only a
// writer holding the store's lock stores into it.
//
// A slot is empty (e == nil), a tombstone (e == the store's tombstone sentinel) or live. hash is a
// filter that lets a probe skip a slot without dereferencing its entry; it may lag behind e for a
// moment while a writer reuses a tombstone, which is harmless because a match is always confirmed
// by comparing the entry's own key.
type slot[K comparable, V any] struct {
	hash atomic.Uint64
	e    atomic.Pointer[entry[K, V]]
}

// table is a linear-probing hash table of entry pointers. A table is never resized in place: the
// writer builds a new one and publishes it with an atomic store, so a reader that still holds the
// old table sees a consistent (if slightly stale) set of entries, and every table keeps at least a
// quarter of its slots empty, so a probe always terminates.
type table[K comparable, V any] struct {
	mask  uint64
	slots []slot[K, V]
}

const minTableSize = 8

func newTable[K comparable, V any](size int) *table[K, V] {
	return &table[K, V]{mask: uint64(size - 1), slots: make([]slot[K, V], size)}
}

// find is the lock-free lookup used by readers.
func (t *table[K, V]) find(h uint64, k K, tomb *entry[K, V]) *entry[K, V] {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		e := s.e.Load()
		if e == nil {
			return nil
		}
		if s.hash.Load() == h && e != tomb && e.key == k {
			return e
		}
	}
}

// lookup is the writer's probe: it returns the slot index of k, or -1 and the index where k
// should be inserted (the first tombstone on the probe path, else the empty slot that ended it).
func (t *table[K, V]) lookup(h uint64, k K, tomb *entry[K, V]) (found int, insertAt int) {
	insertAt = -1
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		e := s.e.Load()
		if e == nil {
			if insertAt < 0 {
				insertAt = int(i)
			}
			return -1, insertAt
		}
		if e == tomb {
			if insertAt < 0 {
				insertAt = int(i)
			}
			continue
		}
		if s.hash.Load() == h && e.key == k {
			return int(i), -1
		}
	}
}

// indexOf returns the slot holding exactly e, whose hash is h (writer only); e must be in the
// table.
func (t *table[K, V]) indexOf(e *entry[K, V], h uint64) int {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		if t.slots[i].e.Load() == e {
			return int(i)
		}
	}
}

// shard is one table plus the read-side counters of the keys that hash to it. The table pointer
// (read by every Get) and the counters (written by every Get) sit on different cache lines, and
// the padding keeps neighbouring shards off each other's lines.
type shard[K comparable, V any] struct {
	tab   atomic.Pointer[table[K, V]]
	live  int // live slots in tab; guarded by Store.mu
	tombs int // tombstone slots in tab; guarded by Store.mu
	_     [cacheLine - 24]byte

	hits        atomic.Int64
	misses      atomic.Int64
	expirations atomic.Int64
	_           [cacheLine - 24]byte
}

const cacheLine = 64

// insert publishes e, whose hash is h, at slot index at (from lookup), growing or compacting the table first when
// live entries plus tombstones would pass 3/4 of its slots. Writer only.
func (sh *shard[K, V]) insert(e *entry[K, V], h uint64, at int, tomb *entry[K, V]) {
	t := sh.tab.Load()
	s := &t.slots[at]
	reuse := s.e.Load() == tomb
	if !reuse && (sh.live+sh.tombs+1)*4 > len(t.slots)*3 {
		t = sh.rebuild(t, tomb)
		_, at = t.lookup(h, e.key, tomb)
		s = &t.slots[at]
	}
	// Hash first, then the pointer: a reader that sees the new pointer also sees its hash.
	s.hash.Store(h)
	s.e.Store(e)
	sh.live++
	if reuse {
		sh.tombs--
	}
}

// remove turns the slot of e, whose hash is h, into a tombstone. Writer only.
func (sh *shard[K, V]) remove(e *entry[K, V], h uint64, tomb *entry[K, V]) {
	t := sh.tab.Load()
	t.slots[t.indexOf(e, h)].e.Store(tomb)
	sh.live--
	sh.tombs++
}

// rebuild copies the live entries into a fresh table sized for them (at most half full after the
// copy, so it also shrinks a table emptied by evictions) and publishes it.
func (sh *shard[K, V]) rebuild(old *table[K, V], tomb *entry[K, V]) *table[K, V] {
	size := minTableSize
	for size < (sh.live+1)*2 {
		size *= 2
	}
	t := newTable[K, V](size)
	for i := range old.slots {
		e := old.slots[i].e.Load()
		if e == nil || e == tomb {
			continue
		}
		h := old.slots[i].hash.Load() // exact for a live slot: only writers store, under Store.mu
		j := h & t.mask
		for t.slots[j].e.Load() != nil {
			j = (j + 1) & t.mask
		}
		t.slots[j].hash.Store(h)
		t.slots[j].e.Store(e)
	}
	sh.tombs = 0
	sh.tab.Store(t)
	return t
}
