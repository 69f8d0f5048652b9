// Package observe holds what a groupcache node records for its operators, and the one interface
// through which other modules follow a miss.
//
// The core records and other modules export: the root package keeps counters and latency
// histograms (Histogram, recorded with a Recorder: one atomic add per observation, no
// allocation) in its Stats and NodeStats, and tells a Tracer (WithTracer) of each step of a
// miss. The Prometheus and OpenTelemetry modules read the first and implement the second; this
// package needs nothing but the standard library, so a program that installs neither pays for
// nothing but the counters.
//
// Histograms have fixed buckets, the same in every process (Bound), so that the histograms of
// the nodes of a cluster add up (Histogram.Merge) and exporters can turn them into their own
// formats without guessing.
package observe
