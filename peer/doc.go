// Package peer moves cache values between the nodes of a cluster: the Server that answers peers
// from a Backend (an http.Handler) and the Client that asks them, over connections it
// authenticates and bounds. The
// operations are Get, Peek (the value only if the peer holds it), GetMany and PeekMany, Set,
// Remove and Clear. Keys and values travel encoded as []byte; a Value may be compressed (Compress,
// Value.Raw). A connection is an HTTP/1.1 request upgraded to "groupcache/2", after which it
// carries frames, each with a request id, answered in any order: docs/protocol.md in the
// repository describes them byte by byte. The frames are encoded and parsed by an internal
// package; this one names their vocabulary (Value, Result, Limits, Op, Status, Error) as aliases.
//
// Limits bound what each side accepts, checked before memory is committed. Every error is an
// *Error: StatusOf reads what the peer answered (or the same condition found on this side), and
// failures of the exchange itself match ErrProtocol or ErrUnavailable, after which a caller may
// load the value itself.
package peer
