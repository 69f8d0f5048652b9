package groupcache

// Stats is a snapshot of a cache's counters. Counters count from New and never go down; Bytes and
// Items are the current contents. The counters are read one by one without a lock, so a snapshot
// taken under load may be off by the operations in flight.
type Stats struct {
	// Gets is the number of Get calls that reached the store (Hits + Misses).
	Gets int64
	// Hits is the number of Gets served from memory.
	Hits int64
	// Misses is the number of Gets that did not find a live entry.
	Misses int64
	// Loads is the number of loader calls. With single flight it is at most Misses, usually fewer.
	Loads int64
	// LoadErrors is the number of loads that failed: the loader returned an error (ErrNotFound
	// included), panicked, timed out, or its value could not be measured by the codec or sizer.
	LoadErrors int64
	// Deduplicated is the number of Gets that waited for a load started by another caller instead
	// of starting their own.
	Deduplicated int64
	// TooLarge is the number of loaded values not cached because they exceeded the per-value limit.
	TooLarge int64
	// Evictions is the number of entries the store dropped to stay within its byte bound.
	Evictions int64
	// Expirations is the number of entries found expired (they count as misses too).
	Expirations int64
	// Items is the number of entries in memory now.
	Items int64
	// Bytes is the sum of the costs of the entries in memory now; it never exceeds MaxBytes.
	Bytes int64
	// MaxBytes is the cache's byte bound.
	MaxBytes int64
}

// Stats returns a snapshot of the cache's counters. It takes no lock on the Get path and is cheap
// enough to call from a metrics scrape.
func (c *Cache[K, V]) Stats() Stats {
	st := c.store.Stats()
	return Stats{
		Gets:         st.Hits + st.Misses,
		Hits:         st.Hits,
		Misses:       st.Misses,
		Loads:        c.loads.Load(),
		LoadErrors:   c.loadErrors.Load(),
		Deduplicated: c.dedup.Load(),
		TooLarge:     c.tooLarge.Load(),
		Evictions:    st.Evictions,
		Expirations:  st.Expirations,
		Items:        st.Items,
		Bytes:        st.Bytes,
		MaxBytes:     c.store.MaxBytes(),
	}
}
