package observe

import (
	"sync"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0}, {0, 0}, {1, 0}, {time.Microsecond, 0},
		{time.Microsecond + 1, 1}, {2 * time.Microsecond, 1}, {2*time.Microsecond + 1, 2},
		{4 * time.Microsecond, 2}, {5 * time.Microsecond, 3}, {time.Millisecond, 10}, // 1000 µs <= 1024 µs
		{1025 * time.Microsecond, 11}, {time.Second, 20}, // 2^19 < 1e6 <= 2^20 µs
		{Bound(Buckets - 2), Buckets - 2}, {Bound(Buckets-2) + 1, Buckets - 1}, {1<<63 - 1, Buckets - 1},
	} {
		var r Recorder
		r.Record(c.d)
		h := r.Snapshot()
		if h.Counts[c.want] != 1 || h.Count() != 1 {
			t.Errorf("Record(%v): counts %v, want one in bucket %d", c.d, h.Counts, c.want)
		}
		if got := bucket(c.d); got != c.want {
			t.Errorf("bucket(%v) = %d, want %d", c.d, got, c.want)
		}
		if c.want < Buckets-1 && max(c.d, 0) > Bound(c.want) {
			t.Errorf("%v is above its bucket's bound %v", c.d, Bound(c.want))
		}
		if c.want > 0 && max(c.d, 0) <= Bound(c.want-1) {
			t.Errorf("%v is within the previous bucket's bound %v", c.d, Bound(c.want-1))
		}
	}
}

func TestBoundRange(t *testing.T) {
	if Bound(0) != time.Microsecond || Bound(Buckets-2) != time.Microsecond<<39 {
		t.Fatalf("bounds %v .. %v", Bound(0), Bound(Buckets-2))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Bound(Buckets-1) did not panic")
		}
	}()
	Bound(Buckets - 1)
}

func TestMergeMeanQuantile(t *testing.T) {
	var a, b Recorder
	for range 90 {
		a.Record(3 * time.Millisecond) // bucket 12: <= 4096 µs
	}
	for range 10 {
		b.Record(time.Second)
	}
	h := a.Snapshot()
	h.Merge(b.Snapshot())
	if h.Count() != 100 {
		t.Fatalf("Count = %d, want 100", h.Count())
	}
	if want := (90*3*time.Millisecond + 10*time.Second) / 100; h.Mean() != want {
		t.Errorf("Mean = %v, want %v", h.Mean(), want)
	}
	if q := h.Quantile(0.5); q != Bound(12) {
		t.Errorf("p50 = %v, want %v", q, Bound(12))
	}
	if q := h.Quantile(0.99); q != Bound(20) {
		t.Errorf("p99 = %v, want %v", q, Bound(20))
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram has a quantile or a mean")
	}
}

func TestRecorderConcurrent(t *testing.T) {
	var r Recorder
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	h := r.Snapshot()
	if h.Count() != 8000 {
		t.Fatalf("Count = %d, want 8000", h.Count())
	}
	var sum time.Duration
	for i := range 8000 {
		sum += time.Duration(i) * time.Microsecond
	}
	if h.Sum != sum {
		t.Errorf("Sum = %v, want %v", h.Sum, sum)
	}
}

func TestRecordAllocs(t *testing.T) {
	var r Recorder
	if n := testing.AllocsPerRun(1000, func() { r.Record(123 * time.Microsecond) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

func TestStepString(t *testing.T) {
	want := map[Step]string{GetMiss: "get_miss", WaitFlight: "wait_flight", Fetch: "fetch", Serve: "serve",
		Load: "load", Handoff: "handoff", 0: "unknown", 99: "unknown"}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("Step(%d).String() = %q, want %q", s, s.String(), w)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	var r Recorder
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Record(time.Duration(i))
	}
}
