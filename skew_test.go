package groupcache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/clock"
	"github.com/typedcache/groupcache/internal/testcluster"
)

// The tests in this file run nodes whose clocks disagree by 30 s either way: node 0 reads the
// true time, node 1 is 30 s ahead and node 2 30 s behind (skews). Every clock is a fake one moved
// by the test, so no test sleeps; they all move together, as real clocks with an offset do.
// Entries live skewTTL (set by the loader, or by Set), well under the caches' own TTL, so that a
// copy kept too long is not hidden by the bound on a peer's expiry (peerExpiry).

// skewTTL is the lifetime of the entries in these tests.
const skewTTL = time.Minute

// skewTolerance is how far from skewTTL a copy may expire: the nodes' clocks do not move while a
// request travels, so the expiry is exact; the tolerance only keeps the test from pinning a
// nanosecond.
const skewTolerance = time.Millisecond

// skews are the offsets of the nodes' clocks from the true time.
var skews = []time.Duration{0, 30 * time.Second, -30 * time.Second}

// skewedCluster starts one node per skew, with a cache "c" on each whose clock is the true clock
// (returned, to be advanced) plus the node's skew. The loader answers "<key>@<load number>" with
// the lifetime skewTTL; every fetched value is kept as a hot copy, for up to an hour.
func skewedCluster(t *testing.T) (*testcluster.Cluster, []*groupcache.Cache[string, string], *clock.Fake, *loadLog) {
	t.Helper()
	cl := testcluster.Start(t, len(skews))
	truth := clock.NewFake(time.Unix(1_700_000_000, 0))
	log := newLoadLog()
	caches := make([]*groupcache.Cache[string, string], len(skews))
	for i, n := range cl.Nodes {
		now := func() time.Time { return truth.Now().Add(skews[i]) }
		c, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
			log.add(n.Self(), k)
			groupcache.SetTTL(ctx, skewTTL)
			return fmt.Sprintf("%s@%d", k, log.total.Load()), nil
		}), groupcache.WithNode(n), groupcache.WithClock(now), groupcache.WithTTL(time.Hour),
			groupcache.WithHotTTL(time.Hour), alwaysPromote)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches[i] = c
	}
	return cl, caches, truth, log
}

// TestSkewedClocksHotCopies: a copy of an owner's value, fetched by Get or GetMany on a node
// whose clock is 30 s ahead of or behind the owner's, lives exactly as long as the owner's entry:
// it is served from the hot store until just before skewTTL and fetched again just after, when
// the owner loads it anew. With deadlines on the wire, the node ahead would drop its copy after
// 30 s and the node behind keep it for 90 s.
func TestSkewedClocksHotCopies(t *testing.T) {
	t.Parallel()
	for owner := range skews {
		for reader := range skews {
			if reader == owner {
				continue
			}
			for _, many := range []bool{false, true} {
				t.Run(fmt.Sprintf("owner%d/reader%d/many=%v", owner, reader, many), func(t *testing.T) {
					t.Parallel()
					checkSkewedCopy(t, owner, reader, many)
				})
			}
		}
	}
}

func checkSkewedCopy(t *testing.T, owner, reader int, many bool) {
	cl, caches, truth, log := skewedCluster(t)
	ctx := context.Background()
	k := keyOwnedBy(t, cl, owner)
	c := caches[reader]
	get := func() string {
		if many {
			r := c.GetMany(ctx, []string{k})[0]
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			return r.Value
		}
		v, err := c.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := get()
	truth.Advance(skewTTL - skewTolerance)
	if v := get(); v != v1 || c.Stats().HotHits != 1 || c.Stats().RemoteGets != 1 {
		t.Fatalf("Get just before the TTL = %q (stats %+v), want a hot hit on %q: the copy expired early", v, c.Stats(), v1)
	}
	truth.Advance(2 * skewTolerance)
	if v := get(); v == v1 || c.Stats().RemoteGets != 2 || log.total.Load() != 2 {
		t.Fatalf("Get just after the TTL = %q after %q (stats %+v, loads %d), want the owner's new value: the copy outlived the owner's entry",
			v, v1, c.Stats(), log.total.Load())
	}
}

// TestSkewedClocksSet: a value Set with a TTL on a node whose clock is 30 s off the owner's lives
// on the owner exactly that TTL, by the owner's clock.
func TestSkewedClocksSet(t *testing.T) {
	t.Parallel()
	for owner := range skews {
		for writer := range skews {
			if writer == owner {
				continue
			}
			t.Run(fmt.Sprintf("owner%d/writer%d", owner, writer), func(t *testing.T) {
				t.Parallel()
				cl, caches, truth, log := skewedCluster(t)
				ctx := context.Background()
				k := keyOwnedBy(t, cl, owner)
				if err := caches[writer].Set(ctx, k, "set", groupcache.WithEntryTTL(skewTTL)); err != nil {
					t.Fatal(err)
				}
				truth.Advance(skewTTL - skewTolerance)
				if v, err := caches[owner].Get(ctx, k); v != "set" || err != nil || log.total.Load() != 0 {
					t.Fatalf("owner's Get just before the TTL = %q, %v (loads %d), want the value set", v, err, log.total.Load())
				}
				truth.Advance(2 * skewTolerance)
				if v, err := caches[owner].Get(ctx, k); v == "set" || err != nil || log.total.Load() != 1 {
					t.Fatalf("owner's Get just after the TTL = %q, %v (loads %d), want a new load", v, err, log.total.Load())
				}
			})
		}
	}
}

// TestSkewedClocksHandoff: a node that joins with its clock 30 s behind takes values over from
// their previous owner (whose clock is right) and keeps them exactly until the previous owner's
// entries would have expired.
func TestSkewedClocksHandoff(t *testing.T) {
	t.Parallel()
	cl, caches, truth, log := skewedCluster(t)
	ctx := context.Background()
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	for _, r := range caches[0].GetMany(ctx, keys) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	loaded := log.total.Load()
	truth.Advance(20 * time.Second)
	i := cl.Add()
	cl.Announce()
	now := func() time.Time { return truth.Now().Add(-30 * time.Second) }
	c, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
		log.add(cl.Nodes[i].Self(), k)
		return "new-" + k, nil
	}), groupcache.WithNode(cl.Nodes[i]), groupcache.WithClock(now), groupcache.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mine []string // the keys the new node owns
	for _, k := range keys {
		if ownerOf(t, cl, k) == i {
			mine = append(mine, k)
		}
	}
	if len(mine) == 0 {
		t.Fatal("the new node owns none of the keys")
	}
	for _, k := range mine {
		if v, err := c.Get(ctx, k); err != nil || v == "new-"+k {
			t.Fatalf("new owner's Get(%s) = %q, %v, want the value handed over", k, v, err)
		}
	}
	if c.Stats().Handoffs != int64(len(mine)) || log.total.Load() != loaded {
		t.Fatalf("stats %+v, loads %d: want %d values handed over, none loaded", c.Stats(), log.total.Load(), len(mine))
	}
	truth.Advance(skewTTL - 20*time.Second - skewTolerance)
	if v, _ := c.Get(ctx, mine[0]); v == "new-"+mine[0] {
		t.Fatalf("Get just before the TTL = %q: the value handed over expired early", v)
	}
	truth.Advance(2 * skewTolerance)
	if v, _ := c.Get(ctx, mine[0]); v != "new-"+mine[0] {
		t.Fatalf("Get just after the TTL = %q: the value handed over outlived its TTL", v)
	}
}
