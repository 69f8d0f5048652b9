package prometheus

import (
	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// cacheMetric is a counter or gauge read from a cache's Stats.
type cacheMetric struct {
	desc  *prom.Desc
	kind  prom.ValueType
	value func(*groupcache.Stats) int64
}

// cacheHistogram is a histogram read from a cache's Stats.
type cacheHistogram struct {
	desc  *prom.Desc
	value func(*groupcache.Stats) observe.Histogram
}

// nodeMetric is a counter or gauge read from a node's NodeStats.
type nodeMetric struct {
	desc  *prom.Desc
	kind  prom.ValueType
	value func(*groupcache.NodeStats) int64
}

func cacheDesc(name, help string) *prom.Desc {
	return prom.NewDesc("groupcache_"+name, help, []string{"cache"}, nil)
}

func counter(name, help string, value func(*groupcache.Stats) int64) cacheMetric {
	return cacheMetric{cacheDesc(name, help), prom.CounterValue, value}
}

func gauge(name, help string, value func(*groupcache.Stats) int64) cacheMetric {
	return cacheMetric{cacheDesc(name, help), prom.GaugeValue, value}
}

// cacheCounters are the counters and gauges of a cache; each help is the meaning of the Stats
// field it reads (groupcache.Stats documents them in full).
var cacheCounters = []cacheMetric{
	counter("gets_total", "Own lookups: each Get, each View, each distinct key of a GetMany.", func(s *groupcache.Stats) int64 { return s.Gets }),
	counter("hits_total", "Own lookups answered from memory.", func(s *groupcache.Stats) int64 { return s.Hits }),
	counter("misses_total", "Own lookups that went on to the single flight.", func(s *groupcache.Stats) int64 { return s.Misses }),
	counter("loads_total", "Keys given to the loader in this process.", func(s *groupcache.Stats) int64 { return s.Loads }),
	counter("load_waits_total", "Loader calls that waited for a slot (WithMaxLoads).", func(s *groupcache.Stats) int64 { return s.LoadWaits }),
	counter("load_errors_total", "Loads that failed, not found included.", func(s *groupcache.Stats) int64 { return s.LoadErrors }),
	counter("deduplicated_total", "Lookups and peers' requests that joined another caller's load or fetch.", func(s *groupcache.Stats) int64 { return s.Deduplicated }),
	counter("too_large_total", "Values over the per-value limit, not cached.", func(s *groupcache.Stats) int64 { return s.TooLarge }),
	counter("evictions_total", "Entries dropped to stay within the byte bound.", func(s *groupcache.Stats) int64 { return s.Evictions }),
	counter("evicted_fresh_total", "Evictions of entries that had not expired: dropped only for room.", func(s *groupcache.Stats) int64 { return s.EvictedFresh }),
	counter("expirations_total", "Lookups in memory that found their entry expired.", func(s *groupcache.Stats) int64 { return s.Expirations }),
	gauge("items", "Entries in memory, hot copies and cached not-found answers included.", func(s *groupcache.Stats) int64 { return s.Items }),
	gauge("bytes", "Sum of the costs of the entries in memory.", func(s *groupcache.Stats) int64 { return s.Bytes }),
	gauge("max_bytes", "The cache's byte bound, main and hot store together.", func(s *groupcache.Stats) int64 { return s.MaxBytes }),
	counter("negative_entries_total", "Not-found answers cached (WithNegativeTTL).", func(s *groupcache.Stats) int64 { return s.NegativeEntries }),
	counter("negative_hits_total", "Own lookups answered by a cached not-found answer.", func(s *groupcache.Stats) int64 { return s.NegativeHits }),
	counter("stale_hits_total", "Own lookups answered with a stale value (WithStaleWhileRevalidate).", func(s *groupcache.Stats) int64 { return s.StaleHits }),
	counter("refreshes_total", "Background refreshes started.", func(s *groupcache.Stats) int64 { return s.Refreshes }),
	counter("refresh_errors_total", "Background refreshes that failed.", func(s *groupcache.Stats) int64 { return s.RefreshErrors }),
	counter("sets_total", "Set calls that stored a value.", func(s *groupcache.Stats) int64 { return s.Sets }),
	counter("removes_total", "Keys passed to Remove and RemoveMany.", func(s *groupcache.Stats) int64 { return s.Removes }),
	counter("clears_total", "Clear calls.", func(s *groupcache.Stats) int64 { return s.Clears }),
	counter("batch_gets_total", "GetMany calls.", func(s *groupcache.Stats) int64 { return s.BatchGets }),
	counter("batch_keys_total", "Keys GetMany calls asked for.", func(s *groupcache.Stats) int64 { return s.BatchKeys }),
	counter("batch_requests_total", "GetMany requests sent to peers.", func(s *groupcache.Stats) int64 { return s.BatchRequests }),
	counter("batch_loads_total", "BatchLoader.LoadMany calls.", func(s *groupcache.Stats) int64 { return s.BatchLoads }),
	counter("hot_hits_total", "Own lookups answered from the hot store.", func(s *groupcache.Stats) int64 { return s.HotHits }),
	gauge("hot_items", "Entries in the hot store.", func(s *groupcache.Stats) int64 { return s.HotItems }),
	gauge("hot_bytes", "Sum of the costs of the hot store's entries.", func(s *groupcache.Stats) int64 { return s.HotBytes }),
	counter("remote_gets_total", "Keys asked of their owning peers.", func(s *groupcache.Stats) int64 { return s.RemoteGets }),
	counter("remote_errors_total", "Failures talking to peers.", func(s *groupcache.Stats) int64 { return s.RemoteErrors }),
	counter("fallback_loads_total", "Keys loaded here because their owner could not serve them.", func(s *groupcache.Stats) int64 { return s.FallbackLoads }),
	counter("handoffs_total", "Values taken over from their previous owner after a peer-set change.", func(s *groupcache.Stats) int64 { return s.Handoffs }),
	counter("peer_requests_total", "Keys peers asked this node for.", func(s *groupcache.Stats) int64 { return s.PeerRequests }),
	counter("peer_loads_total", "Loads peers' requests caused here.", func(s *groupcache.Stats) int64 { return s.PeerLoads }),
	counter("sent_bytes_total", "Value bytes sent to peers, compressed where they were.", func(s *groupcache.Stats) int64 { return s.BytesSent }),
	counter("sent_raw_bytes_total", "Value bytes sent to peers, before compression.", func(s *groupcache.Stats) int64 { return s.BytesSentRaw }),
	counter("received_bytes_total", "Value bytes received from peers, compressed where they were.", func(s *groupcache.Stats) int64 { return s.BytesReceived }),
	counter("received_raw_bytes_total", "Value bytes received from peers, after decompression.", func(s *groupcache.Stats) int64 { return s.BytesReceivedRaw }),
}

// cacheHistograms are the histograms of a cache.
var cacheHistograms = []cacheHistogram{
	{cacheDesc("load_duration_seconds", "Latency of the loader's calls (Load, or LoadMany for a batch)."),
		func(s *groupcache.Stats) observe.Histogram { return s.LoadLatency }},
	{cacheDesc("fetch_duration_seconds", "Latency of the cache's requests to peers for values."),
		func(s *groupcache.Stats) observe.Histogram { return s.FetchLatency }},
	{cacheDesc("eviction_age_seconds", "Age of the entries evicted while fresh, from when they were stored."),
		func(s *groupcache.Stats) observe.Histogram { return s.EvictionAge }},
}

func nodeCounter(name, help string, value func(*groupcache.NodeStats) int64) nodeMetric {
	return nodeMetric{prom.NewDesc("groupcache_"+name, help, nil, nil), prom.CounterValue, value}
}

func nodeGauge(name, help string, value func(*groupcache.NodeStats) int64) nodeMetric {
	return nodeMetric{prom.NewDesc("groupcache_"+name, help, nil, nil), prom.GaugeValue, value}
}

// nodeCounters are the counters and gauges of a node's transport.
var nodeCounters = []nodeMetric{
	nodeCounter("server_panics_total", "Panics of the node's caches while serving peers.", func(s *groupcache.NodeStats) int64 { return s.Server.Panics }),
	nodeCounter("server_read_bytes_total", "Bytes of the frames peers sent.", func(s *groupcache.NodeStats) int64 { return s.Server.BytesIn }),
	nodeCounter("server_written_bytes_total", "Bytes of the frames sent to peers in reply.", func(s *groupcache.NodeStats) int64 { return s.Server.BytesOut }),
	nodeGauge("server_connections", "Connections from peers open now.", func(s *groupcache.NodeStats) int64 { return s.Server.ActiveConns }),
	nodeCounter("server_connections_total", "Connections from peers accepted.", func(s *groupcache.NodeStats) int64 { return s.Server.Conns }),
	nodeCounter("server_detached_total", "Peers' requests served on a goroutine of their own.", func(s *groupcache.NodeStats) int64 { return s.Server.Detached }),
	nodeCounter("server_refused_total", "Clients refused before they were served.", func(s *groupcache.NodeStats) int64 { return s.Server.Refused }),
	nodeCounter("client_requests_total", "Requests this node sent to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.Requests }),
	nodeCounter("client_errors_total", "Requests to peers that returned an error, not found included.", func(s *groupcache.NodeStats) int64 { return s.Client.Errors }),
	nodeCounter("client_sent_bytes_total", "Bytes of the frames sent to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.BytesSent }),
	nodeCounter("client_received_bytes_total", "Bytes of the frames peers sent in reply.", func(s *groupcache.NodeStats) int64 { return s.Client.BytesReceived }),
	nodeCounter("client_dials_total", "Connections made to peers.", func(s *groupcache.NodeStats) int64 { return s.Client.Dials }),
	nodeGauge("client_connections", "Connections to peers open now.", func(s *groupcache.NodeStats) int64 { return s.Client.OpenConns }),
	nodeCounter("client_waits_total", "Requests that waited for room on a connection.", func(s *groupcache.NodeStats) int64 { return s.Client.Waits }),
	nodeCounter("client_retries_total", "Requests sent again because their connection broke.", func(s *groupcache.NodeStats) int64 { return s.Client.Retries }),
	nodeCounter("client_shared_writes_total", "Requests written together with others.", func(s *groupcache.NodeStats) int64 { return s.Client.SharedWrites }),
	nodeCounter("misnamed_peers_total", "Connections to peers that named themselves otherwise than this node's peer set.", func(s *groupcache.NodeStats) int64 { return s.Misnamed }),
}

// The node's labelled metrics.
var (
	serveDuration = prom.NewDesc("groupcache_serve_duration_seconds",
		"Latency of the peers' requests for values served here.", nil, nil)
	serverRequests = prom.NewDesc("groupcache_server_requests_total",
		"Requests peers sent to this node, by operation.", []string{"op"}, nil)
	serverReplies = prom.NewDesc("groupcache_server_replies_total",
		"Replies this node sent to peers, by status.", []string{"status"}, nil)
	peerFetchDuration = prom.NewDesc("groupcache_peer_fetch_duration_seconds",
		"Latency of this node's requests to the peer for values, by every cache.", []string{"peer"}, nil)
	peerErrors = prom.NewDesc("groupcache_peer_errors_total",
		"Failed requests to the peer, and keys it answered with an error (not found excluded).", []string{"peer"}, nil)
	peerDown = prom.NewDesc("groupcache_peer_down",
		"1 while the node skips the peer (its keys are loaded locally), else 0.", []string{"peer"}, nil)
	peerDownUntil = prom.NewDesc("groupcache_peer_down_until_timestamp_seconds",
		"When the node's back-off of the peer ends at the latest (Unix time), 0 when it is not skipped.", []string{"peer"}, nil)
	peerRingShare = prom.NewDesc("groupcache_peer_ring_share",
		"Share of the key space (0 to 1) the peer owns on this node's ring; the node itself included.", []string{"peer"}, nil)
)
