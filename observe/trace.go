package observe

import (
	"context"
	"time"
)

// Step is one step of a miss, as a Tracer is told of it.
type Step uint8

// The steps of a miss. A Get that misses is one GetMiss span; inside it, the caller that runs
// the key's single flight has a Fetch (from the key's owner), a Handoff (from its previous
// owner) or a Load span, and a caller that joined another's flight a WaitFlight span. On the
// owner, a peer's request that is not answered from memory is a Serve span, with the Load in
// it.
const (
	// GetMiss is a Get, View or GetMany that did not find its keys in memory, from the miss to
	// the return (Keys: the keys missed).
	GetMiss Step = iota + 1
	// WaitFlight is the wait of a caller that joined a flight another caller had started for
	// its key (Keys: how many of its keys did).
	WaitFlight
	// Fetch is one request to the key's owner (Peer) for values (Keys: the keys asked for).
	Fetch
	// Serve is the answer to a peer's request that was not a hit here: a load, or a wait for
	// one (Keys: the keys asked for). Peer is empty: the request does not name its sender to
	// the cache.
	Serve
	// Load is one call of the loader (Keys: 1 for Load, the batch's keys for LoadMany).
	Load
	// Handoff is one request to a key's previous owner (Peer), after a peer-set change, for
	// values it holds (Keys: the keys asked for).
	Handoff
)

var stepNames = [...]string{"unknown", "get_miss", "wait_flight", "fetch", "serve", "load", "handoff"}

// String returns the step's name in snake case ("get_miss", "fetch", ...).
func (s Step) String() string {
	if int(s) < len(stepNames) {
		return stepNames[s]
	}
	return stepNames[0]
}

// Span is what a Tracer is told of one step when it starts.
type Span struct {
	Step  Step
	Cache string // the cache's name
	Peer  string // Fetch and Handoff: the peer asked; empty otherwise
	Keys  int    // the keys of the step (see each Step); 1 for a single key
	// Start is when the step started; the zero time means now. It is set for WaitFlight,
	// which is known only once the wait is over (the span then starts and ends at once).
	Start time.Time
}

// Tracer follows the steps of misses. Start is called as a step starts; it returns the
// context the step runs with (a tracer puts its span there, so that the spans of the step's
// own work, the loader's included, are its children) and the function to call, once, when the
// step ends, with its error (nil on success; a "not found" is an error here, which a tracer may
// choose not to report as a failure).
//
// A Tracer must be safe for concurrent use and cheap: it runs on every miss. It never runs on
// a hit.
type Tracer interface {
	Start(ctx context.Context, s Span) (context.Context, func(err error))
}

// Propagator is a Tracer whose traces cross nodes: a cache whose tracer is one sends the trace
// context of its Fetch and Handoff spans with the request (Inject: at most 1 KiB, in W3C Trace
// Context text, the traceparent then optionally a line feed and the tracestate), and a node
// serving a request that carries one gives the cache's Serve span that parent (Extract). Caller,
// owner and loader are then one trace. Nodes that do not trace send nothing and ignore what they
// receive.
type Propagator interface {
	Tracer
	// Inject returns the trace context of ctx's span to send to a peer, or nil.
	Inject(ctx context.Context) []byte
	// Extract returns ctx with the remote span of b, a peer's Inject, as the parent of the spans
	// started from it. b is the tracer's to keep.
	Extract(ctx context.Context, b []byte) context.Context
}

// TracerFunc adapts a function to the Tracer interface.
type TracerFunc func(ctx context.Context, s Span) (context.Context, func(err error))

// Start calls f(ctx, s).
func (f TracerFunc) Start(ctx context.Context, s Span) (context.Context, func(err error)) {
	return f(ctx, s)
}
