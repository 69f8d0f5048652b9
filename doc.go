// Package groupcache is a typed, loading, in-memory cache in the family of Go's groupcache.
//
// A Cache[K, V] answers Get(ctx, key) from memory when it can. On a miss it calls the cache's
// Loader once, however many goroutines ask for the same key at the same time: the first caller
// starts the load, the others wait for its result, and the value is stored before any of them
// returns, so the next Get is a hit. The store is bounded in bytes (WithMaxBytes) and evicts with
// S3-FIFO, which keeps a hot set through scans of one-off keys. Entries may expire (WithTTL).
//
// Keys and values stay typed from the loader to the caller: a hit returns the stored V with no
// decoding and no allocation. Values are encoded only to measure their cost (see WithSizer to skip
// that) and, in a cluster, to travel between nodes; the codec is pluggable (WithCodec, CBOR by
// default). Keys of string and integer kinds need no setup; other key types take WithKeyCodec.
//
// Values returned by Get are shared: treat them as read-only.
//
// Errors are exported sentinels and types for errors.Is and errors.As: ErrNotFound (returned by a
// loader for a missing key), ErrClosed, ErrLoadTimeout, ErrInvalidKey, ErrTooLarge with
// *TooLargeError, ErrNoKeyCodec and ErrInvalidOption from New, and *PanicError for a loader that
// panicked.
package groupcache
