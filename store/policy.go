package store

// This file holds the S3-FIFO eviction policy. Everything here runs under Store.mu, except the
// reader's frequency bump in Store.Get, which is an atomic store on entry.freq.

// Queue an entry is in.
const (
	qNone  uint8 = iota // removed (evicted, replaced, deleted or cleared)
	qSmall              // the small probationary FIFO
	qMain               // the main FIFO
)

const (
	// maxFreq saturates the per-entry access counter (2 bits).
	maxFreq = 3
	// smallPercent is the share of MaxBytes that the small FIFO may hold before eviction takes
	// from it.
	smallPercent = 10
	// promoteFreq is the number of accesses while in the small FIFO that earns an entry its place
	// in the main FIFO when it reaches the small FIFO's tail.
	promoteFreq = 1
)

// list is an intrusive doubly-linked FIFO: new entries at head, eviction from tail.
type list[K comparable, V any] struct {
	head, tail *entry[K, V]
	bytes      int64
	n          int
}

func (l *list[K, V]) pushHead(e *entry[K, V]) {
	e.prev = nil
	e.next = l.head
	if l.head != nil {
		l.head.prev = e
	} else {
		l.tail = e
	}
	l.head = e
	l.bytes += e.size
	l.n++
}

func (l *list[K, V]) unlink(e *entry[K, V]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	l.bytes -= e.size
	l.n--
}

// replace puts ne where old is, keeping the queue order.
func (l *list[K, V]) replace(old, ne *entry[K, V]) {
	ne.prev, ne.next = old.prev, old.next
	if old.prev != nil {
		old.prev.next = ne
	} else {
		l.head = ne
	}
	if old.next != nil {
		old.next.prev = ne
	} else {
		l.tail = ne
	}
	old.prev, old.next = nil, nil
	l.bytes += ne.size - old.size
}

// ghost remembers the hashes of keys recently evicted from the small FIFO, oldest first. A key
// that comes back while remembered goes straight to the main FIFO.
type ghost struct {
	ring  []uint64          // hashes; len is a power of two
	start uint64            // sequence number of the oldest hash in ring
	n     int               // hashes in ring
	seq   map[uint64]uint64 // hash -> sequence number of its newest copy in ring
}

func (g *ghost) reset() {
	g.ring, g.start, g.n = nil, 0, 0
	g.seq = make(map[uint64]uint64)
}

// add remembers h and forgets the oldest hashes beyond limit.
func (g *ghost) add(h uint64, limit int) {
	if limit <= 0 {
		return
	}
	for g.n >= limit {
		g.pop()
	}
	if g.n == len(g.ring) {
		g.grow()
	}
	pos := g.start + uint64(g.n)
	g.ring[pos&uint64(len(g.ring)-1)] = h
	g.seq[h] = pos
	g.n++
}

func (g *ghost) pop() {
	h := g.ring[g.start&uint64(len(g.ring)-1)]
	if p, ok := g.seq[h]; ok && p == g.start {
		delete(g.seq, h)
	}
	g.start++
	g.n--
}

func (g *ghost) grow() {
	size := max(len(g.ring)*2, 64)
	ring := make([]uint64, size)
	for i := range g.n {
		pos := g.start + uint64(i)
		ring[pos&uint64(size-1)] = g.ring[pos&uint64(len(g.ring)-1)]
	}
	g.ring = ring
}

// take reports whether h is remembered and forgets it.
func (g *ghost) take(h uint64) bool {
	if _, ok := g.seq[h]; ok {
		delete(g.seq, h)
		return true
	}
	return false
}

// link adds a new entry, whose key hashes to h, to the policy: to the main FIFO if its key was
// evicted from the small FIFO recently (a ghost hit), else to the small FIFO.
func (s *Store[K, V]) link(e *entry[K, V], h uint64) {
	if s.ghost.take(h) {
		e.queue = qMain
		s.main.pushHead(e)
	} else {
		e.queue = qSmall
		s.small.pushHead(e)
	}
}

// unlink removes e from its queue.
func (s *Store[K, V]) unlink(e *entry[K, V]) {
	switch e.queue {
	case qSmall:
		s.small.unlink(e)
	case qMain:
		s.main.unlink(e)
	}
	e.queue = qNone
}

// evictOne removes one entry chosen by S3-FIFO and returns false only if the store is empty.
//
// The small FIFO is evicted from while it holds at least its share of MaxBytes (or the main FIFO
// is empty): its tail moves to the main FIFO if it was read since insertion, else it is dropped
// and its hash remembered in the ghost. Otherwise the main FIFO's tail is dropped if its counter
// is zero, or reinserted at the head with the counter decremented (a CLOCK with 2-bit counters).
// Expired entries are dropped wherever they are met, whatever their counter.
func (s *Store[K, V]) evictOne() bool {
	var now int64
	nowSet := false
	expired := func(e *entry[K, V]) bool {
		if e.expiresAt == 0 {
			return false
		}
		if !nowSet {
			now, nowSet = s.now(), true
		}
		return now >= e.expiresAt
	}

	for s.small.n > 0 && (s.small.bytes >= s.smallMax || s.main.n == 0) {
		t := s.small.tail
		if t.freq.Load() >= promoteFreq && !expired(t) {
			s.small.unlink(t)
			t.freq.Store(0)
			t.queue = qMain
			s.main.pushHead(t)
			if s.main.bytes > s.max-s.smallMax {
				return s.evictMain(expired)
			}
			continue
		}
		h := s.drop(t)
		if t.expiresAt == 0 || !expired(t) {
			s.ghost.add(h, s.main.n+s.small.n)
		}
		return true
	}
	return s.evictMain(expired)
}

func (s *Store[K, V]) evictMain(expired func(*entry[K, V]) bool) bool {
	// Readers may bump counters while we go round; the budget bounds the reinsertions so that a
	// main FIFO whose every entry is being read cannot keep the writer going round forever.
	budget := s.main.n * maxFreq
	for s.main.n > 0 {
		t := s.main.tail
		if f := t.freq.Load(); f > 0 && budget > 0 && !expired(t) {
			budget--
			s.main.unlink(t)
			t.freq.Store(f - 1)
			s.main.pushHead(t)
			continue
		}
		s.drop(t)
		return true
	}
	if s.small.n > 0 {
		s.drop(s.small.tail)
		return true
	}
	return false
}

// drop evicts e: out of its queue and its table, bytes released, eviction counted. It returns
// the key's hash.
func (s *Store[K, V]) drop(e *entry[K, V]) uint64 {
	h := s.hash(e.key)
	s.unlink(e)
	s.shardOf(h).remove(e, h, s.tomb)
	s.release(e)
	s.evictions.Add(1)
	return h
}
