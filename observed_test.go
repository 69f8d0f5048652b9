package groupcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/observe"
)

// spanRec is one span a recTracer was told of.
type spanRec struct {
	observe.Span
	id, parent int
	err        error
	ended      bool
}

// recTracer records spans and their nesting: the context a span starts with names its parent.
type recTracer struct {
	mu    sync.Mutex
	spans []*spanRec
}

type spanKey struct{}

func (r *recTracer) Start(ctx context.Context, s observe.Span) (context.Context, func(error)) {
	parent, _ := ctx.Value(spanKey{}).(int)
	r.mu.Lock()
	rec := &spanRec{Span: s, id: len(r.spans) + 1, parent: parent}
	r.spans = append(r.spans, rec)
	r.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, rec.id), func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if rec.ended {
			panic("span ended twice")
		}
		rec.err, rec.ended = err, true
	}
}

// take returns the spans so far, each as "step[peer]xkeys<parent's step" (peer and keys when
// set, "<" alone for a root), sorted, and forgets them. Every span must have ended.
func (r *recTracer) take(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.spans {
		if !s.ended {
			t.Errorf("span %v was not ended", s.Step)
		}
		desc := s.Step.String()
		if s.Peer != "" {
			desc += "[" + s.Peer + "]"
		}
		if s.Keys != 1 {
			desc += fmt.Sprintf("x%d", s.Keys)
		}
		desc += "<"
		if s.parent != 0 {
			desc += r.spans[s.parent-1].Step.String()
		}
		out = append(out, desc)
	}
	r.spans = nil
	slices.Sort(out)
	return out
}

// TestTracerSpans: a miss is a GetMiss span with the Load in it; a hit tells the tracer nothing.
func TestTracerSpans(t *testing.T) {
	t.Parallel()
	tr := &recTracer{}
	c, err := groupcache.New[string, string]("t", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		if k == "missing" {
			return "", groupcache.ErrNotFound
		}
		return "v" + k, nil
	}), groupcache.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.take(t), []string{"get_miss<", "load<get_miss"}; !slices.Equal(got, want) {
		t.Fatalf("spans of a miss: %v, want %v", got, want)
	}
	c.Get(ctx, "a")
	c.View(ctx, "a", func(string) error { return nil })
	c.GetMany(ctx, []string{"a"})
	if got := tr.take(t); len(got) != 0 {
		t.Fatalf("hits made spans: %v", got)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, groupcache.ErrNotFound) {
		t.Fatal(err)
	}
	tr.mu.Lock()
	for _, s := range tr.spans {
		if !errors.Is(s.err, groupcache.ErrNotFound) {
			t.Errorf("span %v ended with %v, want the loader's ErrNotFound", s.Step, s.err)
		}
	}
	tr.mu.Unlock()
	tr.take(t)
	c.GetMany(ctx, []string{"b", "c", "a"})
	if got, want := tr.take(t), []string{"get_missx2<", "load<get_miss", "load<get_miss"}; !slices.Equal(got, want) {
		t.Fatalf("spans of a GetMany: %v, want %v", got, want)
	}
}

// TestTracerWaitFlight: a Get that joins another caller's flight has a WaitFlight span, which
// starts when it started waiting.
func TestTracerWaitFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &recTracer{}
		release := make(chan struct{})
		c, err := groupcache.New[string, string]("t", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
			<-release
			return "v" + k, nil
		}), groupcache.WithTracer(tr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var wg sync.WaitGroup
		wg.Go(func() { c.Get(context.Background(), "a") })
		synctest.Wait() // the first Get runs the flight; its loader waits
		time.Sleep(time.Second)
		joined := time.Now()
		wg.Go(func() { c.View(context.Background(), "a", func(string) error { return nil }) })
		synctest.Wait() // the View waits on the Get's flight
		time.Sleep(time.Second)
		close(release)
		wg.Wait()
		tr.mu.Lock()
		var wait *spanRec
		for _, s := range tr.spans {
			if s.Step == observe.WaitFlight {
				wait = s
			}
		}
		tr.mu.Unlock()
		if wait == nil || !wait.Start.Equal(joined) {
			t.Fatalf("WaitFlight span %+v, want one that starts at %v", wait, joined)
		}
		if got, want := tr.take(t), []string{"get_miss<", "get_miss<", "load<get_miss", "wait_flight<get_miss"}; !slices.Equal(got, want) {
			t.Fatalf("spans: %v, want %v", got, want)
		}
	})
}

// TestTracerCluster: on two real nodes, a Get of a key the other node owns is a Fetch from it,
// which the owner serves (a Serve with the Load in it); a Get of a key this node owns asks its
// previous owner first (Handoff: a node that has just started takes its keys over).
func TestTracerCluster(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	tracers := []*recTracer{{}, {}}
	var caches []*groupcache.Cache[string, string]
	for i, n := range cl.Nodes {
		c, err := groupcache.New[string, string]("t", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
			return "v" + k, nil
		}), groupcache.WithNode(n), groupcache.WithTracer(tracers[i]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches = append(caches, c)
	}
	ctx := context.Background()
	remote := keyOwnedBy(t, cl, 1)
	if v, err := caches[0].Get(ctx, remote); err != nil || v != "v"+remote {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if got, want := tracers[0].take(t), []string{"fetch[" + cl.Addrs[1] + "]<get_miss", "get_miss<"}; !slices.Equal(got, want) {
		t.Fatalf("caller's spans: %v, want %v", got, want)
	}
	// The owner peeked at its previous owner (node 0: a node that has just started takes its
	// keys over from the cluster without it) before it loaded.
	if got, want := tracers[1].take(t), []string{"handoff[" + cl.Addrs[0] + "]<serve", "load<serve", "serve<"}; !slices.Equal(got, want) {
		t.Fatalf("owner's spans: %v, want %v", got, want)
	}
	keys := []string{keyOwnedBy(t, cl, 1, remote), keyOwnedBy(t, cl, 0)}
	caches[0].GetMany(ctx, keys)
	if got, want := tracers[0].take(t), []string{"fetch[" + cl.Addrs[1] + "]<get_miss", "get_missx2<",
		"handoff[" + cl.Addrs[1] + "]<get_miss", "load<get_miss"}; !slices.Equal(got, want) {
		t.Fatalf("GetMany's spans: %v, want %v", got, want)
	}
	if got, want := tracers[1].take(t), []string{"handoff[" + cl.Addrs[0] + "]<serve", "load<serve", "serve<"}; !slices.Equal(got, want) {
		t.Fatalf("owner's spans for GetMany: %v, want %v", got, want)
	}
}

// TestNodeStatsCluster: on three real nodes, NodeStats reports each peer's share of the ring,
// the latency of the requests to it and of those served, the caches' Stats, the hot keys, and,
// once a peer has died, that it is skipped, its failures and the node's last errors.
func TestNodeStatsCluster(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3, groupcache.WithNodeLogger(discardLog()))
	caches := stringCaches(t, cl, "obs", newLoadLog(), nil, groupcache.WithLogger(discardLog()))
	ctx := context.Background()
	var from1, from2 []string
	for len(from1) < 5 {
		from1 = append(from1, keyOwnedBy(t, cl, 1, from1...))
	}
	for len(from2) < 3 {
		from2 = append(from2, keyOwnedBy(t, cl, 2, from2...))
	}
	for _, k := range slices.Concat(from1, from2) {
		if _, err := caches[0].Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// The default promoter keeps a copy from a key's second fetch: from1[0], fetched again,
	// is then served from the hot store.
	caches[0].Remove(ctx, from1[0])
	for range 3 {
		caches[0].Get(ctx, from1[0])
	}

	st := cl.Nodes[0].Stats()
	cs := caches[0].Stats()
	if got := st.Caches["obs"]; got.RemoteGets != cs.RemoteGets || got.Gets != cs.Gets || len(st.Caches) != 1 {
		t.Fatalf("NodeStats.Caches = %+v, want the cache's Stats %+v", st.Caches, cs)
	}
	if cs.RemoteGets != 9 || cs.FetchLatency.Count() != 9 || cs.HotHits != 2 {
		t.Fatalf("RemoteGets %d, FetchLatency counts %d, HotHits %d; want 9, 9, 2", cs.RemoteGets, cs.FetchLatency.Count(), cs.HotHits)
	}
	if len(cs.HotKeys) != 8 || cs.HotKeys[0] != (observe.KeyCount{Key: from1[0], Count: 2}) || cs.HotKeys[1].Count != 1 {
		t.Fatalf("HotKeys = %+v, want the 8 keys fetched, %s first, fetched twice", cs.HotKeys, from1[0])
	}
	ring, err := hash.NewRing(cl.Addrs)
	if err != nil {
		t.Fatal(err)
	}
	shares := ring.Shares()
	var sum float64
	for i, p := range ring.Peers() {
		ps, ok := st.Peers[p]
		if !ok || ps.RingShare != shares[i] {
			t.Fatalf("Peers[%s] = %+v, want ring share %v", p, ps, shares[i])
		}
		sum += ps.RingShare
	}
	if len(st.Peers) != 3 || math.Abs(sum-1) > 1e-9 {
		t.Fatalf("Peers = %+v: shares add up to %v", st.Peers, sum)
	}
	p1, p2 := st.Peers[cl.Addrs[1]], st.Peers[cl.Addrs[2]]
	if p1.FetchLatency.Count() != 6 || p2.FetchLatency.Count() != 3 || p1.Errors != 0 || p1.Down || st.Peers[cl.Addrs[0]].FetchLatency.Count() != 0 {
		t.Fatalf("peer stats: %s %+v, %s %+v", cl.Addrs[1], p1, cl.Addrs[2], p2)
	}
	if served := cl.Nodes[1].Stats(); served.ServeLatency.Count() != served.Caches["obs"].PeerRequests || served.ServeLatency.Count() != 6 {
		t.Fatalf("node 1 served %d requests, ServeLatency counts %d; want 6", served.Caches["obs"].PeerRequests, served.ServeLatency.Count())
	}

	// Node 2 dies: a Get of a key it owns fails over, and node 0 skips it for the back-off.
	cl.Kill(2)
	before := time.Now()
	k := keyOwnedBy(t, cl, 2, from2...)
	if _, err := caches[0].Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	st = cl.Nodes[0].Stats()
	p2 = st.Peers[cl.Addrs[2]]
	if !p2.Down || !p2.DownUntil.After(before) || p2.Errors != 1 || p2.FetchLatency.Count() != 4 {
		t.Fatalf("dead peer: %+v", p2)
	}
	if len(st.Failures) != 1 || st.Failures[0].Peer != cl.Addrs[2] || st.Failures[0].Cache != "obs" ||
		!strings.Contains(st.Failures[0].Msg, "peer") || st.Failures[0].Time.Before(before) {
		t.Fatalf("Failures = %+v", st.Failures)
	}
	if f := caches[0].Stats().Failures; !slices.Equal(f, st.Failures) {
		t.Fatalf("the cache's Failures %+v, the node's %+v", f, st.Failures)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
