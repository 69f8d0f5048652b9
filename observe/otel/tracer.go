package otel

import (
	"context"
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
func NewTracer(tp trace.TracerProvider) observe.Tracer {
	return tracer{tp.Tracer(scope)}
}

type tracer struct{ t trace.Tracer }

// traceContext is the W3C Trace Context propagator (traceparent and tracestate).
var traceContext = propagation.TraceContext{}

// Inject returns the traceparent of ctx's span, and its tracestate after a line feed when it has
// one; nil when ctx has no valid span.
func (tracer) Inject(ctx context.Context) []byte {
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	tp, ts := c.Get("traceparent"), c.Get("tracestate")
	switch {
	case tp == "":
		return nil
	case ts == "":
		return []byte(tp)
	}
	return []byte(tp + "\n" + ts)
}

// Extract returns ctx with the remote span context that b, a peer's Inject, describes; ctx as it
// is when b is not a valid trace context.
func (tracer) Extract(ctx context.Context, b []byte) context.Context {
	tp, ts, _ := strings.Cut(string(b), "\n")
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": tp, "tracestate": ts})
}

// Start starts the span of step s.
func (t tracer) Start(ctx context.Context, s observe.Span) (context.Context, func(error)) {
	attrs := []attribute.KeyValue{attrCache.String(s.Cache), attrKeys.Int(s.Keys)}
	if s.Peer != "" {
		attrs = append(attrs, attrPeer.String(s.Peer))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(kind(s.Step)), trace.WithAttributes(attrs...)}
	if !s.Start.IsZero() {
		opts = append(opts, trace.WithTimestamp(s.Start))
	}
	ctx, span := t.t.Start(ctx, "groupcache."+s.Step.String(), opts...)
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
