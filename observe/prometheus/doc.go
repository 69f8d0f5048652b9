// Package prometheus exports the metrics of a groupcache node and its caches to Prometheus.
//
// A Collector reads Node.Stats (and Cache.Stats for caches that work alone) when Prometheus
// scrapes it: nothing runs on the caches' paths, and the core module keeps its dependencies.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(gcprom.New(node))
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Names follow Prometheus's conventions: every name starts with groupcache_, counters end in
// _total, sizes are in bytes (_bytes) and durations in seconds (_seconds). A cache's metrics carry
// its name in the label cache; a peer's, its address in the label peer. Latencies and ages are
// histograms with the buckets of package observe (2^i µs, from 1 µs to about 6.4 days), the same
// in every process, so that a cluster's histograms add up (sum by (le)).
package prometheus
