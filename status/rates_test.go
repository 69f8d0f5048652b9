package status

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/typedcache/groupcache"
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
	users := groupcache.MustNew[string, string]("users", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) { return k, nil }), groupcache.WithNode(node))
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
	check := func(step string, span float64, r Rates) {
		t.Helper()
		rep := h.report()
		if rep.RateSeconds != span || rep.Rates["users"] != r {
			t.Fatalf("%s: span %v, rates %+v; want %v, %+v", step, rep.RateSeconds, rep.Rates["users"], span, r)
		}
	}
	gets(20, "a") // 20 misses, 20 loads
	check("first view", 10, Rates{Gets: 2, Loads: 2})
	now = now.Add(4 * time.Second)
	gets(14, "a") // 14 hits
	check("4 s later: no sample old enough", 14, Rates{HitRatio: 14.0 / 34, Gets: 34.0 / 14, Loads: 20.0 / 14})
	now = now.Add(6 * time.Second)
	gets(10, "b") // 10 misses
	check("against the first view's sample", 10, Rates{HitRatio: 14.0 / 24, Gets: 2.4, Loads: 1})
	now = now.Add(61 * time.Second)
	check("71 s after the first sample: the next one", 61, Rates{})
}
