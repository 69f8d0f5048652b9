package store

import (
	clist "container/list"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeClock is an injectable Config.Now.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() int64 { return c.ns.Load() }

func mustNew[K comparable, V any](t testing.TB, cfg Config[K, V]) *Store[K, V] {
	t.Helper()
	s, err := New[K, V](cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return s
}

// checkInvariants verifies the internal accounting against the entries actually reachable: the
// tables, the queues, the byte and item counters and the shard slot counts must all agree.
func checkInvariants[K comparable, V any](t testing.TB, s *Store[K, V]) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var tableBytes, tableItems int64
	inTable := make(map[*entry[K, V]]bool)
	for i := range s.shards {
		sh := &s.shards[i]
		tab := sh.tab.Load()
		live, tombs := 0, 0
		empty := 0
		for j := range tab.slots {
			e := tab.slots[j].e.Load()
			switch {
			case e == nil:
				empty++
			case e == s.tomb:
				tombs++
			default:
				live++
				if e.queue == qNone {
					t.Errorf("shard %d: entry %v in table but in no queue", i, e.key)
				}
				h := s.hash(e.key)
				if tab.slots[j].hash.Load() != h {
					t.Errorf("shard %d: slot hash differs from the key's hash", i)
				}
				if got := tab.find(h, e.key, s.tomb); got != e {
					t.Errorf("shard %d: find(%v) does not return its entry", i, e.key)
				}
				if s.shardOf(h) != sh {
					t.Errorf("entry %v in wrong shard", e.key)
				}
				inTable[e] = true
				tableBytes += e.size
				tableItems++
			}
		}
		if live != sh.live || tombs != sh.tombs {
			t.Errorf("shard %d: counted live=%d tombs=%d, recorded live=%d tombs=%d", i, live, tombs, sh.live, sh.tombs)
		}
		if empty*4 < len(tab.slots) {
			t.Errorf("shard %d: only %d of %d slots empty", i, empty, len(tab.slots))
		}
	}
	var queueBytes int64
	var queueItems int
	for _, q := range []struct {
		l  *list[K, V]
		id uint8
	}{{&s.small, qSmall}, {&s.prob, qProb}, {&s.prot, qProt}} {
		var b int64
		n := 0
		var prev *entry[K, V]
		for e := q.l.head; e != nil; e = e.next {
			if e.prev != prev {
				t.Errorf("queue %d: broken prev link", q.id)
			}
			if e.queue != q.id {
				t.Errorf("queue %d: entry %v says queue %d", q.id, e.key, e.queue)
			}
			if !inTable[e] {
				t.Errorf("queue %d: entry %v not in the table", q.id, e.key)
			}
			b += e.size
			n++
			prev = e
		}
		if prev != q.l.tail {
			t.Errorf("queue %d: tail mismatch", q.id)
		}
		if b != q.l.bytes || n != q.l.n {
			t.Errorf("queue %d: walked %d bytes/%d entries, recorded %d/%d", q.id, b, n, q.l.bytes, q.l.n)
		}
		queueBytes += b
		queueItems += n
	}
	if tableBytes != s.used || queueBytes != s.used || s.bytes.Load() != s.used {
		t.Errorf("bytes: tables %d, queues %d, used %d, published %d", tableBytes, queueBytes, s.used, s.bytes.Load())
	}
	if tableItems != int64(queueItems) || tableItems != s.items.Load() {
		t.Errorf("items: tables %d, queues %d, published %d", tableItems, queueItems, s.items.Load())
	}
	if s.used > s.max {
		t.Errorf("used %d > max %d", s.used, s.max)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config[string, int]
		ok   bool
	}{
		{"zero MaxBytes", Config[string, int]{}, false},
		{"negative MaxBytes", Config[string, int]{MaxBytes: -1}, false},
		{"three shards", Config[string, int]{MaxBytes: 1 << 20, Shards: 3}, false},
		{"negative shards", Config[string, int]{MaxBytes: 1 << 20, Shards: -4}, false},
		{"too many shards", Config[string, int]{MaxBytes: 1 << 20, Shards: 1 << 20}, false},
		{"defaults", Config[string, int]{MaxBytes: 1}, true},
		{"one shard", Config[string, int]{MaxBytes: 1 << 20, Shards: 1}, true},
		{"64 shards", Config[string, int]{MaxBytes: 1 << 20, Shards: 64}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New[string, int](tt.cfg)
			if tt.ok {
				if err != nil || s == nil {
					t.Fatalf("New: %v", err)
				}
				if s.MaxBytes() != tt.cfg.MaxBytes {
					t.Fatalf("MaxBytes() = %d", s.MaxBytes())
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefaultShards(t *testing.T) {
	t.Parallel()
	n := DefaultShards()
	if n < 16 || n > 1024 || n&(n-1) != 0 {
		t.Fatalf("DefaultShards() = %d", n)
	}
}

// shardConfigs runs a test body over store shapes that stress different table paths.
var shardConfigs = []struct {
	name  string
	shard int
	hash  func(int) uint64
}{
	{"default", 0, nil},
	{"one shard", 1, nil},
	{"identity hash", 4, func(k int) uint64 { return uint64(k) }},
	{"colliding hash", 2, func(int) uint64 { return 42 }},
}

func TestBasicSemantics(t *testing.T) {
	t.Parallel()
	for _, sc := range shardConfigs {
		t.Run(sc.name, func(t *testing.T) {
			s := mustNew[int, string](t, Config[int, string]{MaxBytes: 1 << 20, Shards: sc.shard, Hash: sc.hash})
			if _, ok := s.Get(1); ok {
				t.Fatal("Get on empty store hit")
			}
			if _, _, ok := s.Peek(1); ok {
				t.Fatal("Peek on empty store hit")
			}
			steps := []struct {
				op      string
				key     int
				val     string
				cost    int64
				wantOK  bool
				wantVal string
				len     int
				bytes   int64
			}{
				{"set", 1, "one", 10, true, "", 1, 10 + EntryOverhead},
				{"get", 1, "", 0, true, "one", 1, 10 + EntryOverhead},
				{"set", 2, "two", 20, true, "", 2, 30 + 2*EntryOverhead},
				{"peek", 2, "", 0, true, "two", 2, 30 + 2*EntryOverhead},
				{"set", 1, "uno", 5, true, "", 2, 25 + 2*EntryOverhead}, // replace shrinks
				{"get", 1, "", 0, true, "uno", 2, 25 + 2*EntryOverhead},
				{"set", 2, "dos", 100, true, "", 2, 105 + 2*EntryOverhead}, // replace grows
				{"get", 2, "", 0, true, "dos", 2, 105 + 2*EntryOverhead},
				{"remove", 1, "", 0, true, "", 1, 100 + EntryOverhead},
				{"remove", 1, "", 0, false, "", 1, 100 + EntryOverhead},
				{"get", 1, "", 0, false, "", 1, 100 + EntryOverhead},
				{"set", 3, "three", 0, true, "", 2, 100 + 2*EntryOverhead},
				{"clear", 0, "", 0, true, "", 0, 0},
				{"get", 2, "", 0, false, "", 0, 0},
				{"get", 3, "", 0, false, "", 0, 0},
				{"set", 2, "again", 7, true, "", 1, 7 + EntryOverhead},
				{"get", 2, "", 0, true, "again", 1, 7 + EntryOverhead},
			}
			for i, st := range steps {
				switch st.op {
				case "set":
					if !s.Set(st.key, st.val, st.cost, 0) {
						t.Fatalf("step %d: Set: not stored", i)
					}
				case "get":
					v, ok := s.Get(st.key)
					if ok != st.wantOK || v != st.wantVal {
						t.Fatalf("step %d: Get(%d) = %q, %v; want %q, %v", i, st.key, v, ok, st.wantVal, st.wantOK)
					}
				case "peek":
					v, exp, ok := s.Peek(st.key)
					if ok != st.wantOK || v != st.wantVal || exp != 0 {
						t.Fatalf("step %d: Peek(%d) = %q, %d, %v", i, st.key, v, exp, ok)
					}
				case "remove":
					if ok := s.Remove(st.key); ok != st.wantOK {
						t.Fatalf("step %d: Remove(%d) = %v", i, st.key, ok)
					}
				case "clear":
					s.Clear()
				}
				if s.Len() != st.len || s.Bytes() != st.bytes {
					t.Fatalf("step %d (%s %d): Len, Bytes = %d, %d; want %d, %d", i, st.op, st.key, s.Len(), s.Bytes(), st.len, st.bytes)
				}
				checkInvariants(t, s)
			}
		})
	}
}

func TestManyKeysGrowAndShrink(t *testing.T) {
	t.Parallel()
	for _, sc := range shardConfigs {
		t.Run(sc.name, func(t *testing.T) {
			n := 5000
			if sc.name == "colliding hash" {
				n = 300 // every probe is linear: keep it quadratic-but-small
			}
			s := mustNew[int, int](t, Config[int, int]{MaxBytes: 1 << 40, Shards: sc.shard, Hash: sc.hash})
			for i := range n {
				if !s.Set(i, i*2, 1, 0) {
					t.Fatal("not stored")
				}
			}
			checkInvariants(t, s)
			for i := range n {
				if v, ok := s.Get(i); !ok || v != i*2 {
					t.Fatalf("Get(%d) = %d, %v", i, v, ok)
				}
			}
			for i := 0; i < n; i += 2 {
				if !s.Remove(i) {
					t.Fatalf("Remove(%d) = false", i)
				}
			}
			// Churn: tombstones must be reused or compacted, never fill the table.
			for round := range 5 {
				for i := 0; i < n; i += 2 {
					if !s.Set(n*(round+1)+i, i, 1, 0) {
						t.Fatal("not stored")
					}
				}
				for i := 0; i < n; i += 2 {
					s.Remove(n*(round+1) + i)
				}
			}
			checkInvariants(t, s)
			if s.Len() != n/2 {
				t.Fatalf("Len = %d, want %d", s.Len(), n/2)
			}
			for i := range n {
				_, ok := s.Get(i)
				if ok != (i%2 == 1) {
					t.Fatalf("Get(%d) ok = %v", i, ok)
				}
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	clk.ns.Store(1000)
	s := mustNew[string, int](t, Config[string, int]{MaxBytes: 1 << 20, Now: clk.Now})
	must := func(stored bool) {
		t.Helper()
		if !stored {
			t.Fatal("not stored")
		}
	}
	must(s.Set("never", 1, 1, 0))
	must(s.Set("soon", 2, 1, 2000))
	must(s.Set("past", 3, 1, 500))

	tests := []struct {
		name    string
		now     int64
		key     string
		wantGet bool
		wantExp int64
	}{
		{"never before", 1000, "never", true, 0},
		{"soon before", 1999, "soon", true, 2000},
		{"soon at deadline", 2000, "soon", false, 2000},
		{"soon after", 5000, "soon", false, 2000},
		{"past", 1000, "past", false, 500},
		{"never much later", 1 << 60, "never", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.ns.Store(tt.now)
			before := s.Stats()
			_, ok := s.Get(tt.key)
			if ok != tt.wantGet {
				t.Fatalf("Get(%q) at %d: ok = %v, want %v", tt.key, tt.now, ok, tt.wantGet)
			}
			after := s.Stats()
			wantExpirations := before.Expirations
			if !tt.wantGet {
				wantExpirations++
			}
			if after.Expirations != wantExpirations {
				t.Fatalf("Expirations = %d, want %d", after.Expirations, wantExpirations)
			}
			// Peek returns expired entries too, with their deadline, and counts nothing.
			_, exp, ok := s.Peek(tt.key)
			if !ok || exp != tt.wantExp {
				t.Fatalf("Peek(%q) = exp %d, ok %v; want %d, true", tt.key, exp, ok, tt.wantExp)
			}
			if s.Stats() != after {
				t.Fatalf("Peek changed stats: %+v -> %+v", after, s.Stats())
			}
		})
	}
	// Replacing an expired entry makes it live again.
	clk.ns.Store(10_000)
	must(s.Set("soon", 20, 1, 20_000))
	if v, ok := s.Get("soon"); !ok || v != 20 {
		t.Fatalf("Get after refresh = %d, %v", v, ok)
	}
}

func TestNowCalledOnlyForExpiringEntries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: 1 << 20, Now: func() int64 { calls.Add(1); return 0 }})
	for i := range 100 {
		if !s.Set(i, i, 1, 0) {
			t.Fatal("not stored")
		}
		s.Get(i)
		s.Get(-i - 1)
	}
	if calls.Load() != 0 {
		t.Fatalf("Now called %d times for entries without expiry", calls.Load())
	}
	if !s.Set(1000, 1, 1, 10) {
		t.Fatal("not stored")
	}
	s.Get(1000)
	if calls.Load() != 1 {
		t.Fatalf("Now called %d times, want 1", calls.Load())
	}
}

func TestExpiredEntriesEvictedFirst(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	const n = 100
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: n * (1 + EntryOverhead), Now: clk.Now})
	for i := range n {
		exp := int64(0)
		if i%2 == 0 {
			exp = 50 // half expire at t=50
		}
		if !s.Set(i, i, 1, exp) {
			t.Fatal("not stored")
		}
		s.Get(i)
		s.Get(i)
	}
	clk.ns.Store(100)
	for i := n; i < n+n/2; i++ {
		if !s.Set(i, i, 1, 0) {
			t.Fatal("not stored")
		}
	}
	for i := 1; i < n; i += 2 {
		if _, ok := s.Get(i); !ok {
			t.Fatalf("frequently read, unexpired key %d evicted while expired entries remained", i)
		}
	}
	checkInvariants(t, s)
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	const max = 10 * (100 + EntryOverhead)
	tests := []struct {
		name   string
		cost   int64
		stored bool
	}{
		{"fits exactly", max - EntryOverhead, true},
		{"one byte too many", max - EntryOverhead + 1, false},
		{"huge", 1<<63 - 1, false},
		{"zero", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew[string, int](t, Config[string, int]{MaxBytes: max})
			if !s.Set("old", 1, 10, 0) {
				t.Fatal("not stored")
			}
			stored := s.Set("k", 2, tt.cost, 0)
			if stored != tt.stored {
				t.Fatalf("Set(cost %d) = %v, want %v", tt.cost, stored, tt.stored)
			}
			if _, ok := s.Get("k"); ok != tt.stored {
				t.Fatalf("Get after Set = %v: ok = %v", stored, ok)
			}
			if s.Bytes() > max {
				t.Fatalf("Bytes %d > max", s.Bytes())
			}
			checkInvariants(t, s)
		})
	}
	t.Run("negative cost panics", func(t *testing.T) {
		s := mustNew[string, int](t, Config[string, int]{MaxBytes: max})
		defer func() {
			if recover() == nil {
				t.Fatal("Set with a negative cost did not panic")
			}
		}()
		s.Set("k", 1, -1, 0)
	})
	t.Run("too large removes stale value", func(t *testing.T) {
		s := mustNew[string, int](t, Config[string, int]{MaxBytes: max})
		if !s.Set("k", 1, 10, 0) {
			t.Fatal("not stored")
		}
		if s.Set("k", 2, max, 0) {
			t.Fatal("an entry larger than the store was stored")
		}
		if _, ok := s.Get("k"); ok {
			t.Fatal("stale value still served after a too-large Set")
		}
		checkInvariants(t, s)
	})
}

func TestEvictionKeepsBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		maxBytes int64
		costs    func(r *rand.Rand) int64
	}{
		{"unit costs", 100 * (1 + EntryOverhead), func(*rand.Rand) int64 { return 1 }},
		{"random costs", 64 << 10, func(r *rand.Rand) int64 { return r.Int64N(4096) }},
		{"some huge", 64 << 10, func(r *rand.Rand) int64 {
			if r.IntN(10) == 0 {
				return 60 << 10
			}
			return r.Int64N(512)
		}},
		{"tiny store", EntryOverhead + 10, func(r *rand.Rand) int64 { return r.Int64N(11) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew[int, int](t, Config[int, int]{MaxBytes: tt.maxBytes, Shards: 4})
			r := rand.New(rand.NewPCG(1, 2))
			for i := range 20000 {
				k := r.IntN(2000)
				if r.IntN(3) == 0 {
					s.Get(k)
					continue
				}
				if !s.Set(k, i, tt.costs(r), 0) {
					t.Fatal("not stored")
				}
				if s.Bytes() > tt.maxBytes {
					t.Fatalf("Bytes %d > MaxBytes %d", s.Bytes(), tt.maxBytes)
				}
				if i%1000 == 0 {
					checkInvariants(t, s)
				}
			}
			checkInvariants(t, s)
			if s.Stats().Evictions == 0 {
				t.Fatal("no evictions counted")
			}
		})
	}
}

// TestConcurrentByteBound hammers the store from many goroutines with random-sized writes,
// removes and reads while a sampler checks that Bytes never exceeds MaxBytes; at the end the
// accounting must equal the sum over the live entries.
func TestConcurrentByteBound(t *testing.T) {
	t.Parallel()
	const maxBytes = 256 << 10
	ops := 10000
	if testing.Short() {
		ops = 2000
	}
	for _, shards := range []int{1, 16} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			s := mustNew[int, []byte](t, Config[int, []byte]{MaxBytes: maxBytes, Shards: shards})
			var stop atomic.Bool
			var samples, over atomic.Int64
			var sampler sync.WaitGroup
			sampler.Go(func() {
				for !stop.Load() {
					b := s.Bytes()
					if b > maxBytes || b < 0 {
						over.Add(1)
					}
					if st := s.Stats(); st.Bytes > maxBytes {
						over.Add(1)
					}
					samples.Add(1)
				}
			})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 99))
					for range ops {
						k := r.IntN(3000)
						switch x := r.IntN(100); {
						case x < 50:
							if v, ok := s.Get(k); ok && len(v) > 0 && int(v[0]) != k%251 {
								t.Errorf("Get(%d) returned another key's value", k)
							}
						case x < 95:
							cost := r.Int64N(2 << 10)
							if r.IntN(50) == 0 {
								cost = maxBytes // too large
							}
							v := []byte{byte(k % 251)}
							if !s.Set(k, v, cost, 0) && cost <= maxBytes-EntryOverhead {
								t.Errorf("Set(cost %d) not stored", cost)
							}
						case x < 99:
							s.Remove(k)
						default:
							s.Peek(k)
						}
					}
				})
			}
			wg.Wait()
			stop.Store(true)
			sampler.Wait()
			if over.Load() > 0 {
				t.Fatalf("Bytes exceeded MaxBytes in %d of %d samples", over.Load(), samples.Load())
			}
			checkInvariants(t, s)
			t.Logf("%d samples; final %d entries, %d bytes; %+v", samples.Load(), s.Len(), s.Bytes(), s.Stats())
		})
	}
}

// TestConcurrentClear races Clear against writers and readers.
func TestConcurrentClear(t *testing.T) {
	t.Parallel()
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: 64 << 10, Shards: 8})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 5000 {
				k := r.IntN(1000)
				switch {
				case g == 0 && i%500 == 0:
					s.Clear()
				case i%2 == 0:
					s.Set(k, k, r.Int64N(256), 0)
				default:
					if v, ok := s.Get(k); ok && v != k {
						t.Errorf("Get(%d) = %d", k, v)
					}
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, s)
}

func TestScanResistance(t *testing.T) {
	t.Parallel()
	const capacity = 1000
	tests := []struct {
		name      string
		hot       int // hot keys, each read a few times before and during the scan
		scan      int // one-off keys, never repeated
		readEvery int // read the hot set once per this many scan keys (0 = never)
	}{
		{"pure scan", 200, 50 * capacity, 0},
		{"scan with hot reads", 500, 50 * capacity, 1000},
		{"large hot set", 800, 20 * capacity, 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew[int, int](t, Config[int, int]{MaxBytes: capacity * (1 + EntryOverhead)})
			lru := newTestLRU(capacity)
			access := func(k int) {
				lru.access(k)
				if _, ok := s.Get(k); !ok {
					if !s.Set(k, k, 1, 0) {
						t.Fatal("not stored")
					}
				}
			}
			for range 3 {
				for k := range tt.hot {
					access(k)
				}
			}
			for i := range tt.scan {
				access(1_000_000 + i)
				if tt.readEvery > 0 && i%tt.readEvery == 0 {
					for k := range tt.hot {
						access(k)
					}
				}
			}
			kept, lruKept := 0, 0
			for k := range tt.hot {
				if _, _, ok := s.Peek(k); ok {
					kept++
				}
				if lru.has(k) {
					lruKept++
				}
			}
			t.Logf("hot keys kept: store %d/%d, LRU %d/%d", kept, tt.hot, lruKept, tt.hot)
			if kept < tt.hot*95/100 {
				t.Fatalf("only %d of %d hot keys survived the scan", kept, tt.hot)
			}
			if lruKept > tt.hot/2 {
				t.Fatalf("test is too easy: an LRU kept %d of %d hot keys", lruKept, tt.hot)
			}
			checkInvariants(t, s)
		})
	}
}

// testLRU is a minimal LRU used only to show that a scan would flush one.
type testLRU struct {
	cap   int
	order *clist.List // front = most recent
	elems map[int]*clist.Element
}

func newTestLRU(capacity int) *testLRU {
	return &testLRU{cap: capacity, order: clist.New(), elems: map[int]*clist.Element{}}
}

func (l *testLRU) access(k int) {
	if e, ok := l.elems[k]; ok {
		l.order.MoveToFront(e)
		return
	}
	l.elems[k] = l.order.PushFront(k)
	if l.order.Len() > l.cap {
		delete(l.elems, l.order.Remove(l.order.Back()).(int))
	}
}

func (l *testLRU) has(k int) bool { _, ok := l.elems[k]; return ok }

func TestStatsCounters(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: 3 * (1 + EntryOverhead), Now: clk.Now, Shards: 2})
	steps := []struct {
		op   string
		key  int
		exp  int64
		want Stats
	}{
		{"get", 1, 0, Stats{Misses: 1}},
		{"set", 1, 0, Stats{Misses: 1, Items: 1, Bytes: 1 + EntryOverhead}},
		{"get", 1, 0, Stats{Hits: 1, Misses: 1, Items: 1, Bytes: 1 + EntryOverhead}},
		{"set", 2, 10, Stats{Hits: 1, Misses: 1, Items: 2, Bytes: 2 * (1 + EntryOverhead)}},
		{"tick", 0, 20, Stats{Hits: 1, Misses: 1, Items: 2, Bytes: 2 * (1 + EntryOverhead)}},
		{"get", 2, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Items: 2, Bytes: 2 * (1 + EntryOverhead)}},
		{"peek", 2, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Items: 2, Bytes: 2 * (1 + EntryOverhead)}},
		{"set", 3, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Items: 3, Bytes: 3 * (1 + EntryOverhead)}},
		// Full: the expired entry goes first.
		{"set", 4, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Evictions: 1, Items: 3, Bytes: 3 * (1 + EntryOverhead)}},
		{"remove", 4, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Evictions: 1, Items: 2, Bytes: 2 * (1 + EntryOverhead)}},
		{"clear", 0, 0, Stats{Hits: 1, Misses: 2, Expirations: 1, Evictions: 1}},
	}
	for i, st := range steps {
		switch st.op {
		case "get":
			s.Get(st.key)
		case "set":
			if !s.Set(st.key, st.key, 1, st.exp) {
				t.Fatal("not stored")
			}
		case "peek":
			s.Peek(st.key)
		case "remove":
			s.Remove(st.key)
		case "tick":
			clk.ns.Store(st.exp)
		case "clear":
			s.Clear()
		}
		if got := s.Stats(); got != st.want {
			t.Fatalf("step %d (%s %d): Stats = %+v, want %+v", i, st.op, st.key, got, st.want)
		}
	}
	if _, _, ok := s.Peek(2); ok {
		t.Fatal("expired entry was not the one evicted")
	}
}

func TestGetHitAllocatesNothing(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T) float64
	}{
		{"string key", func(t *testing.T) float64 {
			s := mustNew[string, []byte](t, Config[string, []byte]{MaxBytes: 1 << 20})
			s.Set("key", []byte("value"), 5, 0)
			return testing.AllocsPerRun(1000, func() { s.Get("key") })
		}},
		{"uint64 key with expiry", func(t *testing.T) float64 {
			clk := &fakeClock{}
			s := mustNew[uint64, *int](t, Config[uint64, *int]{MaxBytes: 1 << 20, Now: clk.Now})
			s.Set(7, new(int), 8, 100)
			return testing.AllocsPerRun(1000, func() { s.Get(7) })
		}},
		{"struct key, default clock", func(t *testing.T) float64 {
			type key struct {
				a string
				b int
			}
			s := mustNew[key, int](t, Config[key, int]{MaxBytes: 1 << 20})
			s.Set(key{"a", 1}, 1, 1, 1<<62)
			return testing.AllocsPerRun(1000, func() { s.Get(key{"a", 1}) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := tt.run(t); a != 0 {
				t.Fatalf("Get hit allocates %v times", a)
			}
		})
	}
}
