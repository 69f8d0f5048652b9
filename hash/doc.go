// Package hash maps keys to peers with a consistent-hash ring of virtual nodes.
//
// Every process of a cluster builds a Ring from the same peer set and asks it which peer owns a
// key. The answer depends only on the peer names, the number of virtual nodes per peer, the hash
// function and the key bytes, so all processes agree on the owner without talking to each other.
//
//	ring, err := hash.NewRing([]string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"})
//	owner, ok := ring.OwnerString("user:42") // ok is false only for an empty ring
//
// A Ring is immutable and safe for concurrent use. On a membership change build a new Ring and
// swap it in atomically (an atomic.Pointer[hash.Ring]; a nil *Ring behaves as an empty ring).
//
// # Placement (part of the cluster protocol)
//
// The rules below decide which peer owns which key. All processes of a cluster must follow the
// same rules; changing any of them moves keys between peers and breaks clusters that mix
// versions. TestPinnedOwners pins the owners of fixed keys so that such a change cannot go
// unnoticed.
//
//   - Peers. The input is deduplicated and sorted bytewise (Go string order), so its order does
//     not matter. Names are opaque byte strings: "10.0.0.1:8080" and "10.0.0.1:8080/" are
//     different peers. The empty name is rejected (ErrInvalid).
//   - Hash. H is XXH3-64 with seed 0 (github.com/zeebo/xxh3 Hash / HashString) unless WithHash
//     sets another function. XXH3 is a specified algorithm: its SIMD and scalar code paths give
//     the same value on every architecture.
//   - Virtual nodes. Each peer p has R virtual nodes (R = DefaultReplicas unless WithReplicas).
//     Virtual node j, 0 <= j < R, is at position H(p || be32(j)): the bytes of the name followed
//     by j as a 4-byte big-endian unsigned integer. For example virtual node 258 of
//     "10.0.0.3:8080" is at H("10.0.0.3:8080" 0x00 0x00 0x01 0x02). The encoding is injective,
//     so two different (peer, j) never hash the same bytes.
//   - Keys. A key is at position H(key), over the key bytes as given (the root package's key
//     codec defines the bytes of a typed key).
//   - Owner. The owner of a key is the peer of the first virtual node whose position is >= the
//     key's position; past the largest position the ring wraps around to the smallest one. If
//     virtual nodes of different peers share a position, the peer with the smaller name owns it.
//
// Nothing else enters the computation: no map iteration order, no floating point, no
// machine-dependent integer size or byte order.
//
// # Lookup
//
// The positions are kept in ascending order in one []uint64, with the owners in a parallel
// []int32 of indices into the sorted peer list. A table indexed by the top bits of a position
// (8 to 16 positions per bucket, one or two cache lines) narrows the binary search, so a lookup
// costs one table read plus a short binary search: O(log n) in the worst case, a few
// nanoseconds in practice, and no allocation. OwnerIndex takes a precomputed key hash (KeyHash)
// so that a caller can hash a key once.
//
// Memory is about 12.5 bytes per virtual node: 50 peers at the default 2048 replicas are 102,400
// virtual nodes, about 1.3 MB. NewRing hashes every virtual node and sorts them with a radix
// sort; for 50 peers it takes a few milliseconds.
//
// # Choice of DefaultReplicas
//
// Target: with 3 to 50 peers, the most loaded peer owns at most 1.10 times the mean share of the
// keys. With R random positions per peer, a peer's share has a relative standard deviation of
// about 1/sqrt(R), and the most loaded of N peers sits about 2 to 2.5 standard deviations above
// the mean, so R must be in the high hundreds at least. The table gives the measured max/mean of
// the exact shares of the hash space (from the arc lengths, so without key-sampling noise) for
// 3, 5, 10, 20 and 50 peers: the worst over four name patterns ("10.0.0.1:8080",
// "cache-0.cache.svc.cluster.local:9000", "http://192.168.0.1:8000", "node0", and so on), and
// the 99th percentile and maximum over 200 sets of random peer names per size (TestMeasureReplicas
// prints it: HASH_MEASURE=1 go test -run TestMeasureReplicas -v ./hash/).
//
//	replicas  worst named pattern  random names p99  random names max
//	     128  1.326                1.313             1.340
//	     256  1.223                1.235             1.239
//	     512  1.159                1.162             1.164
//	    1024  1.099                1.114             1.124
//	    2048  1.061                1.080             1.082
//	    4096  1.055                1.058             1.061
//
// 1024 replicas only just meets the target for the named patterns (1.099 for 50 "10.0.0.x:8080"
// peers) and misses it for some random peer sets (99th percentile up to 1.114). 2048 meets it
// for every measured set, 1,000 random ones included, with the worst at 1.082 (1.061 for the
// named patterns), so DefaultReplicas is 2048, the smallest power of two that meets the target
// with margin. 4096 would bring the worst case down to 1.061 for twice the memory and build
// time.
//
// With 1,000,000 random keys (TestBalance) and 2048 replicas, the most loaded peer owns 1.007 to
// 1.061 times the mean share over the 20 combinations of size and name pattern. Removing one of
// N peers moves 0.95 to 1.04 times 1/N of the keys, all of them keys of the removed peer; adding
// a peer moves 0.98 to 1.02 times 1/(N+1), all of them to the new peer (TestMovement, N = 3 to
// 50); no key ever moves between two peers that stay.
//
// # Errors
//
// Every error NewRing returns wraps ErrInvalid (an empty name, too many virtual nodes, a bad
// option argument); match it with errors.Is. An empty peer set is not an error: the ring is valid
// and every lookup reports no owner (ok false, or index -1).
package hash
