package groupcache

// Stats is a snapshot of a cache's counters. Counters count from New and never go down; Items and
// Bytes are the current contents. The counters are read one by one without a lock, so a snapshot
// taken under load may be off by the operations in flight.
type Stats struct {
	// Gets is the number of lookups in the main store: Get calls and, on a node, requests from
	// peers for keys this node owns.
	Gets int64
	// Hits is the number of lookups answered from memory: the main store's hits plus HotHits.
	Hits int64
	// Misses is Gets - Hits: lookups that found no live entry and went on to the single flight.
	Misses int64
	// Loads is the number of loader calls in this process. With single flight it is at most
	// Misses, usually fewer; in a cluster only the owner of a key loads it, save for fallbacks.
	Loads int64
	// LoadErrors is the number of loads that failed: the loader returned an error (ErrNotFound
	// included), panicked, timed out, or its value could not be measured by the codec or sizer.
	LoadErrors int64
	// Deduplicated is the number of lookups that waited for a load or fetch started by another
	// caller instead of starting their own.
	Deduplicated int64
	// TooLarge is the number of loaded values not cached because they exceeded the per-value limit.
	TooLarge int64
	// Evictions is the number of entries the stores dropped to stay within their byte bounds.
	Evictions int64
	// Expirations is the number of entries found expired (they count as misses too).
	Expirations int64
	// Items is the number of entries in memory now, hot copies included.
	Items int64
	// Bytes is the sum of the costs of the entries in memory now; it never exceeds MaxBytes.
	Bytes int64
	// MaxBytes is the cache's byte bound (main and hot store together).
	MaxBytes int64

	// NegativeEntries is the number of "not found" answers cached (WithNegativeTTL), from the
	// loader here or, in the hot store, from an owning peer; NegativeHits the number of Gets (and
	// peers' requests) answered by one of them. NegativeHits count in Hits too.
	NegativeEntries, NegativeHits int64
	// StaleHits is the number of Gets (and peers' requests) answered with a value past its TTL,
	// within the stale-while-revalidate window (WithStaleWhileRevalidate); they count in Hits
	// too. Refreshes is the number of background refreshes those started, RefreshErrors the
	// number of those that failed (the stale value was kept).
	StaleHits, Refreshes, RefreshErrors int64
	// Sets is the number of Set calls on this cache that stored a value; Removes the number of
	// keys passed to Remove and RemoveMany on it; Clears the number of Clear calls on it.
	Sets, Removes, Clears int64
	// BatchGets is the number of GetMany calls, BatchKeys the number of keys they asked for
	// (duplicates included). BatchRequests is the number of GetMany requests sent to peers.
	// BatchLoads is the number of BatchLoader.LoadMany calls.
	BatchGets, BatchKeys, BatchRequests, BatchLoads int64

	// The fields below stay zero for a cache without a node.

	// HotHits is the number of Gets answered from the hot store (copies of keys owned by peers).
	HotHits int64
	// HotItems and HotBytes are the hot store's share of Items and Bytes.
	HotItems, HotBytes int64
	// RemoteGets is the number of fetches from owning peers; RemoteErrors the number of those that
	// failed (not-found answers included), whatever happened next.
	RemoteGets, RemoteErrors int64
	// FallbackLoads is the number of loads run here for keys owned by a peer that could not serve
	// them (down, overloaded, without the cache); they count in Loads too.
	FallbackLoads int64
	// Handoffs is the number of values taken over from their previous owner after a peer-set
	// change instead of being loaded (see WithHandoffWindow).
	Handoffs int64
	// PeerRequests is the number of requests from peers for this cache; PeerLoads the number of
	// loads they caused here (they count in Loads too).
	PeerRequests, PeerLoads int64
	// BytesSent and BytesReceived count value bytes on the wire to and from peers (compressed
	// where they were); BytesSentRaw and BytesReceivedRaw the same values before compression.
	BytesSent, BytesSentRaw, BytesReceived, BytesReceivedRaw int64
}

// Stats returns a snapshot of the cache's counters. It takes no lock on the Get path and is cheap
// enough to call from a metrics scrape.
func (c *Cache[K, V]) Stats() Stats {
	st := c.store.Stats()
	s := Stats{
		Gets:         st.Hits + st.Misses,
		Hits:         st.Hits,
		Loads:        c.loads.Load(),
		LoadErrors:   c.loadErrors.Load(),
		Deduplicated: c.dedup.Load(),
		TooLarge:     c.tooLarge.Load(),
		Evictions:    st.Evictions,
		Expirations:  st.Expirations,
		Items:        st.Items,
		Bytes:        st.Bytes,
		MaxBytes:     c.store.MaxBytes(),

		NegativeEntries: c.fresh.negativeEntries.Load(),
		NegativeHits:    c.fresh.negativeHits.Load(),
		StaleHits:       c.fresh.staleHits.Load(),
		Refreshes:       c.fresh.refreshes.Load(),
		RefreshErrors:   c.fresh.refreshErrors.Load(),
		Sets:            c.fresh.sets.Load(),
		Removes:         c.fresh.removes.Load(),
		Clears:          c.fresh.clears.Load(),
		BatchGets:       c.fresh.batchGets.Load(),
		BatchKeys:       c.fresh.batchKeys.Load(),
		BatchRequests:   c.fresh.batchRequests.Load(),
		BatchLoads:      c.fresh.batchLoads.Load(),

		Handoffs:         c.cluster.handoffs.Load(),
		RemoteGets:       c.cluster.remoteGets.Load(),
		RemoteErrors:     c.cluster.remoteErrors.Load(),
		FallbackLoads:    c.cluster.fallbackLoads.Load(),
		PeerRequests:     c.cluster.peerRequests.Load(),
		PeerLoads:        c.cluster.peerLoads.Load(),
		BytesSent:        c.cluster.bytesSent.Load(),
		BytesSentRaw:     c.cluster.bytesSentRaw.Load(),
		BytesReceived:    c.cluster.bytesReceived.Load(),
		BytesReceivedRaw: c.cluster.bytesReceivedRaw.Load(),
	}
	if c.hot != nil {
		hs := c.hot.Stats()
		s.HotHits, s.HotItems, s.HotBytes = hs.Hits, hs.Items, hs.Bytes
		s.Hits += hs.Hits
		s.Evictions += hs.Evictions
		s.Expirations += hs.Expirations
		s.Items += hs.Items
		s.Bytes += hs.Bytes
		s.MaxBytes += c.hot.MaxBytes()
	}
	s.Misses = s.Gets - s.Hits
	return s
}
