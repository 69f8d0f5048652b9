package store

// This file holds the eviction policy. Everything here runs under Store.mu, except the reader's
// frequency bump in Store.Get, which is an atomic store on entry.freq.

// Queue an entry is in.
const (
	qNone  uint8 = iota // removed (evicted, replaced, deleted or cleared)
	qSmall              // the window: a FIFO that takes new entries
	qProb               // main's probation segment: admitted, not read since
	qProt               // main's protected segment: read while in the window or in probation
)

const (
	// maxFreq saturates the per-entry access counter (2 bits).
	maxFreq = 3
	// protPercent is the protected segment's share of main.
	protPercent = 95
	// admitMargin is by how much a candidate's estimate must exceed the victim's for the
	// candidate to replace it: with 1, a key seen as often as the victim plus this once (the
	// request that brought it in) does not evict it.
	admitMargin = 1
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

// link adds a new entry, whose key hashes to h, to the window and counts the access in the
// sketch.
func (s *Store[K, V]) link(e *entry[K, V], h uint64) {
	e.queue = qSmall
	s.small.pushHead(e)
	s.sketch.add(h, 1)
}

// queueOf returns the list that queue q names.
func (s *Store[K, V]) queueOf(q uint8) *list[K, V] {
	switch q {
	case qSmall:
		return &s.small
	case qProb:
		return &s.prob
	case qProt:
		return &s.prot
	}
	return nil
}

// unlink removes e from its queue.
func (s *Store[K, V]) unlink(e *entry[K, V]) {
	if l := s.queueOf(e.queue); l != nil {
		l.unlink(e)
	}
	e.queue = qNone
}

// move puts e at the head of queue q (e must be in a queue) with its access counter set to f.
func (s *Store[K, V]) move(e *entry[K, V], q uint8, f int32) {
	s.queueOf(e.queue).unlink(e)
	e.freq.Store(f)
	e.queue = q
	s.queueOf(q).pushHead(e)
}

// mainBytes is what main (probation and protected) holds.
func (s *Store[K, V]) mainBytes() int64 { return s.prob.bytes + s.prot.bytes }

// expiry tells expired entries apart, reading the clock at most once per eviction and only for
// an entry that has an expiry.
type expiry struct {
	now   func() int64
	t     int64
	ready bool
}

func (x *expiry) past(at int64) bool {
	if at == 0 {
		return false
	}
	return x.time() >= at
}

// time returns the time of the eviction, read once.
func (x *expiry) time() int64 {
	if !x.ready {
		x.t, x.ready = x.now(), true
	}
	return x.t
}

// evictOne removes one entry to make room for a new one of need bytes, which will enter the
// window, and returns false only if the store is empty.
//
// While the window would hold more than its share of MaxBytes, its tail is the candidate. A
// candidate read while in the window moves to main's protected segment; one that was not moves
// to main's probation segment if main has room for it within its share, else it competes with
// main's victim (see victim) and the sketch decides: it replaces the victim only if its key was
// seen more often recently, and is evicted otherwise. When the window is within its share, main's
// victim is evicted. Expired entries are evicted wherever they are met.
func (s *Store[K, V]) evictOne(need int64) bool {
	x := expiry{now: s.now}
	for s.small.n > 0 && (s.small.bytes+need > s.smallMax || s.prob.n+s.prot.n == 0) {
		c := s.small.tail
		if x.past(c.expiresAt) {
			s.drop(c, &x)
			return true
		}
		hc := s.hash(c.key)
		if f := c.freq.Load(); f > 0 {
			s.sketch.add(hc, int(f)) // the hits it had in the window
			s.protect(c)
			continue
		}
		if s.mainBytes()+c.size <= s.max-s.smallMax || s.prob.n+s.prot.n == 0 {
			s.move(c, qProb, 0)
			continue
		}
		v, hv := s.victim(&x, s.pickNewest())
		if !x.past(v.expiresAt) && s.sketch.estimate(hc) <= s.sketch.estimate(hv)+admitMargin {
			s.dropHashed(c, hc, &x)
			return true
		}
		s.dropHashed(v, hv, &x)
		s.move(c, qProb, 0)
		return true
	}
	return s.evictMain(&x)
}

// protect moves e to the head of the protected segment and, while that segment holds more than
// its share of main, demotes protected entries to probation: the segment is a CLOCK whose tail,
// if read since the hand last passed it, goes back to the head with its counter decremented (the
// read counted in the sketch), and otherwise moves to probation.
func (s *Store[K, V]) protect(e *entry[K, V]) {
	s.move(e, qProt, 0)
	limit := (s.max - s.smallMax) * protPercent / 100
	budget := s.prot.n * maxFreq
	for s.prot.bytes > limit && s.prot.n > 1 {
		t := s.prot.tail
		if f := t.freq.Load(); f > 0 && budget > 0 {
			budget--
			s.move(t, qProt, f-1)
			s.sketch.add(s.hash(t.key), 1)
			continue
		}
		s.move(t, qProb, 0)
	}
}

// victim returns main's victim with its key's hash: an entry of probation not read since it came
// there (or an expired one), its oldest or, with newest, its newest. A probation entry that was
// read moves to the protected segment instead; when probation is empty, the protected tail is
// demoted to it. main must not be empty. Readers may bump counters meanwhile; a budget bounds
// the moves, after which the entry at hand is returned whatever its counter.
func (s *Store[K, V]) victim(x *expiry, newest bool) (*entry[K, V], uint64) {
	budget := (s.prob.n + s.prot.n) * maxFreq
	for {
		if s.prob.n == 0 {
			s.move(s.prot.tail, qProb, 0)
		}
		t := s.prob.tail
		if newest {
			t = s.prob.head
		}
		h := s.hash(t.key)
		f := t.freq.Load()
		if f == 0 || budget == 0 || x.past(t.expiresAt) {
			return t, h
		}
		budget--
		s.sketch.add(h, int(f))
		s.protect(t)
	}
}

// pickNewest reports whether this contest's victim is probation's newest entry: a share
// s.newest of contests take it (spread evenly), the others take the oldest.
func (s *Store[K, V]) pickNewest() bool {
	s.newestAcc += s.newest
	if s.newestAcc < 1 {
		return false
	}
	s.newestAcc--
	return true
}

// evictMain evicts main's victim, or the window's tail when main is empty.
func (s *Store[K, V]) evictMain(x *expiry) bool {
	if s.prob.n+s.prot.n > 0 {
		v, h := s.victim(x, false)
		s.dropHashed(v, h, x)
		return true
	}
	if s.small.n > 0 {
		s.drop(s.small.tail, x)
		return true
	}
	return false
}

// drop evicts e: out of its queue and its table, bytes released, eviction counted, and reported
// to OnRemove as expired or evicted (by x's clock).
func (s *Store[K, V]) drop(e *entry[K, V], x *expiry) { s.dropHashed(e, s.hash(e.key), x) }

// dropHashed is drop for an entry whose key's hash h is known.
func (s *Store[K, V]) dropHashed(e *entry[K, V], h uint64, x *expiry) {
	s.unlink(e)
	s.shardOf(h).remove(e, h, s.tomb)
	s.release(e)
	s.evictions.Add(1)
	if s.onRemove != nil {
		reason := Evicted
		if x.past(e.expiresAt) {
			reason = Expired
		}
		s.report(e, reason, x.time())
	}
}
