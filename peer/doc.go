// Package peer moves cache values between the nodes of a cluster: the frame format, the Server
// that answers peers and the pooled Client that asks them. Every process is both: it serves the
// keys it owns and asks the owners of the others.
//
// The operations are Get (the value of a key, loaded by its owner if needed), Peek (the value only
// if the peer holds it), GetMany (the values of several keys of one cache in one exchange),
// PeekMany (the batch form of Peek), Set (store a value at a peer), Remove (drop keys from a
// peer's stores) and Clear (drop every entry of a cache, adopting a generation number). A Server
// answers Get from its Backend, and the others when its Backend also implements PeekBackend,
// BatchBackend, BatchPeekBackend or WriteBackend.
//
// The package knows no user types. Keys and values arrive already encoded as []byte; a Value is
// the encoded bytes, maybe compressed (Compress, Value.Raw), with an optional expiry.
//
// # Protocol
//
// A client opens a TCP connection with an HTTP/1.1 request to the server's base path carrying
// "Connection: Upgrade" and "Upgrade: groupcache/2, groupcache/1". The server hijacks the
// connection, answers "101 Switching Protocols" naming the framing it chose, and from then on the
// connection carries length-prefixed binary frames: a 4-byte big-endian length (and with framing
// 2 a 4-byte request id), then the frame (a version byte, an op or status byte, a flags byte and
// uvarint-length-prefixed fields); no HTTP header per request. With framing 2 (multiplexed) the
// server's goroutine for the connection answers at once what it holds in memory (InlineBackend)
// and runs any other request on a goroutine of its own, replying in any order; with framing 1 it
// reads a request, calls the Backend inline, writes the reply and repeats, answering in order.
// Replies ready together go out in one write. A plain POST whose body is one request frame is answered with one response frame,
// for simple clients and for proxies that refuse upgrades.
// AppendRequest, ParseRequest, AppendResponse and ParseResponse encode and decode frames, and
// AppendBatch and ParseBatch the body of a GetMany or PeekMany reply; docs/protocol.md in the
// repository describes the format byte by byte.
//
// # Serving
//
// A Server is an http.Handler over a Backend (the cache's side of the contract). Mount it on
// your mux at its base path, or let it run its own listener:
//
//	srv, err := peer.NewServer(backend, peer.WithMaxConcurrent(1024))
//	if err != nil { ... }
//	mux.Handle(srv.BasePath(), srv) // "/_groupcache/" by default
//	...
//	defer srv.Close() // ends upgraded connections, which http.Server.Shutdown does not track
//
// or go srv.ListenAndServe("127.0.0.1:8080").
//
// # Asking
//
// A Client keeps, per peer address ("host:port"), a pool of upgraded connections, at most
// WithMaxConnsPerPeer of them (32 by default): that is also the bound on requests in flight to
// one peer, and callers beyond it wait for a free connection within their timeout. The calling
// goroutine writes the request and reads the reply itself, with the connection's deadline
// carrying the per-request timeout (WithTimeout, 5 s by default) and context.AfterFunc turning a
// cancelled context into a past deadline. A connection whose reply was not read in full is
// closed, never reused; a reused connection that the peer had closed is replaced and the request
// sent once more (every operation is idempotent).
//
// WithPipelining(n) makes a Client send its requests to a peer over at most n shared connections
// on the multiplexed framing ("groupcache/2": every frame carries a request id, and the server
// answers in any order), up to 64 in flight on each: the frames of requests that arrive while a
// write is in progress go out together in the next write, and one waiting caller at a time reads,
// handing the other callers the replies their ids name from what it read. A slow request holds up
// none of the others. A timeout or cancellation releases its caller at once (its reply is dropped
// when it comes). A peer that speaks framing 1 only is asked one request per connection, as
// with WithPipelining(0), which goes back to one request per connection. It raises the throughput
// of many callers asking for small values; DefaultPipelining is 1.
//
//	c, err := peer.NewClient()
//	if err != nil { ... }
//	defer c.Close()
//	v, err := c.Get(ctx, "10.0.0.7:8080", "profiles", key)
//	raw, err := v.Raw(maxValueBytes) // inflate if compressed, within the limit
//	rs, err := c.GetMany(ctx, "10.0.0.7:8080", "profiles", keys) // one Result per key
//
// Get reads each value into new memory of its own. GetInto reads it into a buffer the caller
// lends when it fits, so a caller done with each value before the next can reuse one buffer and
// make no garbage (Value.RawInto does the same for inflating); after an error the buffer must not
// be reused, since a reply abandoned halfway may still be read into it.
//
// A GetMany (or PeekMany) reply is one frame, read into one buffer that the Results' values
// share. An entry the peer could not fit in its reply frame comes back as StatusOverloaded: ask for it
// again.
//
// # Limits
//
// Limits bound key, value, cache name and frame lengths on both sides (4 KiB, 64 MiB, 255 bytes
// and their sum plus FrameOverhead by default), and the keys of a GetMany, PeekMany or Remove
// (4096). A frame's length prefix is checked before any memory is allocated for it, and a
// compressed value's decoded length (stated in its S2 header) is checked before it is inflated.
//
// # Errors
//
// Every error is an *Error (peer address, op, status, message, cause). StatusOf reads its Status:
// what the peer answered (StatusNotFound, StatusUnknownCache, StatusTooLarge, StatusOverloaded,
// StatusInternal, StatusBadRequest, StatusBadVersion), or the same condition found on this side
// (a request or reply over this side's limits). Failures of the exchange itself have no status and
// match a sentinel with errors.Is: ErrProtocol for malformed bytes from a peer, ErrUnavailable for
// a network failure, a timeout, a cancelled context (the error then also matches ctx.Err()) or a
// closed Client. A caller that cannot get a value from its owner for a reason other than
// StatusNotFound may load it itself.
package peer
