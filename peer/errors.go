package peer

import (
	"errors"
	"fmt"
	"strings"
)

// Op is the operation byte of a request frame.
type Op uint8

// Operations. Every request frame carries one; docs/protocol.md describes the fields of each.
const (
	// OpGet asks the owner of a key for its value, which the owner loads if it must.
	OpGet Op = 0x01
	// OpRemove drops one or more keys of a cache from the peer's stores (main and hot). An
	// absent key is not an error.
	OpRemove Op = 0x02
	// OpSet stores a value at the peer.
	OpSet Op = 0x03
	// OpGetMany asks for the values of several keys of one cache; the reply carries one entry
	// (a value or a status) per key, in request order.
	OpGetMany Op = 0x04
	// OpPeek asks a peer for the value of a key only if it holds it; it never loads. Its request
	// and response frames are those of OpGet.
	OpPeek Op = 0x05
	// OpClear drops every entry of a cache at the peer, which adopts a generation number.
	OpClear Op = 0x06
	// OpPeekMany is the batch form of OpPeek: the values of several keys of one cache that the
	// peer holds, never loading (an entry it does not hold is StatusNotFound). Its request and
	// response frames are those of OpGetMany.
	OpPeekMany Op = 0x07

	maxOp = OpPeekMany
)

// String returns the lower-case name of the operation, or "op(N)" for an unknown one.
func (o Op) String() string {
	switch o {
	case OpGet:
		return "get"
	case OpRemove:
		return "remove"
	case OpSet:
		return "set"
	case OpGetMany:
		return "getmany"
	case OpPeek:
		return "peek"
	case OpClear:
		return "clear"
	case OpPeekMany:
		return "peekmany"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Status is the status byte of a response frame.
type Status uint8

// Statuses. A response with any status other than StatusOK carries no value, only a message.
const (
	// StatusOK: the response carries the value.
	StatusOK Status = 0
	// StatusNotFound: the key does not exist (the owner's loader said so). Matches ErrNotFound.
	StatusNotFound Status = 1
	// StatusUnknownCache: the owner has no cache of that name. Matches ErrUnknownCache.
	StatusUnknownCache Status = 2
	// StatusTooLarge: the value exceeds the owner's limits. Matches ErrTooLarge.
	StatusTooLarge Status = 3
	// StatusOverloaded: the owner serves as many requests as it allows. Matches ErrOverloaded.
	StatusOverloaded Status = 4
	// StatusInternal: the owner failed to produce the value; the message says why. Matches
	// ErrInternal.
	StatusInternal Status = 5
	// StatusBadRequest: the request frame was malformed or over the owner's limits. Matches
	// ErrBadRequest.
	StatusBadRequest Status = 6
	// StatusBadVersion: the request frame's version is not one the owner speaks. Matches ErrVersion.
	StatusBadVersion Status = 7

	maxStatus = StatusBadVersion
)

var statusNames = [...]string{
	StatusOK:           "ok",
	StatusNotFound:     "not found",
	StatusUnknownCache: "unknown cache",
	StatusTooLarge:     "too large",
	StatusOverloaded:   "overloaded",
	StatusInternal:     "internal error",
	StatusBadRequest:   "bad request",
	StatusBadVersion:   "unsupported version",
}

// String returns the lower-case name of the status, or "status(N)" for an unknown one.
func (s Status) String() string {
	if s <= maxStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Sentinel errors, matched with errors.Is. Every error returned by this package is an *Error that
// matches exactly the sentinels that describe it.
var (
	// ErrNotFound: the owner says the key does not exist (StatusNotFound).
	ErrNotFound = errors.New("peer: not found")
	// ErrUnknownCache: the owner has no cache of that name (StatusUnknownCache).
	ErrUnknownCache = errors.New("peer: unknown cache")
	// ErrTooLarge: a value, key or frame is over a limit, on either side (StatusTooLarge), or a
	// compressed value would inflate past the caller's limit.
	ErrTooLarge = errors.New("peer: too large")
	// ErrOverloaded: the owner refused the request because it serves its maximum number of
	// concurrent requests (StatusOverloaded).
	ErrOverloaded = errors.New("peer: overloaded")
	// ErrInternal: the owner failed to produce the value (StatusInternal).
	ErrInternal = errors.New("peer: internal error")
	// ErrBadRequest: a request was malformed or over a limit: refused by the owner
	// (StatusBadRequest), or by this side before it was sent.
	ErrBadRequest = errors.New("peer: bad request")
	// ErrVersion: the two sides speak different frame versions (StatusBadVersion from the owner,
	// or a reply of a version this side does not know).
	ErrVersion = errors.New("peer: unsupported version")
	// ErrProtocol: a peer sent malformed or unexpected bytes (bad handshake, bad frame).
	ErrProtocol = errors.New("peer: protocol error")
	// ErrClosed: the Client or Server was closed.
	ErrClosed = errors.New("peer: closed")
	// ErrInvalidOption: NewServer or NewClient was given an invalid option or argument.
	ErrInvalidOption = errors.New("peer: invalid option")
	// ErrUnavailable: a network-level failure: could not connect, the connection broke, the
	// request timed out or the caller's context ended. The owner may be down or slow; the caller
	// may fall back (for example load the value itself).
	ErrUnavailable = errors.New("peer: unavailable")
)

var statusErrs = [...]error{
	StatusOK:           nil,
	StatusNotFound:     ErrNotFound,
	StatusUnknownCache: ErrUnknownCache,
	StatusTooLarge:     ErrTooLarge,
	StatusOverloaded:   ErrOverloaded,
	StatusInternal:     ErrInternal,
	StatusBadRequest:   ErrBadRequest,
	StatusBadVersion:   ErrVersion,
}

// sentinel returns the sentinel error of a status, nil for StatusOK or an unknown status.
func (s Status) sentinel() error {
	if s <= maxStatus {
		return statusErrs[s]
	}
	return nil
}

// Error is the error type of this package.
//
// Status is the non-OK status a peer replied with, or the status a server replies with for an
// error of ParseRequest; it is StatusOK for errors detected on this side, where Err says what
// happened. Is matches the sentinel of Status; Unwrap returns Err, which matches one of the
// sentinels (and, for network failures, also wraps the cause: a net.Error, context.Canceled,
// context.DeadlineExceeded).
type Error struct {
	// Peer is the peer's address ("host:port"), empty when no peer was involved.
	Peer string
	// Op is the operation, zero when unknown.
	Op Op
	// Status is the status from the wire; see the type's documentation.
	Status Status
	// Msg is the peer's message or a description of the problem; may be empty.
	Msg string
	// Err is the underlying error; may be nil when Status says it all.
	Err error
}

// Error formats the error as "peer: [PEER: ][OP: ][STATUS][: MSG][: ERR]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("peer: ")
	if e.Peer != "" {
		b.WriteString(e.Peer)
		b.WriteString(": ")
	}
	if e.Op != 0 {
		b.WriteString(e.Op.String())
		b.WriteString(": ")
	}
	sep := ""
	if e.Status != StatusOK {
		b.WriteString(e.Status.String())
		sep = ": "
	}
	if e.Msg != "" {
		b.WriteString(sep)
		b.WriteString(e.Msg)
		sep = ": "
	}
	if e.Err != nil {
		b.WriteString(sep)
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "peer: "))
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e.Status (ErrNotFound for StatusNotFound, and so
// on). errors.Is also looks at Err through Unwrap.
func (e *Error) Is(target error) bool {
	s := e.Status.sentinel()
	return s != nil && s == target
}

// statusOf maps a Backend error to the status a server replies with: the status of the sentinel
// the error matches among ErrNotFound, ErrUnknownCache, ErrTooLarge, ErrOverloaded and
// ErrBadRequest; StatusInternal for anything else.
func statusOf(err error) Status {
	switch {
	case errors.Is(err, ErrNotFound):
		return StatusNotFound
	case errors.Is(err, ErrUnknownCache):
		return StatusUnknownCache
	case errors.Is(err, ErrTooLarge):
		return StatusTooLarge
	case errors.Is(err, ErrOverloaded):
		return StatusOverloaded
	case errors.Is(err, ErrBadRequest):
		return StatusBadRequest
	}
	return StatusInternal
}

// wrapCause returns an error that matches both sentinel and cause.
func wrapCause(sentinel, cause error) error {
	if cause == nil {
		return sentinel
	}
	return &causeError{sentinel: sentinel, cause: cause}
}

type causeError struct {
	sentinel error
	cause    error
}

func (e *causeError) Error() string {
	return e.sentinel.Error() + ": " + strings.TrimPrefix(e.cause.Error(), "peer: ")
}

func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// Timeout reports whether the cause is a timeout, so callers that check net.Error-style
// Timeout() see through the wrapping.
func (e *causeError) Timeout() bool {
	t, ok := e.cause.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
