package otel

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// scope is the instrumentation scope of the spans and metrics.
const scope = "github.com/typedcache/groupcache/observe/otel"

// Attributes of the spans and metrics.
const (
	attrCache    = attribute.Key("groupcache.cache")
	attrPeer     = attribute.Key("groupcache.peer")
	attrKeys     = attribute.Key("groupcache.keys")
	attrNotFound = attribute.Key("groupcache.not_found")
)

// NewTracer returns an observe.Tracer that makes spans with tp's tracer of this package's scope.
// A step that ends with an error records it and sets the span's status to Error, except a "not
// found" (groupcache.ErrNotFound), an answer, which sets groupcache.not_found instead. It is an
// observe.Propagator: requests to peers carry the W3C trace context of their fetch span, so that
// the owner's serve span is its child, and one trace runs from the caller to the owner's loader.
//
// Sample: a miss traced at 1% (sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))) costs
// about 9% more than untraced, one traced in full about 85% more (the SDK recording two spans);
// a span the sampler leaves out costs little beyond the decision. Hits are never traced.
func NewTracer(tp trace.TracerProvider) observe.Tracer {
	return tracer{tp.Tracer(scope)}
}

type tracer struct{ t trace.Tracer }

// traceContext is the W3C Trace Context propagator (traceparent and tracestate).
var traceContext = propagation.TraceContext{}

// Inject returns the W3C traceparent of ctx's span (version 00), and its tracestate after a line
// feed when it has one; nil when ctx has no valid span. It writes what propagation.TraceContext
// would, in one allocation.
func (tracer) Inject(ctx context.Context) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, []byte{byte(sc.TraceFlags() & trace.FlagsSampled)})
	if ts := sc.TraceState(); ts.Len() > 0 {
		b = append(append(b, '\n'), ts.String()...)
	}
	return b
}

// Extract returns ctx with the remote span context that b, a peer's Inject, describes; ctx as it
// is when b is not a valid trace context.
func (tracer) Extract(ctx context.Context, b []byte) context.Context {
	tp, ts, _ := strings.Cut(string(b), "\n")
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": tp, "tracestate": ts})
}

// spanNames are the spans' names by step: "groupcache." and the step's name.
var spanNames = func() (names [observe.Handoff + 1]string) {
	for s := range names {
		names[s] = "groupcache." + observe.Step(s).String()
	}
	return names
}()

// Start starts the span of step s. A span the sampler leaves out costs no attribute and no
// closure: misses of a cache sampled at 1% pay little more than the sampling decision.
func (t tracer) Start(ctx context.Context, s observe.Span) (context.Context, func(error)) {
	name := spanNames[0]
	if int(s.Step) < len(spanNames) {
		name = spanNames[s.Step]
	}
	opts := kindOptions[kind(s.Step)]
	if !s.Start.IsZero() {
		opts = append(opts[:len(opts):len(opts)], trace.WithTimestamp(s.Start))
	}
	var span trace.Span
	ctx, span = t.t.Start(ctx, name, opts...)
	if !span.IsRecording() {
		return ctx, endUnsampled
	}
	span.SetAttributes(attrCache.String(s.Cache), attrKeys.Int(s.Keys))
	if s.Peer != "" {
		span.SetAttributes(attrPeer.String(s.Peer))
	}
	return ctx, func(err error) {
		switch {
		case err == nil:
		case errors.Is(err, groupcache.ErrNotFound):
			span.SetAttributes(attrNotFound.Bool(true))
		default:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// kindOptions are the start options of each span kind, made once: an option is an interface,
// which would cost an allocation per span.
var kindOptions = func() (opts [trace.SpanKindConsumer + 1][]trace.SpanStartOption) {
	for k := range opts {
		opts[k] = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKind(k))}
	}
	return opts
}()

// endUnsampled ends a span the sampler left out: there is nothing to record.
func endUnsampled(error) {}

// kind returns the span kind of a step: a request to a peer is a client span, the answer to one
// a server span.
func kind(s observe.Step) trace.SpanKind {
	switch s {
	case observe.Fetch, observe.Handoff:
		return trace.SpanKindClient
	case observe.Serve:
		return trace.SpanKindServer
	}
	return trace.SpanKindInternal
}
