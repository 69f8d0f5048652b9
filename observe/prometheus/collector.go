package prometheus

import (
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

// Cache is a cache that works alone (without a node), as New takes it: its name, for the label
// cache, and its Stats method. A cache on a node is in its node's metrics already.
type Cache struct {
	Name  string
	Stats func() groupcache.Stats
}

// Collector is a prometheus.Collector of the metrics of a node, every cache attached to it, and
// caches that work alone. It reads their Stats at each scrape. It is safe for concurrent use.
type Collector struct {
	node   *groupcache.Node
	caches []Cache
}

// New returns a Collector of node's metrics and those of every cache attached to it (node may be
// nil), and of the caches given, which work alone. Cache names must differ: two caches of one
// name would make the same series, which the registry refuses at scrape time.
func New(node *groupcache.Node, caches ...Cache) *Collector {
	return &Collector{node: node, caches: append([]Cache(nil), caches...)}
}

// Describe sends the descriptions of every metric the Collector may send.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, m := range cacheCounters {
		ch <- m.desc
	}
	for _, m := range cacheHistograms {
		ch <- m.desc
	}
	for _, m := range nodeCounters {
		ch <- m.desc
	}
	for _, d := range []*prom.Desc{serveDuration, serverRequests, serverReplies, peerFetchDuration, peerErrors,
		peerDown, peerDownUntil, peerRingShare} {
		ch <- d
	}
}

// Collect reads the Stats and sends the metrics.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	if c.node != nil {
		st := c.node.Stats()
		collectNode(ch, &st)
		for name, cs := range st.Caches {
			collectCache(ch, name, &cs)
		}
	}
	for _, cache := range c.caches {
		cs := cache.Stats()
		collectCache(ch, cache.Name, &cs)
	}
}

// collectCache sends the metrics of the cache named name.
func collectCache(ch chan<- prom.Metric, name string, st *groupcache.Stats) {
	for _, m := range cacheCounters {
		ch <- prom.MustNewConstMetric(m.desc, m.kind, float64(m.value(st)), name)
	}
	for _, m := range cacheHistograms {
		ch <- histogram(m.desc, m.value(st), name)
	}
}

// collectNode sends the metrics of a node, without its caches'.
func collectNode(ch chan<- prom.Metric, st *groupcache.NodeStats) {
	for _, m := range nodeCounters {
		ch <- prom.MustNewConstMetric(m.desc, m.kind, float64(m.value(st)))
	}
	ch <- histogram(serveDuration, st.ServeLatency)
	for op, n := range st.Server.ByOp {
		if op != 0 { // no operation has code 0
			ch <- prom.MustNewConstMetric(serverRequests, prom.CounterValue, float64(n), peer.Op(op).String())
		}
	}
	for status, n := range st.Server.ByStatus {
		label := strings.ReplaceAll(peer.Status(status).String(), " ", "_")
		ch <- prom.MustNewConstMetric(serverReplies, prom.CounterValue, float64(n), label)
	}
	for addr, p := range st.Peers {
		ch <- histogram(peerFetchDuration, p.FetchLatency, addr)
		ch <- prom.MustNewConstMetric(peerErrors, prom.CounterValue, float64(p.Errors), addr)
		down, until := 0.0, 0.0
		if p.Down {
			down, until = 1, float64(p.DownUntil.UnixNano())/1e9
		}
		ch <- prom.MustNewConstMetric(peerDown, prom.GaugeValue, down, addr)
		ch <- prom.MustNewConstMetric(peerDownUntil, prom.GaugeValue, until, addr)
		ch <- prom.MustNewConstMetric(peerRingShare, prom.GaugeValue, p.RingShare, addr)
	}
}

// histogram returns h as a Prometheus histogram: cumulative counts at each bound of
// observe.Bound, in seconds; the last bucket is +Inf's.
func histogram(desc *prom.Desc, h observe.Histogram, labels ...string) prom.Metric {
	buckets := make(map[float64]uint64, observe.Buckets-1)
	var cum uint64
	for i := range observe.Buckets - 1 {
		cum += uint64(h.Counts[i])
		buckets[observe.Bound(i).Seconds()] = cum
	}
	return prom.MustNewConstHistogram(desc, uint64(h.Count()), h.Sum.Seconds(), buckets, labels...)
}
