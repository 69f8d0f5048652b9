package main

import (
	"context"

	"go.opentelemetry.io/otel/sdk/trace"

	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/observe/otel"
)

// newTracer returns the tracer of the "ourstraced" systems, as a service would run it: the
// OpenTelemetry SDK, 1% of the traces sampled (parent-based) or, with all, every one, the spans
// handed to a batching processor whose exporter here drops them instead of sending them; and a
// function that shuts it down.
func newTracer(all bool) (observe.Tracer, func()) {
	sampler := trace.ParentBased(trace.TraceIDRatioBased(0.01))
	if all {
		sampler = trace.AlwaysSample()
	}
	tp := trace.NewTracerProvider(trace.WithBatcher(discard{}), trace.WithSampler(sampler))
	return otel.NewTracer(tp), func() { _ = tp.Shutdown(context.Background()) }
}

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []trace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                          { return nil }
