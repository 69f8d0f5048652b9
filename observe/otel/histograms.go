package otel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// bounds are the histograms' bucket bounds in seconds (observe.Bound), shared by every data
// point and never changed.
var bounds = func() []float64 {
	b := make([]float64, observe.Buckets-1)
	for i := range b {
		b[i] = observe.Bound(i).Seconds()
	}
	return b
}()

// Histograms returns a Producer of the SDK (give it to a reader with sdkmetric.WithProducer) of
// the latency and age histograms of node, every cache attached to it (node may be nil) and the
// caches given, which work alone, read at each collection (cumulative: each counts from when its
// cache or node was made; their StartTime is when the Producer was made): groupcache.load.duration, groupcache.fetch.duration and groupcache.eviction.age per cache
// (attribute groupcache.cache), groupcache.serve.duration for the node, and
// groupcache.peer.fetch.duration per peer (attribute groupcache.peer), in seconds, with the
// buckets of package observe.
func Histograms(node *groupcache.Node, caches ...Cache) sdkmetric.Producer {
	return &producer{node: node, caches: append([]Cache(nil), caches...), start: time.Now()}
}

type producer struct {
	node   *groupcache.Node
	caches []Cache
	start  time.Time
}

// histogramSet collects the data points of the histograms of one collection.
type histogramSet struct {
	start, now                      time.Time
	load, fetch, age, serve, byPeer []metricdata.HistogramDataPoint[float64]
}

func (hs *histogramSet) point(h observe.Histogram, attrs ...attribute.KeyValue) metricdata.HistogramDataPoint[float64] {
	counts := make([]uint64, observe.Buckets)
	for i, c := range h.Counts {
		counts[i] = uint64(c)
	}
	return metricdata.HistogramDataPoint[float64]{Attributes: attribute.NewSet(attrs...), StartTime: hs.start, Time: hs.now,
		Count: uint64(h.Count()), Bounds: bounds, BucketCounts: counts, Sum: h.Sum.Seconds()}
}

func (hs *histogramSet) cache(name string, st *groupcache.Stats) {
	hs.load = append(hs.load, hs.point(st.LoadLatency, attrCache.String(name)))
	hs.fetch = append(hs.fetch, hs.point(st.FetchLatency, attrCache.String(name)))
	hs.age = append(hs.age, hs.point(st.EvictionAge, attrCache.String(name)))
}

// Produce reads the stats and returns the histograms.
func (p *producer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	hs := histogramSet{start: p.start, now: time.Now()}
	if p.node != nil {
		st := p.node.Stats()
		hs.serve = append(hs.serve, hs.point(st.ServeLatency))
		for addr, ps := range st.Peers {
			hs.byPeer = append(hs.byPeer, hs.point(ps.FetchLatency, attrPeer.String(addr)))
		}
		for name, cs := range st.Caches {
			hs.cache(name, &cs)
		}
	}
	for _, c := range p.caches {
		cs := c.Stats()
		hs.cache(c.Name, &cs)
	}
	var ms []metricdata.Metrics
	for _, h := range []struct {
		name, desc string
		points     []metricdata.HistogramDataPoint[float64]
	}{
		{"groupcache.load.duration", "Latency of the loader's calls (Load, or LoadMany for a batch).", hs.load},
		{"groupcache.fetch.duration", "Latency of the cache's requests to peers for values.", hs.fetch},
		{"groupcache.eviction.age", "Age of the entries evicted while fresh, from when they were stored.", hs.age},
		{"groupcache.serve.duration", "Latency of the peers' requests for values served here.", hs.serve},
		{"groupcache.peer.fetch.duration", "Latency of this node's requests to the peer for values, by every cache.", hs.byPeer},
	} {
		if len(h.points) > 0 {
			ms = append(ms, metricdata.Metrics{Name: h.name, Description: h.desc, Unit: "s",
				Data: metricdata.Histogram[float64]{DataPoints: h.points, Temporality: metricdata.CumulativeTemporality}})
		}
	}
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: scope}, Metrics: ms}}, nil
}
