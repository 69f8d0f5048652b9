package groupcache

import "github.com/typedcache/groupcache/observe"

// Stats is a snapshot of a cache's counters. Counters count from New and never go down; Items,
// Bytes and MaxBytes (and their hot shares) are the current contents and bound. The counters are
// read one by one without a lock, so a snapshot taken under load may be off by the operations in
// flight.
//
// "Own lookups" are this process's own calls: each Get, each View, and each distinct key of a
// GetMany. Requests from peers are not own lookups: they count in PeerRequests.
type Stats struct {
	// Gets is the number of own lookups.
	Gets int64
	// Hits is the number of own lookups answered from memory: a fresh value, a stale one within
	// the stale-while-revalidate window, or a cached "not found", in the main or the hot store.
	Hits int64
	// Misses is Gets - Hits: own lookups that went on to the single flight (to wait for a load,
	// start one, or fetch from the key's owner). Entries found expired count here.
	Misses int64
	// Loads is the number of keys given to the loader in this process (Load calls, plus the keys
	// of LoadMany calls), for own lookups, peers' requests (PeerLoads), fallbacks (FallbackLoads)
	// and refreshes alike. With single flight, concurrent lookups of one key cause one load.
	Loads int64
	// LoadWaits is the number of loader calls (Load, or LoadMany for a batch) that waited for a
	// slot because WithMaxLoads calls were in progress already. A wait cut short by the load
	// timeout ends the load with ErrLoadTimeout, and counts in Loads and LoadErrors as a load
	// that timed out.
	LoadWaits int64
	// LoadErrors is the number of those loads that failed: the loader returned an error
	// (ErrNotFound included), panicked or timed out, or its value could not be measured (codec or
	// sizer failure).
	LoadErrors int64
	// Deduplicated is the number of own lookups and peers' requests that joined a load or fetch
	// another caller had started instead of starting their own.
	Deduplicated int64
	// TooLarge is the number of values over the per-value limit (WithMaxValueBytes) that were not
	// cached: loaded here or fetched from a peer (and returned to their callers all the same), or
	// given to Set (refused with ErrTooLarge) here or by a peer.
	TooLarge int64
	// Evictions is the number of entries the main and hot stores dropped to stay within their
	// byte bounds.
	Evictions int64
	// Expirations is the number of lookups in memory, own and peers', that found their entry
	// expired (an own one is a miss too).
	Expirations int64
	// Items is the number of entries in memory now, hot copies and cached "not found" included.
	Items int64
	// Bytes is the sum of the costs of the entries in memory now; it never exceeds MaxBytes.
	Bytes int64
	// MaxBytes is the cache's byte bound (main and hot store together).
	MaxBytes int64

	// NegativeEntries is the number of "not found" answers cached (WithNegativeTTL): the loader's
	// here or, in the hot store, an owning peer's. NegativeHits is the number of own lookups one of
	// them answered (they count in Hits too).
	NegativeEntries, NegativeHits int64
	// StaleHits is the number of own lookups answered with a value past its TTL, within the
	// stale-while-revalidate window (WithStaleWhileRevalidate); they count in Hits too.
	// Refreshes is the number of background refreshes started, by own lookups or peers' requests
	// that met a stale value; RefreshErrors the number of those that failed (the stale value was
	// kept).
	StaleHits, Refreshes, RefreshErrors int64
	// Sets is the number of Set calls on this cache that stored a value (here or on the key's
	// owner); Removes the number of keys passed to Remove and RemoveMany on it; Clears the number
	// of Clear calls on it. Writes peers asked for do not count.
	Sets, Removes, Clears int64
	// BatchGets is the number of GetMany calls, BatchKeys the number of keys they asked for
	// (duplicates included). BatchRequests is the number of GetMany requests sent to peers.
	// BatchLoads is the number of BatchLoader.LoadMany calls.
	BatchGets, BatchKeys, BatchRequests, BatchLoads int64

	// The fields below stay zero for a cache without a node.

	// HotHits is the number of own lookups answered from the hot store (copies of keys owned by
	// peers); they count in Hits too.
	HotHits int64
	// HotItems and HotBytes are the hot store's share of Items and Bytes.
	HotItems, HotBytes int64
	// RemoteGets is the number of keys asked of their owning peers (one per key of a GetMany
	// request). RemoteErrors is the number of failures talking to peers, whatever happened next:
	// a failed fetch, Set, Remove or Clear request (a failed GetMany request counts once per key,
	// as does each key a peer answered with an error, "not found" included), and fetched values
	// that could not be read.
	RemoteGets, RemoteErrors int64
	// FallbackLoads is the number of keys loaded here because their owner could not serve them
	// (down, overloaded, without the cache); they count in Loads too.
	FallbackLoads int64
	// Handoffs is the number of values taken over from another node instead of being loaded:
	// asked of their previous owner after a peer-set change, or handed over by a node that left
	// or by the interim owner of a key of this node that came back (see WithHandoffWindow).
	// HandedOver is the number of values this node offered to the nodes that own their keys
	// next, when it left (Shutdown) or a peer joined; a receiver may decline them.
	Handoffs, HandedOver int64
	// PeerRequests is the number of keys peers asked this node for, in Get and GetMany requests
	// (hand-off peeks do not count); PeerLoads the number of loads they caused here (they count
	// in Loads too).
	PeerRequests, PeerLoads int64
	// BytesSent and BytesReceived count value bytes on the wire to and from peers (compressed
	// where they were); BytesSentRaw and BytesReceivedRaw the same values before compression.
	BytesSent, BytesSentRaw, BytesReceived, BytesReceivedRaw int64
	// FetchLatency is the latency of this cache's requests to peers for values (one per key a
	// Get or View asked for, one per GetMany request), successful or not. HotKeys are the keys
	// fetched from peers most often lately (at most 10, most fetched first; see
	// observe.KeyCount): the keys the promoter sees.
	FetchLatency observe.Histogram
	HotKeys      []observe.KeyCount

	// The fields below are what an operator needs beyond the counters, alone or on a node.

	// LoadLatency is the latency of the loader's calls (a Load, or a LoadMany for a batch),
	// successful or not, from the call to its return; a wait for a slot (WithMaxLoads) is not in
	// it.
	LoadLatency observe.Histogram
	// EvictedFresh is the number of evictions (counted in Evictions) of entries that had not
	// expired: values dropped only to make room. EvictionAge is the age of those entries when
	// they were evicted, from when they were stored. Many, or young, mean the cache is too small
	// for what it is asked for.
	EvictedFresh int64
	EvictionAge  observe.Histogram
	// Failures are the cache's last failures (at most 20), newest first: loads that failed
	// ("not found" is an answer, not a failure), failed requests to peers and errors in their
	// answers, panics in user code.
	Failures []observe.Failure
}

// Stats returns a snapshot of the cache's counters. It takes no lock on the Get path and is cheap
// enough to call from a metrics scrape.
func (c *Cache[K, V]) Stats() Stats {
	// Peers' lookups in the main store are read first: the store has counted them by then.
	peerLookups, peerHits := c.cluster.peerLookups.Load(), c.cluster.peerHits.Load()
	st := c.store.Stats()
	s := Stats{
		Gets:         st.Hits + st.Misses - peerLookups,
		Hits:         st.Hits - peerHits,
		Loads:        c.loads.Load(),
		LoadWaits:    c.loadWaits.Load(),
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
		HandedOver:       c.cluster.handedOver.Load(),
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
	c.obs.fill(&s)
	s.HotKeys = c.hotKeys.Top()
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
