package status

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRates: rates are counted since the node started until a sample is old enough, then over
// the span since the oldest sample kept, which is at most 70 s old.
func TestRates(t *testing.T) {
	node, err := groupcache.NewNode("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	users, err := groupcache.New[string, string]("users", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) { return k, nil }), groupcache.WithNode(node))
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	started := node.Stats().Started
	now := started.Add(10 * time.Second)
	h := Handler(node).(*handler)
	h.now = func() time.Time { return now }
	gets := func(n int, prefix string) {
		for i := range n {
			users.Get(context.Background(), fmt.Sprint(prefix, i))
		}
	}
	// check checks the rates over the span, and the number of loads their latency counts.
	check := func(step string, span float64, want Rates, loads int64) {
		t.Helper()
		rep := h.report()
		got := rep.Rates["users"]
		n := got.LoadLatency.Count()
		got.LoadLatency, got.FetchLatency = observe.Histogram{}, observe.Histogram{}
		if rep.RateSeconds != span || got != want || n != loads {
			t.Fatalf("%s: span %v, rates %+v, %d loads; want %v, %+v, %d", step, rep.RateSeconds, got, n, span, want, loads)
		}
	}
	gets(20, "a") // 20 misses, 20 loads
	check("first view", 10, Rates{Gets: 2, Loads: 2}, 20)
	now = now.Add(4 * time.Second)
	gets(14, "a") // 14 hits
	check("4 s later: no sample old enough", 14, Rates{HitRatio: 14.0 / 34, Gets: 34.0 / 14, Loads: 20.0 / 14}, 20)
	now = now.Add(6 * time.Second)
	gets(10, "b") // 10 misses
	check("against the first view's sample", 10, Rates{HitRatio: 14.0 / 24, Gets: 2.4, Loads: 1}, 10)
	now = now.Add(61 * time.Second)
	check("71 s after the first sample: the next one", 61, Rates{}, 0)
}

// TestSince: a histogram's durations since an earlier snapshot, or all of them when it started
// again.
func TestSince(t *testing.T) {
	var r observe.Recorder
	r.Record(time.Millisecond)
	then := r.Snapshot()
	r.Record(time.Millisecond)
	r.Record(time.Second)
	d := since(then, r.Snapshot())
	if d.Count() != 2 || d.Sum != time.Second+time.Millisecond {
		t.Fatalf("since: %d durations, sum %v; want 2, 1.001s", d.Count(), d.Sum)
	}
	var again observe.Recorder
	again.Record(time.Second)
	if d := since(r.Snapshot(), again.Snapshot()); d != again.Snapshot() {
		t.Fatalf("since a later snapshot: %+v", d)
	}
}
