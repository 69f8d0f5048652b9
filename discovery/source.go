// Package discovery feeds a node's peer set from a source that knows the cluster: a static list,
// DNS, or (in their own modules under this directory) memberlist gossip, etcd and Kubernetes.
//
// A Source reports peer sets; Run applies them to the node through its push API (SetPeers), after
// checking them: addresses are validated and deduplicated, the node itself is always included, an
// empty or failed report never empties the ring (the last good set stays), bursts of changes are
// debounced, and every change and rejection is logged.
//
// A process typically runs, next to its node:
//
//	src := discovery.DNS("cache-peers.default.svc.cluster.local", 8080)
//	go discovery.Run(ctx, node, src)
//
// NewRunner makes the same runner with counters (Runner.Stats) for metrics.
//
// The sources of this package are Static (a fixed list), DNS (the A and AAAA records of a name,
// all nodes on one port) and SRV (SRV records, target:port); both DNS sources poll. A Source of
// one's own only has to follow the Watch contract below: send full sets, select on ctx.Done()
// when sending, return when ctx ends; Run does the checking, debouncing and restarting.
//
// The package has no errors of its own: invalid arguments and options make NewRunner, Run and
// the DNS sources return errors wrapping groupcache.ErrInvalidOption.
package discovery

import (
	"context"
)

// Update is one report of a Source: the full peer set ("host:port" addresses), or an error.
type Update struct {
	// Peers is the complete current peer set. It replaces the previous one.
	Peers []string
	// Err reports a failed lookup. Peers is then ignored and the last good set stays.
	Err error
}

// Source reports the peer set of a cluster over time.
type Source interface {
	// Watch sends the current peer set as soon as it is known, then the full set again after
	// each change, until ctx ends; then it returns ctx.Err(). Transient failures are sent as
	// Updates with Err set and Watch keeps going; an error returned before ctx ends means the
	// source failed for good (Run starts it again after a back-off). Watch must not block on a
	// send once ctx has ended (select on ctx.Done()), and must stop every goroutine it started
	// before it returns.
	Watch(ctx context.Context, updates chan<- Update) error
}

// SourceFunc adapts a function to the Source interface.
type SourceFunc func(ctx context.Context, updates chan<- Update) error

// Watch calls f(ctx, updates).
func (f SourceFunc) Watch(ctx context.Context, updates chan<- Update) error { return f(ctx, updates) }

// Node is what Run needs of a node: groupcache.Node implements it.
type Node interface {
	// Self returns the node's own address, which every peer set it gets must contain.
	Self() string
	// SetPeers replaces the node's peer set.
	SetPeers(peers ...string) error
}
