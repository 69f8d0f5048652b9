package groupcache

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNotFound is how a Loader says that a key does not exist. A loader may return it wrapped
	// (fmt.Errorf("user %d: %w", id, groupcache.ErrNotFound)); Get passes the loader's error through
	// unchanged, so errors.Is(err, ErrNotFound) holds for the caller.
	ErrNotFound = errors.New("groupcache: not found")

	// ErrClosed is returned by every call on a cache after Close.
	ErrClosed = errors.New("groupcache: cache closed")

	// ErrTooLarge matches a *TooLargeError: a value whose cost exceeds the per-value limit.
	ErrTooLarge = errors.New("groupcache: value too large")

	// ErrInvalidKey is returned by Get for a key that cannot be encoded by the key codec or whose
	// encoding is longer than the key length limit (WithMaxKeyBytes).
	ErrInvalidKey = errors.New("groupcache: invalid key")

	// ErrNoKeyCodec is returned by New when K has no built-in key codec (only string and integer
	// kinds have one) and no WithKeyCodec option was given.
	ErrNoKeyCodec = errors.New("groupcache: no key codec for key type")

	// ErrInvalidOption is returned by New when an option has an invalid value or does not fit the
	// cache's key or value type.
	ErrInvalidOption = errors.New("groupcache: invalid option")

	// ErrIncomplete matches the error of a Set, Remove, RemoveMany or Clear that did what it must
	// on the key's owner (or here) but could not tell every other peer: those peers may serve a
	// copy of the old value until it expires (at most the hot TTL, WithHotTTL). The error says
	// which peers, and why.
	ErrIncomplete = errors.New("groupcache: not every peer was told")

	// ErrLoadTimeout is returned by Get when a load ran longer than the load timeout
	// (WithLoadTimeout). It also matches context.DeadlineExceeded.
	ErrLoadTimeout error = loadTimeoutError{}
)

type loadTimeoutError struct{}

func (loadTimeoutError) Error() string        { return "groupcache: load timed out" }
func (loadTimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, so the error also satisfies the net.Error-style Timeout check.
func (loadTimeoutError) Timeout() bool { return true }

// PanicError is returned to every caller waiting for a load when the loader, the value codec or
// the sizer panicked. The process keeps running; the value is not cached.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine, as printed by runtime/debug.Stack.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("groupcache: load panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error, so errors.Is and errors.As see through it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// TooLargeError reports a value whose cost (encoded size, or the sizer's answer, plus the encoded
// key) exceeds the per-value limit. It matches ErrTooLarge.
type TooLargeError struct {
	// Cache is the name of the cache.
	Cache string
	// Size is the cost of the value in bytes.
	Size int64
	// Limit is the per-value limit in bytes.
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("groupcache: cache %q: value of %d bytes exceeds the limit of %d bytes", e.Cache, e.Size, e.Limit)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }
