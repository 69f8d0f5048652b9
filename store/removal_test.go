package store

import (
	"sync"
	"testing"
	"time"
	"unsafe"
)

// removals records what OnRemove is told.
type removals struct {
	mu  sync.Mutex
	got []Removal[int, string]
}

func (r *removals) add(x Removal[int, string]) {
	r.mu.Lock()
	r.got = append(r.got, x)
	r.mu.Unlock()
}

func (r *removals) take() []Removal[int, string] {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestOnRemoveReasons: every way an entry leaves is reported once, with its reason, key, value
// and age.
func TestOnRemoveReasons(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	clk.ns.Store(1000)
	var rec removals
	const entries = 4
	s := mustNew[int, string](t, Config[int, string]{MaxBytes: entries * (10 + EntryOverhead), Shards: 1, Now: clk.Now, OnRemove: rec.add})
	// expect checks the removals reported; each want's Age is the true age, which the report
	// gives to within a unit of the date (2^26 ns).
	expect := func(name string, want ...Removal[int, string]) {
		t.Helper()
		got := rec.take()
		if len(got) != len(want) {
			t.Fatalf("%s: OnRemove told %+v, want %+v", name, got, want)
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Key != w.Key || g.Value != w.Value || g.Reason != w.Reason || (g.Age-w.Age).Abs() > 1<<ageShift {
				t.Fatalf("%s: OnRemove told %+v, want %+v", name, got, want)
			}
		}
	}

	s.Set(1, "one", 10, 0)
	clk.ns.Add(int64(time.Second))
	s.Set(1, "uno", 10, 0)
	expect("replaced", Removal[int, string]{Key: 1, Value: "one", Reason: Replaced, Age: time.Second})

	s.Set(2, "two", 10, clk.Now()+int64(time.Second))
	clk.ns.Add(int64(2 * time.Second))
	s.Set(2, "dos", 10, 0)
	expect("replaced after its expiry", Removal[int, string]{Key: 2, Value: "two", Reason: Expired, Age: 2 * time.Second})

	s.Remove(2)
	expect("removed", Removal[int, string]{Key: 2, Value: "dos", Reason: Explicit})
	if s.Remove(2) {
		t.Fatal("Remove of an absent key reported an entry")
	}
	expect("removed again")

	s.Set(1, "big", entries*(10+EntryOverhead), 0) // larger than the store: refused, the old value goes
	expect("refused", Removal[int, string]{Key: 1, Value: "uno", Reason: Replaced, Age: 2 * time.Second})

	// Fill the store, then one more: the policy evicts one entry, fresh.
	for k := 10; k < 10+entries; k++ {
		s.Set(k, "v", 10, 0)
	}
	clk.ns.Add(int64(time.Minute))
	s.Set(99, "new", 10, 0)
	got := rec.take()
	if len(got) != 1 || got[0].Reason != Evicted || got[0].Key < 10 || got[0].Key >= 10+entries || (got[0].Age-time.Minute).Abs() > 1<<ageShift {
		t.Fatalf("eviction: OnRemove told %+v, want one of keys 10..13 evicted at the age of 1m", got)
	}

	// An entry met by the policy past its expiry is reported expired.
	s.Clear()
	rec.take()
	s.Set(1, "short", 10, clk.Now()+1)
	for k := 10; k < 10+entries-1; k++ {
		s.Set(k, "v", 10, 0)
	}
	clk.ns.Add(10)
	s.Set(99, "new", 10, 0)
	expect("expired", Removal[int, string]{Key: 1, Value: "short", Reason: Expired, Age: 10})

	clk.ns.Add(5)
	s.Clear()
	got = rec.take()
	if len(got) != entries {
		t.Fatalf("Clear: OnRemove told %d removals, want %d: %+v", len(got), entries, got)
	}
	for _, r := range got {
		if r.Reason != Explicit {
			t.Fatalf("Clear: %+v, want reason explicit", r)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("Len after Clear = %d", s.Len())
	}
	checkInvariants(t, s)
}

// TestOnRemoveOutsideLock: OnRemove may call the store (it runs after the lock is released),
// and sees the removal done.
func TestOnRemoveOutsideLock(t *testing.T) {
	t.Parallel()
	var s *Store[int, string]
	var seen []int
	s = mustNew[int, string](t, Config[int, string]{MaxBytes: 2 * (1 + EntryOverhead), Shards: 1,
		OnRemove: func(r Removal[int, string]) {
			if _, _, ok := s.Peek(r.Key); ok && r.Reason != Replaced {
				t.Errorf("key %d still in the store when reported %v", r.Key, r.Reason)
			}
			seen = append(seen, r.Key)
			if r.Key == 1 {
				s.Set(100, "from the listener", 1, 0) // evicts again: reported by this inner call
			}
		}})
	for k := range 5 {
		s.Set(k, "v", 1, 0)
	}
	s.Remove(2)
	s.Clear()
	if len(seen) < 4 {
		t.Fatalf("OnRemove told of %v", seen)
	}
	checkInvariants(t, s)
}

// TestOnRemoveReportsEveryEntryOnce: under concurrent writers, every entry that was stored is
// reported exactly once, once the store is cleared.
func TestOnRemoveReportsEveryEntryOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	counts := map[string]int{}
	s := mustNew[int, string](t, Config[int, string]{MaxBytes: 64 * (8 + EntryOverhead),
		OnRemove: func(r Removal[int, string]) {
			mu.Lock()
			counts[r.Value]++
			mu.Unlock()
		}})
	var wg sync.WaitGroup
	var stored sync.Map
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				v := string(rune('a'+g)) + time.Duration(i).String()
				if s.Set(i%200, v, 8, 0) {
					stored.Store(v, true)
				}
				if i%7 == 0 {
					s.Remove(i % 200)
				}
			}
		})
	}
	wg.Wait()
	s.Clear()
	n := 0
	stored.Range(func(k, _ any) bool {
		n++
		if c := counts[k.(string)]; c != 1 {
			t.Errorf("value %q reported %d times", k, c)
		}
		return true
	})
	if len(counts) != n {
		t.Errorf("%d values reported, %d stored", len(counts), n)
	}
}

// TestSetWithOnRemoveAllocs: with a listener, a Set that evicts one entry allocates only the new
// entry, as without one.
func TestSetWithOnRemoveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	var told int
	s := mustNew[int, int](t, Config[int, int]{MaxBytes: 100 * (1 + EntryOverhead), Shards: 1,
		OnRemove: func(Removal[int, int]) { told++ }})
	for k := range 100 {
		s.Set(k, k, 1, 0)
	}
	k := 100
	n := testing.AllocsPerRun(1000, func() {
		s.Set(k, k, 1, 0)
		k++
	})
	if n > 1 {
		t.Errorf("Set with a listener allocates %v times, want 1 (the entry)", n)
	}
	if told < 1000 {
		t.Errorf("OnRemove told of %d evictions, want at least 1000", told)
	}
}

func TestReasonString(t *testing.T) {
	for r, want := range map[Reason]string{Explicit: "explicit", Expired: "expired", Evicted: "evicted", Replaced: "replaced", 0: "unknown", 9: "unknown"} {
		if r.String() != want {
			t.Errorf("Reason(%d).String() = %q, want %q", r, r.String(), want)
		}
	}
}

// TestDatedEntriesAreNoLarger: the date lives in what would be padding; an entry of a string key
// and a word-sized value stays one 64-byte cache line.
func TestDatedEntriesAreNoLarger(t *testing.T) {
	if n := unsafe.Sizeof(entry[string, int]{}); n != 64 {
		t.Fatalf("entry[string, int] is %d bytes, want 64", n)
	}
}

// TestAges: ages are right to within a unit, across the 24-bit wrap of the date.
func TestAges(t *testing.T) {
	for _, c := range []struct{ born, now int64 }{
		{0, 0}, {1000, 1000 + int64(time.Second)}, {int64(time.Hour), int64(time.Hour + 90*time.Minute)},
		{1<<(ageShift+24) - 5, 1<<(ageShift+24) + int64(time.Minute)}, // the date wraps meanwhile
		{1234567890123456789, 1234567890123456789 + int64(12*24*time.Hour)},
	} {
		got, want := ageAt(dateOf(c.born), c.now), time.Duration(c.now-c.born)
		if (got - want).Abs() >= 1<<ageShift {
			t.Errorf("born %d, now %d: age %v, want %v", c.born, c.now, got, want)
		}
	}
}
