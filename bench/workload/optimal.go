package workload

import "container/heap"

// Optimal returns the number of hits of the offline optimum on trace with room for capacity
// unit-size entries: Belady's MIN with bypass. On a miss with the cache full, the entry evicted is
// the one whose next request is farthest in the future, the requested key included (which is
// then not cached at all). No policy, online or offline, that holds at most capacity entries
// gets more hits on the trace.
func Optimal(trace []uint64, capacity int) int {
	if capacity <= 0 {
		return 0
	}
	next := NextUse(trace)
	// The cache, as the next use of each held key: a max-heap by next use. A hit moves its
	// key's next use; the heap is fixed up through the key's index.
	h := &useHeap{pos: make(map[uint64]int, capacity)}
	hits := 0
	for i, k := range trace {
		if j, ok := h.pos[k]; ok {
			hits++
			h.items[j].next = next[i]
			heap.Fix(h, j)
			continue
		}
		if h.Len() < capacity {
			heap.Push(h, use{key: k, next: next[i]})
			continue
		}
		if h.items[0].next > next[i] {
			heap.Pop(h)
			heap.Push(h, use{key: k, next: next[i]})
		}
	}
	return hits
}

// NextUse returns, for each request, the index of the next request of the same key, or
// len(trace) if there is none.
func NextUse(trace []uint64) []int {
	next := make([]int, len(trace))
	last := make(map[uint64]int)
	for i := len(trace) - 1; i >= 0; i-- {
		if j, ok := last[trace[i]]; ok {
			next[i] = j
		} else {
			next[i] = len(trace)
		}
		last[trace[i]] = i
	}
	return next
}

type use struct {
	key  uint64
	next int
}

// useHeap is a max-heap of uses by next use, with each key's index kept in pos.
type useHeap struct {
	items []use
	pos   map[uint64]int
}

func (h *useHeap) Len() int           { return len(h.items) }
func (h *useHeap) Less(i, j int) bool { return h.items[i].next > h.items[j].next }
func (h *useHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i].key] = i
	h.pos[h.items[j].key] = j
}
func (h *useHeap) Push(x any) {
	u := x.(use)
	h.pos[u.key] = len(h.items)
	h.items = append(h.items, u)
}
func (h *useHeap) Pop() any {
	u := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	delete(h.pos, u.key)
	return u
}
