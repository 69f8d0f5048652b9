// Package otel exports groupcache's traces and metrics to OpenTelemetry.
//
// Traces: NewTracer makes an observe.Tracer, for groupcache.WithTracer, that starts an
// OpenTelemetry span for each step of a miss (groupcache.get_miss, groupcache.wait_flight,
// groupcache.fetch, groupcache.serve, groupcache.load, groupcache.handoff), nested as the steps
// are: the loader's own spans are children of groupcache.load. The spans of a node and those of
// the peer it asks are separate traces: the peer protocol does not carry the trace context yet.
//
//	tr := gcotel.NewTracer(otel.GetTracerProvider())
//	users, err := groupcache.New[string, User]("users", loader, groupcache.WithTracer(tr), ...)
//
// Metrics: RegisterMetrics registers observable instruments that read Node.Stats (and the
// Stats of caches that work alone) at each collection; nothing runs on the caches' paths. The
// OpenTelemetry API has no observable histogram, so the latency and age histograms come from a
// Producer of the SDK (Histograms), which a reader takes with sdkmetric.WithProducer:
//
//	reader := sdkmetric.NewPeriodicReader(exporter, sdkmetric.WithProducer(gcotel.Histograms(node)))
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
//	reg, err := gcotel.RegisterMetrics(mp.Meter("groupcache"), node)
//
// Names are those of the Prometheus module with dots ("groupcache.gets", a counter of unit
// {lookup}); a cache's metrics carry the attribute groupcache.cache, a peer's groupcache.peer.
package otel
