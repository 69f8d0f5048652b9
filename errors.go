package groupcache

import (
	"context"
	"errors"
	"fmt"
)

// The errors a caller of this package can get are classified by these sentinels, matched with
// errors.Is, and by *PanicError, matched with errors.As. A loader's own error reaches the caller
// unchanged, and so does the caller's own ctx.Err(); every other error matches one of these.
var (
	// ErrNotFound is how a Loader says that a key does not exist. A loader may return it wrapped
	// (fmt.Errorf("user %d: %w", id, groupcache.ErrNotFound)); Get passes the loader's error through
	// unchanged, so errors.Is(err, ErrNotFound) holds for the caller. A key's owner answering "not
	// found" matches it too.
	ErrNotFound = errors.New("groupcache: not found")

	// ErrInvalidKey matches the error for a key that the key codec cannot encode (or that a peer
	// sent and it cannot decode), or whose encoding is longer than the key length limit
	// (WithMaxKeyBytes).
	ErrInvalidKey = errors.New("groupcache: invalid key")

	// ErrTooLarge matches the error of Set for a value whose cost exceeds the per-value limit
	// (WithMaxValueBytes); nothing is stored. A loaded value over the limit is not an error: Get
	// returns it without caching it (see Stats.TooLarge).
	ErrTooLarge = errors.New("groupcache: value too large")

	// ErrCodec matches the error for a value the value codec cannot encode, or a peer's value it
	// cannot decode (two nodes with different codecs or value types under one cache name). It is
	// a bug or a misconfiguration: retrying does not help. errors.As reaches the *codec.Error.
	ErrCodec = errors.New("groupcache: codec failed")

	// ErrLoadTimeout matches the error of a load that ran longer than the load timeout
	// (WithLoadTimeout). It also matches context.DeadlineExceeded.
	ErrLoadTimeout error = loadTimeoutError{}

	// ErrUnavailable matches the error for a peer that could not do its part: unreachable, timed
	// out, overloaded, without the cache, or whose own load failed (its message is kept). Retry
	// later. Get and GetMany load a key locally instead when its owner is unreachable, so they
	// return it only when that was not possible.
	ErrUnavailable = errors.New("groupcache: peer unavailable")

	// ErrIncomplete matches the error of a Set, Remove, RemoveMany or Clear that did what it must
	// on the key's owner (or here) but could not tell every other peer: those peers may serve a
	// copy of the old value until it expires (a hot copy the hot TTL, an entry in a main store the
	// TTL: docs/reliability.md, "Freshness under faults"). The error says
	// which peers, and why.
	ErrIncomplete = errors.New("groupcache: not every peer was told")

	// ErrInvalidOption matches the error of New, NewNode or SetPeers for an invalid or misplaced
	// option or argument: a value out of range, a codec of another type, a node-only option on a
	// cache without a node, a key type without a key codec, a peer set without the node itself.
	ErrInvalidOption = errors.New("groupcache: invalid option")

	// ErrClosed is returned by every call on a closed cache or node.
	ErrClosed = errors.New("groupcache: closed")
)

type loadTimeoutError struct{}

func (loadTimeoutError) Error() string        { return "groupcache: load timed out" }
func (loadTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, so the error also satisfies the net.Error-style Timeout check.
func (loadTimeoutError) Timeout() bool { return true }

// PanicError is returned to every caller waiting for a load when user code panicked: the loader,
// the batch loader, the value or key codec, the sizer or the promoter. The process keeps running;
// nothing is cached. The panic is also logged with its stack.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine, as printed by runtime/debug.Stack.
	Stack []byte

	in string // what panicked: "loader", "codec", ...
}

// Error returns one line naming what panicked and the panic value; the stack is in Stack.
func (e *PanicError) Error() string {
	in := e.in
	if in == "" {
		in = "load"
	}
	return fmt.Sprintf("groupcache: panic in %s: %v", in, e.Value)
}

// Unwrap returns the panic value when it is an error, so errors.Is and errors.As see through it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// codecError returns err, a failure of the value codec, as an error matching ErrCodec.
func codecError(cache string, err error) error {
	if _, ok := errors.AsType[*PanicError](err); ok {
		return err
	}
	return fmt.Errorf("%w: cache %q: %w", ErrCodec, cache, err)
}
