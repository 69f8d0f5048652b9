package store

import (
	"runtime"
	"strconv"
	"testing"
)

// heapPerEntry fills a fresh store with n entries made by add and returns the growth of the live
// heap per entry, minus payload bytes per entry that the caller's cost already counts.
func heapPerEntry(n int, add func(i int), payload float64) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		add(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(after.HeapAlloc-before.HeapAlloc)/float64(n) - payload
}

// TestEntryOverheadEstimate measures the store's own memory per entry (entry, table slots and
// sketch, but not the key and value bytes that the caller's cost counts) for two common shapes and
// checks that EntryOverhead is a fair estimate of it. The figures are logged (go test -v -run
// Overhead) and recorded in the EntryOverhead comment.
func TestEntryOverheadEstimate(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("slow under -race, whose instrumentation also changes the heap figures")
	}
	const n = 100_000
	tests := []struct {
		name    string
		measure func() float64
	}{
		{"string key, []byte value", func() float64 {
			keys := make([]string, n)
			vals := make([][]byte, n)
			for i := range keys {
				keys[i] = "key-" + strconv.Itoa(1e9+i) // 14 bytes
				vals[i] = make([]byte, 64)
			}
			s := mustNew[string, []byte](t, Config[string, []byte]{MaxBytes: 1 << 40})
			// Keys and values exist before the measurement, as they would when the caller sets
			// them; the store's own growth is what remains.
			per := heapPerEntry(n, func(i int) { s.Set(keys[i], vals[i], 78, 0) }, 0)
			runtime.KeepAlive(s)
			return per
		}},
		{"uint64 key, pointer value", func() float64 {
			type value [2]int64
			vals := make([]*value, n)
			for i := range vals {
				vals[i] = &value{}
			}
			s := mustNew[uint64, *value](t, Config[uint64, *value]{MaxBytes: 1 << 40})
			per := heapPerEntry(n, func(i int) { s.Set(uint64(i), vals[i], 24, 0) }, 0)
			runtime.KeepAlive(s)
			return per
		}},
		{"evicting store", func() float64 {
			// A full store that has been evicting: tombstones in its tables, a sketch sized for
			// every entry.
			s := mustNew[uint64, int](t, Config[uint64, int]{MaxBytes: n * (8 + EntryOverhead)})
			for i := range 3 * n {
				s.Set(uint64(1<<40+i), i, 8, 0)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s.Clear()
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(s)
			return float64(before.HeapAlloc-after.HeapAlloc) / float64(n)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			per := tt.measure()
			t.Logf("store memory per entry: %.0f bytes (EntryOverhead = %d)", per, EntryOverhead)
			if per < EntryOverhead/3 || per > EntryOverhead*2 {
				t.Errorf("measured %.0f bytes per entry; EntryOverhead = %d is off", per, EntryOverhead)
			}
		})
	}
}
