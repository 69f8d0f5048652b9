// Package store is a sharded, byte-bounded, concurrent in-memory key/value store, generic in the
// key and value types, with S3-FIFO eviction. It is the local storage under the groupcache
// Cache; it knows nothing of loading, codecs or peers.
//
// # Eviction policy
//
// S3-FIFO (Yang et al., SOSP 2023): a small FIFO that takes new entries and may hold about 10% of
// MaxBytes, a main FIFO for the rest, and a ghost queue of the hashes of keys recently evicted from
// the small FIFO. Each entry has a 2-bit access counter that Get increments (and does not write
// once saturated). An entry that reaches the small FIFO's tail unread is evicted and remembered in
// the ghost; one that was read moves to the main FIFO. The main FIFO is a CLOCK: its tail is
// reinserted with its counter decremented while the counter is non-zero, else evicted. A key
// inserted while the ghost remembers it goes straight to the main FIFO. One-off keys therefore
// pass through the small FIFO only, which makes the store scan resistant, and the policy needs no
// reordering on reads, which keeps Get lock-free. Measured against W-TinyLFU and LRU, the hit
// ratio and the cost of a hit are in docs/store.md and docs/benchmarks.md.
//
// # Byte bound, cost and overhead
//
// Every entry is charged cost + EntryOverhead bytes, where cost is the caller's measure of the
// key and value (Set takes it as an argument) and EntryOverhead stands for the store's own memory
// per entry. The sum of charges, Bytes(), never exceeds MaxBytes, at any moment: Set evicts until
// the new entry fits before it publishes it, and all writers serialize on one mutex, so the bound
// is exact and global (not split per shard). An entry that cannot fit even in an empty store is
// refused: Set reports false.
//
// # Concurrency
//
// Keys are spread over shards, each an open-addressing hash table of atomic entry pointers. Get
// and Peek take no lock: they load the shard's table and probe it. Writers (Set, Remove, Clear
// and the evictions Set performs) hold the store's mutex, publish new entries with atomic stores
// and never change a published entry's key or value, so a reader always sees a whole entry. Hit,
// miss and expiration counters live in the shards, on their own cache lines, and are summed by
// Stats.
//
// # Expiry
//
// Set takes an absolute expiry in unix nanoseconds (0 = never). Get treats an entry at or past
// its expiry as absent; the clock (Config.Now) is consulted only for entries that have one. An
// expired entry stays until the policy meets it, which evicts it whatever its counter, or until
// Set replaces it; meanwhile Peek still returns it, with its expiry, so that a caller can serve
// stale data while it refreshes.
package store
