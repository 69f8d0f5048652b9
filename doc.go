// Package groupcache is a distributed, typed, loading cache in the family of Go's groupcache.
//
// A Cache[K, V] answers Get(ctx, key) from memory when it can. On a miss, one load runs however
// many goroutines ask for the key at the same moment: the first caller starts it, the others wait
// for its result, and the value is stored before any of them returns. Alone, a cache loads with
// its Loader. Attached to a Node (WithNode), each key has one owner in the cluster, chosen by a
// consistent-hash ring of the node's peers: the owner loads the key, every other node fetches it
// from the owner over the peer protocol and may keep a hot copy of popular keys. A peer that
// cannot be reached is skipped for a while and its keys are loaded locally meanwhile.
//
// Keys and values stay typed from the loader to the caller: a hit returns the stored V with no
// decoding and no allocation. Values are encoded only to measure their cost (see WithSizer) and to
// travel between nodes; the codec is pluggable (WithCodec, CBOR by default). Keys of string and
// integer kinds need no setup; other key types take WithKeyCodec. Memory is bounded in bytes
// (WithMaxBytes, or WithMemoryFraction of the process's memory limit) and the store's eviction
// adapts to the workload while keeping a hot set through scans. Entries may expire (WithTTL).
//
// Values returned by Get are shared: treat them as read-only. View lends a value to a function
// instead of returning it; a remote hit is then read into memory the cache reuses, which saves
// most of a large value's cost.
//
// The peer set of a node is pushed with SetPeers, or pulled from a source by package discovery
// (static lists, DNS, and memberlist, etcd and Kubernetes in their own modules).
//
// Every error is classified with this package's names alone. A loader's own error and the
// caller's ctx.Err() come back unchanged; anything else matches one of ErrNotFound,
// ErrInvalidKey, ErrTooLarge, ErrCodec, ErrLoadTimeout, ErrUnavailable, ErrIncomplete,
// ErrInvalidOption and ErrClosed with errors.Is, or is a *PanicError (errors.As) for a panic in
// user code. A value too large to cache is not an error: Get returns it without caching it.
package groupcache
