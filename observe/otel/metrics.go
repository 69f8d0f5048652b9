package otel

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/peer"
)

// Cache is a cache that works alone (without a node), as RegisterMetrics and Histograms take it:
// its name, for the attribute groupcache.cache, and its Stats method. A cache on a node is in its
// node's metrics already.
type Cache struct {
	Name  string
	Stats func() groupcache.Stats
}

// metricDef is a counter or gauge read from a cache's Stats (cache) or a node's NodeStats (node).
type metricDef struct {
	name, unit, desc string
	gauge            bool
	cache            func(*groupcache.Stats) int64
	node             func(*groupcache.NodeStats) int64
}

func counter(name, unit, desc string, v func(*groupcache.Stats) int64) metricDef {
	return metricDef{name: name, unit: unit, desc: desc, cache: v}
}

func gauge(name, unit, desc string, v func(*groupcache.Stats) int64) metricDef {
	return metricDef{name: name, unit: unit, desc: desc, gauge: true, cache: v}
}

func nodeCounter(name, unit, desc string, v func(*groupcache.NodeStats) int64) metricDef {
	return metricDef{name: name, unit: unit, desc: desc, node: v}
}

func nodeGauge(name, unit, desc string, v func(*groupcache.NodeStats) int64) metricDef {
	return metricDef{name: name, unit: unit, desc: desc, gauge: true, node: v}
}

// cacheMetrics are a cache's counters and gauges (groupcache.Stats documents each in full).
var cacheMetrics = []metricDef{
	counter("groupcache.gets", "{lookup}", "Own lookups: each Get, each View, each distinct key of a GetMany.", func(s *groupcache.Stats) int64 { return s.Gets }),
	counter("groupcache.hits", "{lookup}", "Own lookups answered from memory.", func(s *groupcache.Stats) int64 { return s.Hits }),
	counter("groupcache.misses", "{lookup}", "Own lookups that went on to the single flight.", func(s *groupcache.Stats) int64 { return s.Misses }),
	counter("groupcache.loads", "{key}", "Keys given to the loader in this process.", func(s *groupcache.Stats) int64 { return s.Loads }),
	counter("groupcache.load_waits", "{call}", "Loader calls that waited for a slot (WithMaxLoads).", func(s *groupcache.Stats) int64 { return s.LoadWaits }),
	counter("groupcache.load_errors", "{key}", "Loads that failed, not found included.", func(s *groupcache.Stats) int64 { return s.LoadErrors }),
	counter("groupcache.deduplicated", "{lookup}", "Lookups and peers' requests that joined another caller's load or fetch.", func(s *groupcache.Stats) int64 { return s.Deduplicated }),
	counter("groupcache.too_large", "{value}", "Values over the per-value limit, not cached.", func(s *groupcache.Stats) int64 { return s.TooLarge }),
	counter("groupcache.evictions", "{entry}", "Entries dropped to stay within the byte bound.", func(s *groupcache.Stats) int64 { return s.Evictions }),
	counter("groupcache.evicted_fresh", "{entry}", "Evictions of entries that had not expired: dropped only for room.", func(s *groupcache.Stats) int64 { return s.EvictedFresh }),
	counter("groupcache.expirations", "{lookup}", "Lookups in memory that found their entry expired.", func(s *groupcache.Stats) int64 { return s.Expirations }),
	gauge("groupcache.items", "{entry}", "Entries in memory, hot copies and cached not-found answers included.", func(s *groupcache.Stats) int64 { return s.Items }),
	gauge("groupcache.size", "By", "Sum of the costs of the entries in memory.", func(s *groupcache.Stats) int64 { return s.Bytes }),
	gauge("groupcache.max_size", "By", "The cache's byte bound, main and hot store together.", func(s *groupcache.Stats) int64 { return s.MaxBytes }),
	counter("groupcache.negative_entries", "{entry}", "Not-found answers cached (WithNegativeTTL).", func(s *groupcache.Stats) int64 { return s.NegativeEntries }),
	counter("groupcache.negative_hits", "{lookup}", "Own lookups answered by a cached not-found answer.", func(s *groupcache.Stats) int64 { return s.NegativeHits }),
	counter("groupcache.stale_hits", "{lookup}", "Own lookups answered with a stale value.", func(s *groupcache.Stats) int64 { return s.StaleHits }),
	counter("groupcache.refreshes", "{refresh}", "Background refreshes started.", func(s *groupcache.Stats) int64 { return s.Refreshes }),
	counter("groupcache.refresh_errors", "{refresh}", "Background refreshes that failed.", func(s *groupcache.Stats) int64 { return s.RefreshErrors }),
	counter("groupcache.sets", "{call}", "Set calls that stored a value.", func(s *groupcache.Stats) int64 { return s.Sets }),
	counter("groupcache.removes", "{key}", "Keys passed to Remove and RemoveMany.", func(s *groupcache.Stats) int64 { return s.Removes }),
	counter("groupcache.clears", "{call}", "Clear calls.", func(s *groupcache.Stats) int64 { return s.Clears }),
	counter("groupcache.batch_gets", "{call}", "GetMany calls.", func(s *groupcache.Stats) int64 { return s.BatchGets }),
	counter("groupcache.batch_keys", "{key}", "Keys GetMany calls asked for.", func(s *groupcache.Stats) int64 { return s.BatchKeys }),
	counter("groupcache.batch_requests", "{request}", "GetMany requests sent to peers.", func(s *groupcache.Stats) int64 { return s.BatchRequests }),
	counter("groupcache.batch_loads", "{call}", "BatchLoader.LoadMany calls.", func(s *groupcache.Stats) int64 { return s.BatchLoads }),
	counter("groupcache.hot_hits", "{lookup}", "Own lookups answered from the hot store.", func(s *groupcache.Stats) int64 { return s.HotHits }),
	gauge("groupcache.hot_items", "{entry}", "Entries in the hot store.", func(s *groupcache.Stats) int64 { return s.HotItems }),
	gauge("groupcache.hot_size", "By", "Sum of the costs of the hot store's entries.", func(s *groupcache.Stats) int64 { return s.HotBytes }),
	counter("groupcache.remote_gets", "{key}", "Keys asked of their owning peers.", func(s *groupcache.Stats) int64 { return s.RemoteGets }),
	counter("groupcache.remote_errors", "{error}", "Failures talking to peers.", func(s *groupcache.Stats) int64 { return s.RemoteErrors }),
	counter("groupcache.fallback_loads", "{key}", "Keys loaded here because their owner could not serve them.", func(s *groupcache.Stats) int64 { return s.FallbackLoads }),
	counter("groupcache.handoffs", "{value}", "Values taken over from their previous owner after a peer-set change.", func(s *groupcache.Stats) int64 { return s.Handoffs }),
	counter("groupcache.peer_requests", "{key}", "Keys peers asked this node for.", func(s *groupcache.Stats) int64 { return s.PeerRequests }),
	counter("groupcache.peer_loads", "{key}", "Loads peers' requests caused here.", func(s *groupcache.Stats) int64 { return s.PeerLoads }),
	counter("groupcache.sent", "By", "Value bytes sent to peers, compressed where they were.", func(s *groupcache.Stats) int64 { return s.BytesSent }),
	counter("groupcache.sent_raw", "By", "Value bytes sent to peers, before compression.", func(s *groupcache.Stats) int64 { return s.BytesSentRaw }),
	counter("groupcache.received", "By", "Value bytes received from peers, compressed where they were.", func(s *groupcache.Stats) int64 { return s.BytesReceived }),
	counter("groupcache.received_raw", "By", "Value bytes received from peers, after decompression.", func(s *groupcache.Stats) int64 { return s.BytesReceivedRaw }),
}

// nodeMetrics are the counters and gauges of a node's transport.
var nodeMetrics = []metricDef{
	nodeCounter("groupcache.server.panics", "{panic}", "Panics of the node's caches while serving peers.", func(s *groupcache.NodeStats) int64 { return s.Server.Panics }),
	nodeCounter("groupcache.server.read", "By", "Bytes of the frames peers sent.", func(s *groupcache.NodeStats) int64 { return s.Server.BytesIn }),
	nodeCounter("groupcache.server.written", "By", "Bytes of the frames sent to peers in reply.", func(s *groupcache.NodeStats) int64 { return s.Server.BytesOut }),
	nodeGauge("groupcache.server.connections", "{connection}", "Connections from peers open now.", func(s *groupcache.NodeStats) int64 { return s.Server.ActiveConns }),
	nodeCounter("groupcache.server.accepted", "{connection}", "Connections from peers accepted.", func(s *groupcache.NodeStats) int64 { return s.Server.Conns }),
	nodeCounter("groupcache.server.detached", "{request}", "Peers' requests served on a goroutine of their own.", func(s *groupcache.NodeStats) int64 { return s.Server.Detached }),
	nodeCounter("groupcache.server.refused", "{client}", "Clients refused before they were served.", func(s *groupcache.NodeStats) int64 { return s.Server.Refused }),
	nodeCounter("groupcache.client.requests", "{request}", "Requests this node sent to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.Requests }),
	nodeCounter("groupcache.client.errors", "{request}", "Requests to peers that returned an error, not found included.", func(s *groupcache.NodeStats) int64 { return s.Client.Errors }),
	nodeCounter("groupcache.client.sent", "By", "Bytes of the frames sent to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.BytesSent }),
	nodeCounter("groupcache.client.received", "By", "Bytes of the frames peers sent in reply.", func(s *groupcache.NodeStats) int64 { return s.Client.BytesReceived }),
	nodeCounter("groupcache.client.dials", "{connection}", "Connections made to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.Dials }),
	nodeGauge("groupcache.client.connections", "{connection}", "Connections to peers open now.", func(s *groupcache.NodeStats) int64 { return s.Client.OpenConns }),
	nodeCounter("groupcache.client.waits", "{request}", "Requests that waited for room on a connection.", func(s *groupcache.NodeStats) int64 { return s.Client.Waits }),
	nodeCounter("groupcache.client.retries", "{request}", "Requests sent again because their connection broke.", func(s *groupcache.NodeStats) int64 { return s.Client.Retries }),
	nodeCounter("groupcache.client.shared_writes", "{request}", "Requests written together with others.", func(s *groupcache.NodeStats) int64 { return s.Client.SharedWrites }),
	nodeCounter("groupcache.misnamed_peers", "{connection}", "Connections to peers that named themselves otherwise than this node's peer set.", func(s *groupcache.NodeStats) int64 { return s.Misnamed }),
}

// instruments are the observable instruments RegisterMetrics made.
type instruments struct {
	cache, node                     []metric.Int64Observable
	requests, replies, errors, down metric.Int64Observable
	downUntil, ringShare            metric.Float64Observable
	all                             []metric.Observable
}

// RegisterMetrics registers, on meter, observable instruments of node's metrics and those of
// every cache attached to it (node may be nil), and of the caches given, which work alone; a
// callback reads their Stats at each collection. Cache names must differ. Unregister the
// returned Registration to stop. The histograms are Histograms', for an SDK reader.
func RegisterMetrics(meter metric.Meter, node *groupcache.Node, caches ...Cache) (metric.Registration, error) {
	var in instruments
	var err error
	if in.cache, err = in.make(meter, cacheMetrics); err != nil {
		return nil, err
	}
	if in.node, err = in.make(meter, nodeMetrics); err != nil {
		return nil, err
	}
	if err = in.makeLabelled(meter); err != nil {
		return nil, err
	}
	caches = append([]Cache(nil), caches...)
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if node != nil {
			st := node.Stats()
			in.observeNode(o, &st)
			for name, cs := range st.Caches {
				in.observeCache(o, name, &cs)
			}
		}
		for _, c := range caches {
			cs := c.Stats()
			in.observeCache(o, c.Name, &cs)
		}
		return nil
	}, in.all...)
}

// make makes the instruments of defs.
func (in *instruments) make(meter metric.Meter, defs []metricDef) ([]metric.Int64Observable, error) {
	out := make([]metric.Int64Observable, len(defs))
	for i, d := range defs {
		var err error
		if d.gauge {
			out[i], err = meter.Int64ObservableGauge(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		} else {
			out[i], err = meter.Int64ObservableCounter(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		}
		if err != nil {
			return nil, fmt.Errorf("otel: %s: %w", d.name, err)
		}
		in.all = append(in.all, out[i])
	}
	return out, nil
}

// makeLabelled makes the instruments with attributes of their own: the server's by operation and
// status, and the peers'.
func (in *instruments) makeLabelled(meter metric.Meter) error {
	var errs [6]error
	in.requests, errs[0] = meter.Int64ObservableCounter("groupcache.server.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests peers sent to this node, by operation (groupcache.op)."))
	in.replies, errs[1] = meter.Int64ObservableCounter("groupcache.server.replies", metric.WithUnit("{reply}"),
		metric.WithDescription("Replies this node sent to peers, by status (groupcache.status)."))
	in.errors, errs[2] = meter.Int64ObservableCounter("groupcache.peer.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Failed requests to the peer, and keys it answered with an error (not found excluded)."))
	in.down, errs[3] = meter.Int64ObservableGauge("groupcache.peer.down", metric.WithUnit("1"),
		metric.WithDescription("1 while the node skips the peer (its keys are loaded locally), else 0."))
	in.downUntil, errs[4] = meter.Float64ObservableGauge("groupcache.peer.down_until", metric.WithUnit("s"),
		metric.WithDescription("When the node's back-off of the peer ends at the latest (Unix time), 0 when it is not skipped."))
	in.ringShare, errs[5] = meter.Float64ObservableGauge("groupcache.peer.ring_share", metric.WithUnit("1"),
		metric.WithDescription("Share of the key space (0 to 1) the peer owns on this node's ring; the node itself included."))
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("otel: %w", err)
		}
	}
	in.all = append(in.all, in.requests, in.replies, in.errors, in.down, in.downUntil, in.ringShare)
	return nil
}

// observeCache observes the counters and gauges of the cache named name.
func (in *instruments) observeCache(o metric.Observer, name string, st *groupcache.Stats) {
	attrs := metric.WithAttributes(attrCache.String(name))
	for i, d := range cacheMetrics {
		o.ObserveInt64(in.cache[i], d.cache(st), attrs)
	}
}

// observeNode observes a node's own counters and gauges, and its peers'.
func (in *instruments) observeNode(o metric.Observer, st *groupcache.NodeStats) {
	for i, d := range nodeMetrics {
		o.ObserveInt64(in.node[i], d.node(st))
	}
	for op, n := range st.Server.ByOp {
		if op != 0 { // no operation has code 0
			o.ObserveInt64(in.requests, n, metric.WithAttributes(attribute.String("groupcache.op", peer.Op(op).String())))
		}
	}
	for status, n := range st.Server.ByStatus {
		label := strings.ReplaceAll(peer.Status(status).String(), " ", "_")
		o.ObserveInt64(in.replies, n, metric.WithAttributes(attribute.String("groupcache.status", label)))
	}
	for addr, p := range st.Peers {
		attrs := metric.WithAttributes(attrPeer.String(addr))
		down, until := int64(0), 0.0
		if p.Down {
			down, until = 1, float64(p.DownUntil.UnixNano())/1e9
		}
		o.ObserveInt64(in.errors, p.Errors, attrs)
		o.ObserveInt64(in.down, down, attrs)
		o.ObserveFloat64(in.downUntil, until, attrs)
		o.ObserveFloat64(in.ringShare, p.RingShare, attrs)
	}
}
