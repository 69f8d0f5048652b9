package groupcache

import (
	"context"
	"time"
)

// BatchLoader is a Loader that can also load many keys in one call, for example with one query
// for many rows. When a cache's loader implements it, GetMany loads the keys it misses through
// LoadMany, in calls of at most the batch size (WithBatchSize); Get still calls Load.
type BatchLoader[K comparable, V any] interface {
	Loader[K, V]
	// LoadMany loads keys, which are distinct, and returns one Loaded per key, in the order of
	// keys. ctx is as for Load. An error, or a slice of another length, fails every key of the
	// call; a key's own failure goes in its Loaded.Err (ErrNotFound, wrapped or not, for a key
	// that does not exist).
	LoadMany(ctx context.Context, keys []K) ([]Loaded[V], error)
}

// Loaded is what a BatchLoader returns for one key.
type Loaded[V any] struct {
	// Value is the key's value, when Err is nil.
	Value V
	// Err is the key's own failure; ErrNotFound (wrapped or not) says the key does not exist.
	Err error
	// TTL overrides the cache's TTL for this entry when positive (as SetTTL does for Load); like
	// SetTTL's, it is cut to the cache's TTL when that is shorter.
	TTL time.Duration
}

// Result is what GetMany returns for one key: its value, or the error Get would have returned.
type Result[V any] struct {
	Value V
	Err   error
}
