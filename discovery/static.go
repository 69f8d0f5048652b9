package discovery

import (
	"context"
	"slices"
	"strconv"
)

// Static returns a Source that reports peers once and then waits for its context to end. The
// slice is copied. Run checks the addresses like any others: with no valid address the node keeps
// its peer set.
func Static(peers ...string) Source {
	return staticSource(slices.Clone(peers))
}

type staticSource []string

// Watch sends the peer set, then waits for ctx to end and returns ctx.Err().
func (s staticSource) Watch(ctx context.Context, updates chan<- Update) error {
	select {
	case updates <- Update{Peers: slices.Clone([]string(s))}:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}

// String describes the source for logs.
func (s staticSource) String() string { return "static(" + strconv.Itoa(len(s)) + " peers)" }
