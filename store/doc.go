// Package store is a sharded, byte-bounded, concurrent in-memory key/value store, generic in the
// key and value types, with an eviction policy that adapts to the workload. It is the local
// storage under the groupcache Cache; it knows nothing of loading, codecs or peers.
//
// # Eviction policy
//
// A W-TinyLFU design (Einziger, Friedman and Manes, "TinyLFU", 2017; Caffeine's adaptive window)
// built so that reads stay lock-free: a window FIFO takes new entries; a main region, split into
// probation and protected segments, holds the rest; a count-min sketch of 4-bit counters
// estimates how often each key was seen recently. When the window overflows, its oldest entry
// moves to protected if it was read while in the window, else it competes with main's victim
// (the oldest probation entry not read since it came there) and replaces it only if the sketch
// has seen its key more often. Reads only bump a 2-bit counter in the entry, never move it; the
// writer, under the store's lock, turns the counters into promotions and sketch counts when it
// meets them. The window's share of MaxBytes is hill-climbed on the hit ratio: it grows while
// growing it helps (recency-heavy workloads), shrinks otherwise (frequency-heavy ones and loops).
// One-off keys therefore never displace entries that were read (scan resistance), and a loop
// larger than the store keeps a fixed part of itself instead of none. The measurements behind
// each choice are in docs/store.md.
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
// # Removals
//
// Config.OnRemove, when set, is told of every entry that leaves the store and why (Reason:
// Explicit for Remove and Clear, Expired for an entry past its expiry when the policy meets it or
// Set replaces it, Evicted for an entry dropped before its expiry to make room, Replaced for a
// value Set stored over). Writers collect what they remove under the lock and report it once the
// lock is released, on their own goroutine; reads never remove, so they are untouched.
//
// # Expiry
//
// Set takes an absolute expiry in unix nanoseconds (0 = never). Get treats an entry at or past
// its expiry as absent; the clock (Config.Now) is consulted only for entries that have one. An
// expired entry stays until the policy meets it, which evicts it whatever its counter, or until
// Set replaces it; meanwhile Peek still returns it, with its expiry, so that a caller can serve
// stale data while it refreshes.
package store
