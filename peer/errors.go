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
	// StatusNotFound: the key does not exist (the owner's loader said so).
	StatusNotFound Status = 1
	// StatusUnknownCache: the owner has no cache of that name.
	StatusUnknownCache Status = 2
	// StatusTooLarge: the value exceeds the owner's limits.
	StatusTooLarge Status = 3
	// StatusOverloaded: the owner serves as many requests as it allows.
	StatusOverloaded Status = 4
	// StatusInternal: the owner failed to produce the value; the message says why.
	StatusInternal Status = 5
	// StatusBadRequest: the request frame was malformed or over the owner's limits.
	StatusBadRequest Status = 6
	// StatusBadVersion: the request frame's version is not one the owner speaks.
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

// Sentinel errors, matched with errors.Is. They name failures of the exchange itself; what a peer
// answered (or the same condition found on this side) is an *Error's Status, read with StatusOf.
var (
	// ErrProtocol: a peer sent malformed or unexpected bytes (bad handshake, bad frame).
	ErrProtocol = errors.New("peer: protocol error")
	// ErrInvalidOption: NewServer or NewClient was given an invalid option or argument.
	ErrInvalidOption = errors.New("peer: invalid option")
	// ErrUnavailable: a network-level failure: could not connect, the connection broke, the
	// request timed out, the caller's context ended, or the Client was closed. The owner may be
	// down or slow; the caller may fall back (for example load the value itself).
	ErrUnavailable = errors.New("peer: unavailable")
)

// StatusOf returns the Status of the first *Error in err's chain that has one: what the peer
// answered, or the same condition found on this side (see Error). It returns StatusOK for nil and
// for errors without a status (ErrUnavailable, ErrProtocol, errors of other packages).
func StatusOf(err error) Status {
	switch e := err.(type) {
	case nil:
		return StatusOK
	case *Error:
		if e.Status != StatusOK {
			return e.Status
		}
		return StatusOf(e.Err)
	case interface{ Unwrap() error }:
		return StatusOf(e.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range e.Unwrap() {
			if st := StatusOf(e); st != StatusOK {
				return st
			}
		}
	}
	return StatusOK
}

// Error is the error type of this package.
//
// Status is what the peer answered, or the same condition found on this side: a request over
// this side's limits is StatusBadRequest (StatusTooLarge for a Set value), a reply value over them
// StatusTooLarge, a reply of another version StatusBadVersion, and ParseRequest's errors carry the
// status a server replies with. It is StatusOK for failures of the exchange itself, where Err
// matches ErrUnavailable (and wraps the cause: a net.Error, context.Canceled,
// context.DeadlineExceeded, net.ErrClosed) or ErrProtocol. Unwrap returns Err.
type Error struct {
	// Peer is the peer's address ("host:port"), empty when no peer was involved.
	Peer string
	// Op is the operation, zero when unknown.
	Op Op
	// Status is the peer's answer or this side's equivalent; see the type's documentation.
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

// statusOf maps a Backend error to the status a server replies with: the Status of an *Error in
// its chain (but StatusBadVersion, which describes a frame), StatusInternal for anything else.
func statusOf(err error) Status {
	if st := StatusOf(err); st != StatusOK && st != StatusBadVersion {
		return st
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
