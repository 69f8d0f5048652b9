// Package peer moves cache values between the nodes of a cluster: the frame format, the Server
// that answers peers and the Client that asks them. Every process is both: it serves the keys it
// owns and asks the owners of the others.
//
// The operations are Get (the value of a key, loaded by its owner if needed), Peek (the value only
// if the peer holds it), GetMany and PeekMany (their forms for several keys of one cache), Set
// (store a value at a peer), Remove (drop keys from a peer's stores) and Clear (drop every entry
// of a cache, adopting a generation number). A Server answers them from its Backend. The package
// knows no user types: keys and values arrive encoded as []byte; a Value is the encoded bytes,
// maybe compressed (Compress, Value.Raw), with an optional expiry.
//
// # Protocol
//
// A client opens a TCP connection with an HTTP/1.1 GET of the server's base path carrying
// "Connection: Upgrade" and "Upgrade: groupcache/2"; the server hijacks it and answers "101
// Switching Protocols". From then on the connection carries frames, each behind an 8-byte prefix
// (its length and a request id); a frame is a version byte, an op or status byte, a flags byte and
// uvarint-length-prefixed fields. Many requests are in flight at once on a connection and the
// server answers them in any order, under their ids. AppendRequest, ParseRequest, AppendResponse
// and ParseResponse encode and decode frames, AppendBatch and ParseBatch the body of a GetMany or
// PeekMany reply; docs/protocol.md in the repository describes the format byte by byte.
//
// # Serving and asking
//
//	srv, err := peer.NewServer(backend, peer.WithMaxConcurrent(1024))
//	mux.Handle(srv.BasePath(), srv) // "/_groupcache/" by default
//	defer srv.Close() // ends upgraded connections, which http.Server.Shutdown does not track
//
//	c, err := peer.NewClient()
//	defer c.Close()
//	v, err := c.Get(ctx, "10.0.0.7:8080", "profiles", key)
//	raw, err := v.Raw(maxValueBytes) // inflate if compressed, within the limit
//
// Get reads each value into new memory of its own; GetInto reads it into a buffer the caller
// lends. A GetMany or PeekMany reply is read into one buffer that the Results' values share; an
// entry the peer could not fit in its reply frame comes back with StatusOverloaded: ask again.
//
// # Limits
//
// Limits bound key, value, cache name and frame lengths on both sides, and the keys of a batch. A
// frame's length prefix is checked before any memory is allocated for it, memory for a long frame
// is committed only as its bytes arrive, and a compressed value's decoded length (stated in its S2
// header) is checked before it is inflated.
//
// # Errors
//
// Every error is an *Error (peer address, op, status, message, cause). StatusOf reads its Status:
// what the peer answered (StatusNotFound, StatusUnknownCache, StatusTooLarge, StatusOverloaded,
// StatusInternal, StatusBadRequest, StatusBadVersion), or the same condition found on this side (a
// request or reply over this side's limits). Failures of the exchange itself have no status and
// match a sentinel with errors.Is: ErrProtocol for malformed bytes from a peer, ErrUnavailable for
// a network failure, a timeout, a cancelled context (the error then also matches ctx.Err()) or a
// closed Client. A caller that cannot get a value from its owner for a reason other than
// StatusNotFound may load it itself.
package peer
