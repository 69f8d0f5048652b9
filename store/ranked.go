package store

import "iter"

// Ranked returns the live entries, most valuable first by the policy's own measure, until their
// costs (EntryOverhead included) add up to maxBytes: the protected segment (entries read again
// after they came in), then the other entries read since they came in or were last moved, then
// the rest; within each, main before the window and newest first. It is what a node hands to the
// peers that take its keys over.
//
// The order is taken under the writers' lock, one pointer per entry, when the sequence starts;
// the entries are yielded after the lock is released, so writes meanwhile are not seen (a removed
// entry may still be yielded) and do not wait for the caller.
func (s *Store[K, V]) Ranked(maxBytes int64) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, e := range s.rankedEntries(maxBytes) {
			if !yield(e.key, e.val) {
				return
			}
		}
	}
}

func (s *Store[K, V]) rankedEntries(maxBytes int64) []*entry[K, V] {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var read, unread []*entry[K, V]
	for _, l := range []*list[K, V]{&s.prot, &s.prob, &s.small} {
		for e := l.head; e != nil; e = e.next {
			switch {
			case e.expiresAt != 0 && now >= e.expiresAt:
			case l == &s.prot || e.freq.Load() > 0:
				read = append(read, e)
			default:
				unread = append(unread, e)
			}
		}
	}
	out := append(read, unread...)
	for i, e := range out {
		if maxBytes -= e.size; maxBytes < 0 {
			return out[:i]
		}
	}
	return out
}
