package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Op is the operation byte of a request frame; docs/protocol.md describes the fields of each.
type Op uint8

// Operations.
const (
	// OpGet asks the owner of a key for its value, which the owner loads if it must.
	OpGet Op = 0x01
	// OpRemove drops keys of a cache from the peer's stores; an absent key is not an error.
	OpRemove Op = 0x02
	// OpSet stores a value at the peer.
	OpSet Op = 0x03
	// OpGetMany asks for the values of several keys of one cache: one entry (a value or a
	// status) per key, in request order.
	OpGetMany Op = 0x04
	// OpPeek asks for the value of a key only if the peer holds it; it never loads.
	OpPeek Op = 0x05
	// OpClear drops every entry of a cache at the peer, which adopts a generation number.
	OpClear Op = 0x06
	// OpPeekMany is the batch form of OpPeek (an entry the peer does not hold is StatusNotFound).
	OpPeekMany Op = 0x07
	// OpOffer hands a value over to the peer that owns its key, or will once the sender is gone:
	// a Set that the peer may decline (docs/protocol.md), answered StatusOK either way.
	OpOffer Op = 0x08

	MaxOp = OpOffer
)

var opNames = [...]string{OpGet: "get", OpRemove: "remove", OpSet: "set", OpGetMany: "getmany",
	OpPeek: "peek", OpClear: "clear", OpPeekMany: "peekmany", OpOffer: "offer"}

// carriesValue reports whether the request frame of the op carries a value (and its flags).
func (o Op) carriesValue() bool { return o == OpSet || o == OpOffer }

// String returns the lower-case name of the operation, or "op(N)" for an unknown one.
func (o Op) String() string {
	if o != 0 && o <= MaxOp {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// IsWrite reports whether o changes a cache (Set, Offer, Remove, Clear), for an authorizer.
func (o Op) IsWrite() bool { return o.carriesValue() || o == OpRemove || o == OpClear }

// Status is the status byte of a response frame. A response with any status other than StatusOK
// carries no value, only a message.
type Status uint8

// Statuses.
const (
	StatusOK           Status = 0 // the response carries the value
	StatusNotFound     Status = 1 // the key does not exist (the owner's loader said so)
	StatusUnknownCache Status = 2 // the owner has no cache of that name
	StatusTooLarge     Status = 3 // the value exceeds the owner's limits
	StatusOverloaded   Status = 4 // the owner serves as many requests as it allows
	StatusInternal     Status = 5 // the owner failed to produce the value; the message says why
	StatusBadRequest   Status = 6 // the request was malformed or over the owner's limits
	StatusBadVersion   Status = 7 // the request frame's version is not the owner's
	StatusForbidden    Status = 8 // the peer may not do this: not authenticated, or not authorized
	StatusLeaving      Status = 9 // the peer is shutting down: it takes no new request (docs/protocol.md)

	MaxStatus = StatusLeaving
)

var statusNames = [...]string{StatusOK: "ok", StatusNotFound: "not found", StatusUnknownCache: "unknown cache",
	StatusTooLarge: "too large", StatusOverloaded: "overloaded", StatusInternal: "internal error",
	StatusBadRequest: "bad request", StatusBadVersion: "unsupported version", StatusForbidden: "forbidden",
	StatusLeaving: "leaving"}

// String returns the lower-case name of the status, or "status(N)" for an unknown one.
func (s Status) String() string {
	if s <= MaxStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Sentinel errors, matched with errors.Is. They name failures of the exchange itself; what a peer
// answered (or the same condition found on this side) is an *Error's Status, read with StatusOf.
// Package peer exports them (peer.errProtocol, ...); here they are unexported, so that each has
// one exported name.
var (
	// errProtocol: a peer sent malformed or unexpected bytes (bad handshake, bad frame).
	errProtocol = errors.New("peer: protocol error")
	// errInvalidOption: peer.NewServer or peer.NewClient was given an invalid option or argument.
	errInvalidOption = errors.New("peer: invalid option")
	// errUnavailable: a network-level failure: could not connect, the connection broke, the
	// request timed out, the caller's context ended, or the peer.Client was closed. The owner may
	// be down or slow; the caller may fall back (for example load the value itself).
	errUnavailable = errors.New("peer: unavailable")
)

// Sentinels are the sentinel errors for package peer to export, the one place they are named
// outside this package.
var Sentinels = struct{ Protocol, Unavailable, InvalidOption error }{errProtocol, errUnavailable, errInvalidOption}

// StatusOf returns the Status of the first *Error in err's chain that has one (see Error), or
// StatusOK: for nil, errUnavailable, errProtocol and errors of other packages.
func StatusOf(err error) Status {
	switch e := err.(type) {
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

// Error is the error type of package peer (and of this one). Status is what the peer answered, or
// the same condition found on this side (a request or reply over this side's limits, a reply of
// another version); it is StatusOK for failures of the exchange itself, where Err matches
// errUnavailable (and wraps the cause: a net.Error, a context's error, net.ErrClosed) or
// errProtocol.
type Error struct {
	Peer   string // the peer's address ("host:port"); empty when no peer was involved
	Op     Op     // the operation; zero when unknown
	Status Status // the peer's answer or this side's equivalent
	Msg    string // the peer's message or a description of the problem; may be empty
	Err    error  // the underlying error; may be nil
}

// Error formats the error as "peer: [PEER: ][OP: ][STATUS][: MSG][: ERR]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("peer: ")
	if e.Peer != "" {
		b.WriteString(e.Peer + ": ")
	}
	if e.Op != 0 {
		b.WriteString(e.Op.String() + ": ")
	}
	d := e.detail()
	if e.Status != StatusOK {
		b.WriteString(e.Status.String())
		if d != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(d)
	return b.String()
}

// detail returns the message and the cause of e, without the peer, op and status.
func (e *Error) detail() string {
	switch {
	case e.Err == nil:
		return e.Msg
	case e.Msg == "":
		return strings.TrimPrefix(e.Err.Error(), "peer: ")
	}
	return e.Msg + ": " + strings.TrimPrefix(e.Err.Error(), "peer: ")
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

// WrapCause returns an error that matches both sentinel and cause.
func WrapCause(sentinel, cause error) error {
	if cause == nil {
		return sentinel
	}
	return &causeError{sentinel: sentinel, cause: cause}
}

type causeError struct{ sentinel, cause error }

func (e *causeError) Error() string {
	return e.sentinel.Error() + ": " + strings.TrimPrefix(e.cause.Error(), "peer: ")
}

func (e *causeError) Unwrap() []error { return []error{e.sentinel, e.cause} }
