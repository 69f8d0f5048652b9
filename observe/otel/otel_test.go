package otel

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/observe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// keyOwnedBy returns a key that starts with prefix and that owner owns on the ring of peers.
func keyOwnedBy(t *testing.T, peers []string, owner, prefix string) string {
	t.Helper()
	ring, err := hash.NewRing(peers)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		k := prefix + strconv.Itoa(i)
		kb, _ := codec.String().Append(nil, k)
		if o, _ := ring.Owner(kb); o == owner {
			return k
		}
	}
}

// node is one node of the test: its cache, and what its tracer recorded.
type node struct {
	cache *groupcache.Cache[string, string]
	spans *tracetest.SpanRecorder
}

// twoNodes starts two real nodes on 127.0.0.1, each with a cache "users" traced by a tracer of
// its own, whose loader says "not found" for keys that start with "missing".
func twoNodes(t *testing.T) (*testcluster.Cluster, []node) {
	cl := testcluster.Start(t, 2, groupcache.WithNodeLogger(quiet()))
	var nodes []node
	for _, n := range cl.Nodes {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		c, err := groupcache.New[string, string]("users", groupcache.LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
			// The loader's own span is a child of the Load span.
			_, span := tp.Tracer("loader").Start(ctx, "query")
			defer span.End()
			time.Sleep(2 * time.Millisecond)
			if strings.HasPrefix(k, "missing") {
				return "", groupcache.ErrNotFound
			}
			if strings.HasPrefix(k, "bad") {
				return "", errors.New("database down")
			}
			return "v-" + k, nil
		}), groupcache.WithNode(n), groupcache.WithTracer(NewTracer(tp)), groupcache.WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		nodes = append(nodes, node{c, rec})
	}
	return cl, nodes
}

// byName returns the ended spans of rec by name, and forgets them.
func byName(t *testing.T, rec *tracetest.SpanRecorder) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if _, dup := out[s.Name()]; dup {
			t.Fatalf("two spans named %s", s.Name())
		}
		out[s.Name()] = s
	}
	rec.Reset()
	return out
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// childOf checks that child's parent is parent.
func childOf(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if child.Parent().SpanID() != parent.SpanContext().SpanID() || child.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("%s is not a child of %s", child.Name(), parent.Name())
	}
}

// TestSpansOnTwoNodes: a Get of a key the other node owns makes, on the caller, a get_miss span
// with a fetch (a client span naming the peer) in it, and on the owner a serve span (a server
// span, the child of the caller's fetch: the request carried its trace context) with the load in
// it and the loader's own span in that: one trace; errors set the spans' status, "not found" does
// not.
func TestSpansOnTwoNodes(t *testing.T) {
	cl, nodes := twoNodes(t)
	ctx := context.Background()
	k := keyOwnedBy(t, cl.Addrs, cl.Addrs[1], "k")
	if _, err := nodes[0].cache.Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	caller := byName(t, nodes[0].spans)
	miss, fetch := caller["groupcache.get_miss"], caller["groupcache.fetch"]
	if len(caller) != 2 || miss == nil || fetch == nil {
		t.Fatalf("caller's spans: %v", caller)
	}
	childOf(t, fetch, miss)
	if fetch.SpanKind() != trace.SpanKindClient || attr(fetch, attrPeer).AsString() != cl.Addrs[1] ||
		attr(miss, attrCache).AsString() != "users" || attr(miss, attrKeys).AsInt64() != 1 || miss.Parent().IsValid() {
		t.Fatalf("caller's spans: %+v, %+v", miss, fetch)
	}
	owner := byName(t, nodes[1].spans)
	serve, load, query := owner["groupcache.serve"], owner["groupcache.load"], owner["query"]
	if serve == nil || load == nil || query == nil || serve.SpanKind() != trace.SpanKindServer || !serve.Parent().IsRemote() {
		t.Fatalf("owner's spans: %v", owner)
	}
	childOf(t, serve, fetch)
	childOf(t, load, serve)
	childOf(t, query, load)
	if h := owner["groupcache.handoff"]; h != nil {
		childOf(t, h, serve) // the owner peeks at its previous owner first: node 0
	}
	if load.EndTime().Sub(load.StartTime()) < 2*time.Millisecond {
		t.Fatalf("load span of %v, the loader takes 2 ms", load.EndTime().Sub(load.StartTime()))
	}

	// Keys node 0 owns: it loads them itself.
	missing := keyOwnedBy(t, cl.Addrs, cl.Addrs[0], "missing")
	if _, err := nodes[0].cache.Get(ctx, missing); !errors.Is(err, groupcache.ErrNotFound) {
		t.Fatal(err)
	}
	spans := byName(t, nodes[0].spans)
	for _, name := range []string{"groupcache.get_miss", "groupcache.load"} {
		s := spans[name]
		if s == nil || !attr(s, attrNotFound).AsBool() || s.Status().Code != codes.Unset {
			t.Fatalf("%s of a key not found: %+v (spans %v)", name, s, spans)
		}
	}
	if _, err := nodes[0].cache.Get(ctx, keyOwnedBy(t, cl.Addrs, cl.Addrs[0], "bad")); err == nil {
		t.Fatal("no error from a failing loader")
	}
	spans = byName(t, nodes[0].spans)
	for _, name := range []string{"groupcache.get_miss", "groupcache.load"} {
		s := spans[name]
		if s == nil || attr(s, attrNotFound).AsBool() || s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "database down") {
			t.Fatalf("%s of a failed load: %+v (spans %v)", name, s, spans)
		}
	}
}

// TestWaitFlightSpan: a Get that joins another's flight has a wait_flight span in its get_miss,
// which starts when the wait started.
func TestWaitFlightSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := NewTracer(tp)
	start := time.Now().Add(-time.Second)
	ctx, end := tr.Start(context.Background(), observe.Span{Step: observe.GetMiss, Cache: "c", Keys: 1})
	_, endWait := tr.Start(ctx, observe.Span{Step: observe.WaitFlight, Cache: "c", Keys: 1, Start: start})
	endWait(nil)
	end(nil)
	spans := byName(t, rec)
	wait := spans["groupcache.wait_flight"]
	childOf(t, wait, spans["groupcache.get_miss"])
	if !wait.StartTime().Equal(start) {
		t.Fatalf("wait_flight starts at %v, want %v", wait.StartTime(), start)
	}
}

// TestMetricsOnTwoNodes: the counters and gauges read through observable instruments, and the
// histograms through the Producer, match the nodes' Stats.
func TestMetricsOnTwoNodes(t *testing.T) {
	cl, nodes := twoNodes(t)
	ctx := context.Background()
	alone, err := groupcache.New[int, int]("alone", groupcache.LoaderFunc[int, int](func(_ context.Context, k int) (int, error) { return k, nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	for i := range 20 {
		k := "k" + strconv.Itoa(i)
		nodes[0].cache.Get(ctx, k)
		nodes[1].cache.Get(ctx, k)
		alone.Get(ctx, i)
	}
	for i, n := range cl.Nodes {
		reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(Histograms(n, Cache{Name: "alone", Stats: alone.Stats})))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		reg, err := RegisterMetrics(mp.Meter("test"), n, Cache{Name: "alone", Stats: alone.Stats})
		if err != nil {
			t.Fatal(err)
		}
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		st := n.Stats()
		checkMetrics(t, &rm, st, alone.Stats())
		if err := reg.Unregister(); err != nil {
			t.Fatal(err)
		}
		mp.Shutdown(ctx)
		if st.Caches["users"].Loads == 0 || st.Caches["users"].RemoteGets == 0 {
			t.Fatalf("node %d: no loads or fetches: %+v", i, st.Caches["users"])
		}
	}
}

// checkMetrics checks what a collection found against the Stats.
func checkMetrics(t *testing.T, rm *metricdata.ResourceMetrics, st groupcache.NodeStats, alone groupcache.Stats) {
	t.Helper()
	found := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = m
		}
	}
	caches := map[string]groupcache.Stats{"users": st.Caches["users"], "alone": alone}
	for _, d := range cacheMetrics {
		for name, cs := range caches {
			if got, want := int64Value(t, found[d.name], attrCache.String(name)), d.cache(&cs); got != want {
				t.Errorf("%s{%s} = %d, want %d", d.name, name, got, want)
			}
		}
	}
	for _, d := range nodeMetrics {
		if got, want := int64Value(t, found[d.name]), d.node(&st); got != want {
			t.Errorf("%s = %d, want %d", d.name, got, want)
		}
	}
	for addr, ps := range st.Peers {
		share := found["groupcache.peer.ring_share"].Data.(metricdata.Gauge[float64])
		if got := point(t, "ring share", share.DataPoints, attrPeer.String(addr)).Value; got != ps.RingShare {
			t.Errorf("ring share of %s = %v, want %v", addr, got, ps.RingShare)
		}
		checkHistogram(t, found["groupcache.peer.fetch.duration"], ps.FetchLatency, attrPeer.String(addr))
	}
	checkHistogram(t, found["groupcache.serve.duration"], st.ServeLatency)
	for name, cs := range caches {
		checkHistogram(t, found["groupcache.load.duration"], cs.LoadLatency, attrCache.String(name))
		checkHistogram(t, found["groupcache.fetch.duration"], cs.FetchLatency, attrCache.String(name))
		checkHistogram(t, found["groupcache.eviction.age"], cs.EvictionAge, attrCache.String(name))
	}
}

// point returns the data point of points whose attributes are exactly attrs.
func point[N int64 | float64](t *testing.T, name string, points []metricdata.DataPoint[N], attrs ...attribute.KeyValue) metricdata.DataPoint[N] {
	t.Helper()
	want := attribute.NewSet(attrs...)
	for _, p := range points {
		if p.Attributes.Equals(&want) {
			return p
		}
	}
	t.Fatalf("%s: no data point with %v", name, want.Encoded(attribute.DefaultEncoder()))
	return metricdata.DataPoint[N]{}
}

func int64Value(t *testing.T, m metricdata.Metrics, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
			t.Fatalf("%s: a counter that is not monotonic and cumulative", m.Name)
		}
		return point(t, m.Name, d.DataPoints, attrs...).Value
	case metricdata.Gauge[int64]:
		return point(t, m.Name, d.DataPoints, attrs...).Value
	}
	t.Fatalf("%s: %T", m.Name, m.Data)
	return 0
}

// checkHistogram checks that the data point of m with attrs is h, with observe's buckets in
// seconds.
func checkHistogram(t *testing.T, m metricdata.Metrics, h observe.Histogram, attrs ...attribute.KeyValue) {
	t.Helper()
	d, ok := m.Data.(metricdata.Histogram[float64])
	if !ok || m.Unit != "s" {
		t.Fatalf("%s: %T of unit %q", m.Name, m.Data, m.Unit)
	}
	want := attribute.NewSet(attrs...)
	for _, p := range d.DataPoints {
		if !p.Attributes.Equals(&want) {
			continue
		}
		if p.Count != uint64(h.Count()) || math.Abs(p.Sum-h.Sum.Seconds()) > 1e-9 || len(p.Bounds) != observe.Buckets-1 {
			t.Fatalf("%s%v: count %d sum %v, want %d %v", m.Name, attrs, p.Count, p.Sum, h.Count(), h.Sum.Seconds())
		}
		for i, c := range p.BucketCounts {
			if c != uint64(h.Counts[i]) || (i < len(p.Bounds) && p.Bounds[i] != observe.Bound(i).Seconds()) {
				t.Fatalf("%s%v: bucket %d differs", m.Name, attrs, i)
			}
		}
		return
	}
	t.Fatalf("%s: no data point with %v", m.Name, attrs)
}
