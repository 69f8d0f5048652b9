package hash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/zeebo/xxh3"
)

const (
	// DefaultReplicas is the number of virtual nodes per peer of a ring made without WithReplicas.
	// It was chosen by measurement; see the package documentation.
	DefaultReplicas = 2048

	// MaxReplicas is the largest value WithReplicas accepts.
	MaxReplicas = 1 << 16
)

// ErrInvalid is wrapped by every error NewRing returns: an empty peer name, too many virtual
// nodes, or an option with an invalid argument. The message says which. Match it with errors.Is.
var ErrInvalid = errors.New("hash: invalid ring")

// Option configures NewRing. Options check their argument; NewRing reports the first invalid one
// as an error wrapping ErrInvalid.
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	replicas int
	hash     func([]byte) uint64 // nil means xxh3.Hash
}

// WithReplicas sets the number of virtual nodes per peer, 1 to MaxReplicas. The default is
// DefaultReplicas. All processes of a cluster must use the same value.
func WithReplicas(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 || n > MaxReplicas {
			return fmt.Errorf("%w: WithReplicas(%d) not in [1, %d]", ErrInvalid, n, MaxReplicas)
		}
		c.replicas = n
		return nil
	})
}

// WithHash sets the 64-bit hash function used for both keys and virtual nodes. The default is
// xxh3.Hash (XXH3-64 with seed 0). The function must be deterministic across processes and
// architectures, must not modify or retain its argument, and must be safe for concurrent use. All
// processes of a cluster must use the same function.
func WithHash(h func([]byte) uint64) Option {
	return optionFunc(func(c *config) error {
		if h == nil {
			return fmt.Errorf("%w: WithHash(nil)", ErrInvalid)
		}
		c.hash = h
		return nil
	})
}

// Ring is a consistent-hash ring: it maps a key to the peer that owns it. A Ring is immutable once
// built and safe for concurrent use. A new peer set means a new Ring; callers keep the current one
// in an atomic.Pointer and swap it.
//
// A nil *Ring behaves as an empty ring with the default hash.
type Ring struct {
	peers  []string // sorted, deduplicated
	hashes []uint64 // virtual node positions, ascending
	owners []int32  // owners[i] is the index into peers of the virtual node at hashes[i]
	// buckets narrows the binary search: the positions whose top bits (h >> shift) are b are
	// hashes[buckets[b]:buckets[b+1]]. len(buckets) = 1<<(64-shift) + 1.
	buckets  []int32
	shift    uint
	replicas int
	hash     func([]byte) uint64 // nil means xxh3.Hash
}

// NewRing builds a ring over peers. Duplicates are removed and the peers are sorted, so the input
// order does not matter. An empty (or nil) peer set gives a valid empty ring on which every lookup
// reports no owner. An empty peer name gives an error wrapping ErrInvalid.
func NewRing(peers []string, opts ...Option) (*Ring, error) {
	cfg := config{replicas: DefaultReplicas}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	for i, p := range peers {
		if p == "" {
			return nil, fmt.Errorf("%w: empty peer name at index %d", ErrInvalid, i)
		}
	}
	sorted := slices.Clone(peers)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	sorted = slices.Clip(sorted)
	if len(sorted) > math.MaxInt32/cfg.replicas {
		return nil, fmt.Errorf("%w: %d peers with %d replicas each exceed %d virtual nodes",
			ErrInvalid, len(sorted), cfg.replicas, math.MaxInt32)
	}

	r := &Ring{peers: sorted, replicas: cfg.replicas, hash: cfg.hash}
	if len(sorted) == 0 {
		return r, nil
	}

	n := len(sorted) * cfg.replicas
	vnodes := make([]vnode, 0, n)
	var buf []byte
	for pi, p := range sorted {
		// Virtual node j of peer p sits at hash(p || uint32be(j)).
		buf = append(buf[:0], p...)
		buf = append(buf, 0, 0, 0, 0)
		idx := buf[len(p):]
		for j := range cfg.replicas {
			binary.BigEndian.PutUint32(idx, uint32(j))
			vnodes = append(vnodes, vnode{hash: r.sum(buf), peer: int32(pi)})
		}
	}
	// Ties between peers are broken by peer index, i.e. by peer name: vnodes is in peer order and
	// the sort is stable, so the smaller name comes first among equal positions, and the binary
	// search in OwnerIndex finds the first of equal positions.
	vnodes = sortVnodes(vnodes)
	r.hashes = make([]uint64, n)
	r.owners = make([]int32, n)
	for i, v := range vnodes {
		r.hashes[i] = v.hash
		r.owners[i] = v.peer
	}
	r.buildBuckets()
	return r, nil
}

type vnode struct {
	hash uint64
	peer int32
}

// sortVnodes sorts v by hash with a stable LSD radix sort (8 passes of one byte each; a pass is
// skipped when all hashes share that byte) and returns the sorted slice, which is either v or a
// new slice of the same length.
func sortVnodes(v []vnode) []vnode {
	if len(v) < 2 {
		return v
	}
	var counts [8][256]int
	for _, x := range v {
		h := x.hash
		for d := range counts {
			counts[d][byte(h>>(8*d))]++
		}
	}
	var tmp []vnode
	for d := range counts {
		c := &counts[d]
		shift := 8 * d
		if c[byte(v[0].hash>>shift)] == len(v) {
			continue // every hash has the same byte d: the pass would not change the order
		}
		if tmp == nil {
			tmp = make([]vnode, len(v))
		}
		pos := 0
		for i, n := range c {
			c[i] = pos
			pos += n
		}
		for _, x := range v {
			b := byte(x.hash >> shift)
			tmp[c[b]] = x
			c[b]++
		}
		v, tmp = tmp, v
	}
	return v
}

// bucketBits returns the number of top hash bits the bucket index uses for n virtual nodes: about
// 8 positions (one cache line of hashes) per bucket.
func bucketBits(n int) uint {
	k := uint(0)
	for k < 24 && n>>(k+3) > 1 {
		k++
	}
	return k
}

func (r *Ring) buildBuckets() {
	k := bucketBits(len(r.hashes))
	r.shift = 64 - k
	nb := 1 << k
	r.buckets = make([]int32, nb+1)
	i := 0
	for b := range nb {
		r.buckets[b] = int32(i)
		for i < len(r.hashes) && r.hashes[i]>>r.shift == uint64(b) {
			i++
		}
	}
	r.buckets[nb] = int32(len(r.hashes))
}

func (r *Ring) sum(b []byte) uint64 {
	if r == nil || r.hash == nil {
		return xxh3.Hash(b)
	}
	return r.hash(b)
}

// KeyHash returns the ring's hash of key, the value OwnerIndex takes.
func (r *Ring) KeyHash(key []byte) uint64 { return r.sum(key) }

// KeyHashString is KeyHash for a string key, without converting it to []byte.
func (r *Ring) KeyHashString(key string) uint64 {
	if r == nil || r.hash == nil {
		return xxh3.HashString(key)
	}
	// The hash function must not modify or retain its argument (see WithHash), so the string's
	// bytes can be passed without a copy.
	return r.hash(unsafe.Slice(unsafe.StringData(key), len(key)))
}

// OwnerIndex returns the index into Peers of the owner of a key whose ring hash (KeyHash) is h,
// or -1 if the ring is empty. It lets a caller hash a key once and use the hash for more than
// one lookup. The owner is the peer of the first virtual node at or after h, wrapping around.
func (r *Ring) OwnerIndex(h uint64) int {
	if r == nil || len(r.hashes) == 0 {
		return -1
	}
	// Binary search for the first position >= h (equal positions: the first, see NewRing), within
	// the bucket of h. If every position of the bucket is < h, the answer is the first position
	// of a later bucket, which is hashes[hi]; past the end, the ring wraps to position 0.
	b := h >> r.shift // r.shift is 64 for a ring with one bucket: Go shifts a uint64 by 64 to 0
	lo, hi := int(r.buckets[b]), int(r.buckets[b+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		lo = 0
	}
	return int(r.owners[lo])
}

// Owner returns the peer that owns key, or ok=false if the ring is empty.
func (r *Ring) Owner(key []byte) (peer string, ok bool) {
	return r.peerAt(r.OwnerIndex(r.KeyHash(key)))
}

// OwnerString is Owner for a string key, without converting it to []byte. It returns the same
// peer as Owner([]byte(key)).
func (r *Ring) OwnerString(key string) (peer string, ok bool) {
	return r.peerAt(r.OwnerIndex(r.KeyHashString(key)))
}

// OwnerWithout returns the peer that would own key on the ring without peer: the owner of key on
// NewRing(Peers() minus peer) with the same options, found without building that ring. It is
// Owner when peer does not own key (removing a peer moves only that peer's keys), and ok=false
// when no other peer is left. A node that leaves gives each of its keys to this peer.
func (r *Ring) OwnerWithout(key []byte, peer string) (string, bool) {
	i := r.OwnerIndex(r.KeyHash(key))
	if i < 0 || r.peers[i] != peer {
		return r.peerAt(i)
	}
	if len(r.peers) == 1 {
		return "", false
	}
	// The first virtual node at or after the key's position, wrapping around, that is not peer's:
	// the one Owner would find on the ring without peer's virtual nodes.
	h := r.KeyHash(key)
	j, _ := slices.BinarySearch(r.hashes, h)
	for n := 0; n < len(r.hashes); n++ {
		k := (j + n) % len(r.hashes)
		if int(r.owners[k]) != i {
			return r.peers[r.owners[k]], true
		}
	}
	return "", false
}

func (r *Ring) peerAt(i int) (string, bool) {
	if i < 0 {
		return "", false
	}
	return r.peers[i], true
}

// Peers returns a copy of the ring's peers, sorted and deduplicated. OwnerIndex indexes it.
func (r *Ring) Peers() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.peers)
}

// Peer returns Peers()[i] without copying the peer list. It panics if i is out of range.
func (r *Ring) Peer(i int) string { return r.peers[i] }

// Len returns the number of peers.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.peers)
}

// Replicas returns the number of virtual nodes per peer.
func (r *Ring) Replicas() int {
	if r == nil {
		return DefaultReplicas
	}
	return r.replicas
}

// Contains reports whether peer is one of the ring's peers.
func (r *Ring) Contains(peer string) bool {
	if r == nil {
		return false
	}
	_, found := slices.BinarySearch(r.peers, peer)
	return found
}

// Shares returns the share of the hash space (0 to 1) each peer owns, indexed as Peers: the
// fraction of keys it owns, on average over keys. nil for an empty ring.
func (r *Ring) Shares() []float64 {
	if r == nil || len(r.peers) == 0 {
		return nil
	}
	arcs := make([]uint64, len(r.peers))
	// The owner of hashes[i] owns the arc (hashes[i-1], hashes[i]]; hashes[0]'s arc wraps
	// around from the last position (uint64 arithmetic wraps the same way).
	prev := r.hashes[len(r.hashes)-1]
	for i, h := range r.hashes {
		arcs[r.owners[i]] += h - prev
		prev = h
	}
	shares := make([]float64, len(arcs))
	if len(r.hashes) == 1 || len(r.peers) == 1 {
		shares[0] = 1 // one position, or one peer: it owns the whole space
		return shares
	}
	for i, a := range arcs {
		shares[i] = float64(a) / (1 << 64)
	}
	return shares
}
