package hash

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/zeebo/xxh3"
)

var (
	keyHashesMu sync.Mutex
	keyHashes   = map[int][]uint64{}
)

// randomKeyHashes returns the ring hashes of n random 16-byte keys, the same on every run. Each
// size is computed once and shared by the tests (read-only).
func randomKeyHashes(n int) []uint64 {
	keyHashesMu.Lock()
	defer keyHashesMu.Unlock()
	if h, ok := keyHashes[n]; ok {
		return h
	}
	rng := rand.New(rand.NewPCG(42, 4242))
	h := make([]uint64, n)
	var k [16]byte
	for i := range h {
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		h[i] = xxh3.Hash(k[:])
	}
	keyHashes[n] = h
	return h
}

// balanceKeys is the number of random keys of the balance test (fewer with -short).
func balanceKeys() int {
	if testing.Short() {
		return 200_000
	}
	return 1_000_000
}

var peerPatterns = []struct {
	name string
	f    func(i int) string
}{
	{"ip:port", func(i int) string { return fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1) }},
	{"k8s-dns", func(i int) string { return fmt.Sprintf("cache-%d.cache.svc.cluster.local:9000", i) }},
	{"url", func(i int) string { return fmt.Sprintf("http://192.168.%d.%d:8000", i/250, i%250+1) }},
	{"short", func(i int) string { return fmt.Sprintf("node%d", i) }},
}

// TestBalance checks that with DefaultReplicas the most loaded peer owns at most 1.10 times the
// mean share of random keys, for 3 to 50 peers and several peer-name patterns.
func TestBalance(t *testing.T) {
	t.Parallel()
	keys := randomKeyHashes(balanceKeys())
	patterns := peerPatterns
	if testing.Short() {
		patterns = patterns[:2]
	}
	for _, p := range patterns {
		for _, n := range []int{3, 5, 10, 20, 50} {
			t.Run(fmt.Sprintf("%s/peers=%d", p.name, n), func(t *testing.T) {
				t.Parallel()
				r := mustRing(t, namedPeers(n, p.f))
				counts := make([]int, n)
				for _, h := range keys {
					counts[r.OwnerIndex(h)]++
				}
				mean := float64(len(keys)) / float64(n)
				maxRatio := float64(slices.Max(counts)) / mean
				minRatio := float64(slices.Min(counts)) / mean
				t.Logf("%s: max/mean = %.3f, min/mean = %.3f (%d keys)", t.Name(), maxRatio, minRatio, len(keys))
				if maxRatio > 1.10 {
					t.Errorf("most loaded peer owns %.3f x the mean share, want <= 1.10", maxRatio)
				}
			})
		}
	}
}

// TestMovement checks that removing or adding one peer moves about 1/N of the keys (within 20%),
// and only keys of the removed peer or to the added peer.
func TestMovement(t *testing.T) {
	t.Parallel()
	keys := randomKeyHashes(200_000)
	for _, n := range []int{3, 5, 10, 20, 50} {
		t.Run(fmt.Sprintf("peers=%d", n), func(t *testing.T) {
			t.Parallel()
			peers := ipPeers(n)
			full := mustRing(t, peers)
			before := owners(full, keys)

			// Remove one of N peers (first, middle, last), and the reverse: add it back to N-1.
			for _, gone := range []int{0, n / 2, n - 1} {
				rest := slices.Delete(slices.Clone(peers), gone, gone+1)
				after := owners(mustRing(t, rest), keys)
				moved := 0
				for i := range keys {
					switch {
					case before[i] == peers[gone]:
						moved++
					case after[i] != before[i]:
						t.Fatalf("removing %s moved a key from %s to %s", peers[gone], before[i], after[i])
					}
				}
				checkMoved(t, fmt.Sprintf("remove %s", peers[gone]), moved, len(keys), n)
			}

			// Add a new peer to N: N+1 peers, the new one takes about 1/(N+1).
			added := "10.9.9.9:8080"
			after := owners(mustRing(t, append(slices.Clone(peers), added)), keys)
			moved := 0
			for i := range keys {
				if after[i] != before[i] {
					if after[i] != added {
						t.Fatalf("adding %s moved a key from %s to %s", added, before[i], after[i])
					}
					moved++
				}
			}
			checkMoved(t, "add "+added, moved, len(keys), n+1)
		})
	}
}

func owners(r *Ring, keys []uint64) []string {
	o := make([]string, len(keys))
	for i, h := range keys {
		o[i] = r.Peer(r.OwnerIndex(h))
	}
	return o
}

func checkMoved(t *testing.T, what string, moved, total, n int) {
	t.Helper()
	frac := float64(moved) / float64(total)
	ideal := 1 / float64(n)
	t.Logf("%s: %s: moved %.4f of keys, 1/N = %.4f (ratio %.3f)", t.Name(), what, frac, ideal, frac/ideal)
	if frac < 0.8*ideal || frac > 1.2*ideal {
		t.Errorf("%s: moved %.4f of keys, want 1/%d = %.4f within 20%%", what, frac, n, ideal)
	}
}

// TestInputOrder checks that the order of the input and duplicates do not change the ring.
func TestInputOrder(t *testing.T) {
	t.Parallel()
	peers := ipPeers(20)
	want := mustRing(t, peers)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 10 {
		in := slices.Clone(peers)
		in = append(in, peers[:i]...) // duplicates
		rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
		got := mustRing(t, in)
		if !slices.Equal(got.peers, want.peers) || !slices.Equal(got.hashes, want.hashes) ||
			!slices.Equal(got.owners, want.owners) {
			t.Fatalf("shuffled input %q gives a different ring", in)
		}
	}
}

// reference is a linear-scan owner lookup over the virtual nodes, computed independently of the
// sorted slices: the virtual node with the smallest position >= h (the smallest position overall
// if there is none), ties going to the smaller peer name.
func reference(peers []string, replicas int, hash func([]byte) uint64, h uint64) string {
	slices.Sort(peers)
	peers = slices.Compact(peers)
	var best, first string
	var bestPos, firstPos uint64
	found := false
	for _, p := range peers {
		for j := range replicas {
			v := hash(append([]byte(p), byte(j>>24), byte(j>>16), byte(j>>8), byte(j)))
			if first == "" || v < firstPos || (v == firstPos && p < first) {
				first, firstPos = p, v
			}
			if v >= h && (!found || v < bestPos || (v == bestPos && p < best)) {
				best, bestPos, found = p, v, true
			}
		}
	}
	if !found {
		return first
	}
	return best
}

// coarseHash has only 16 distinct values, so virtual nodes of different peers collide.
func coarseHash(b []byte) uint64 { return xxh3.Hash(b) & 0xf000_0000_0000_0000 }

func TestAgainstReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	hashes := []struct {
		name string
		f    func([]byte) uint64
	}{{"xxh3", xxh3.Hash}, {"coarse", coarseHash}}
	for _, hf := range hashes {
		t.Run(hf.name, func(t *testing.T) {
			for range 50 {
				n := 1 + rng.IntN(8)
				replicas := 1 + rng.IntN(16)
				peers := make([]string, n)
				for i := range peers {
					peers[i] = fmt.Sprintf("p%d", rng.IntN(12)) // duplicates likely
				}
				r := mustRing(t, peers, WithReplicas(replicas), WithHash(hf.f))
				probes := []uint64{0, 1, math.MaxUint64, math.MaxUint64 - 1}
				for _, v := range r.hashes {
					probes = append(probes, v, v-1, v+1)
				}
				for range 100 {
					probes = append(probes, rng.Uint64())
				}
				for _, h := range probes {
					got := r.Peer(r.OwnerIndex(h))
					if want := reference(slices.Clone(peers), replicas, hf.f, h); got != want {
						t.Fatalf("peers %q replicas %d: owner of %#x = %q, reference %q",
							peers, replicas, h, got, want)
					}
				}
			}
		})
	}
}

// TestTies checks that colliding virtual nodes of different peers are resolved the same way
// whatever the input order, and that removing a peer still moves only its keys.
func TestTies(t *testing.T) {
	t.Parallel()
	peers := []string{"a", "b", "c", "d", "e", "f"}
	want := mustRing(t, peers, WithReplicas(8), WithHash(coarseHash))
	if len(slices.Compact(slices.Clone(want.hashes))) >= len(want.hashes) {
		t.Fatal("coarse hash produced no collisions")
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 10 {
		in := slices.Clone(peers)
		rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
		got := mustRing(t, in, WithReplicas(8), WithHash(coarseHash))
		if !slices.Equal(got.hashes, want.hashes) || !slices.Equal(got.owners, want.owners) {
			t.Fatal("ties resolved differently for a different input order")
		}
	}
	keys := randomKeyHashes(10_000)
	before := make([]string, len(keys))
	for i, h := range keys {
		before[i] = want.Peer(want.OwnerIndex(h & 0xf000_0000_0000_0000))
	}
	for gone := range peers {
		rest := slices.Delete(slices.Clone(peers), gone, gone+1)
		r := mustRing(t, rest, WithReplicas(8), WithHash(coarseHash))
		for i, h := range keys {
			after := r.Peer(r.OwnerIndex(h & 0xf000_0000_0000_0000))
			if before[i] != peers[gone] && after != before[i] {
				t.Fatalf("removing %s moved a key from %s to %s", peers[gone], before[i], after)
			}
		}
	}
}

func TestWrapAround(t *testing.T) {
	t.Parallel()
	r := mustRing(t, ipPeers(5))
	first := int(r.owners[0])
	last := r.hashes[len(r.hashes)-1]
	for _, h := range []uint64{0, r.hashes[0], last + 1, math.MaxUint64} {
		if got := r.OwnerIndex(h); got != first {
			t.Errorf("OwnerIndex(%#x) = %d, want the first virtual node's owner %d", h, got, first)
		}
	}
	if got := r.OwnerIndex(last); got != int(r.owners[len(r.owners)-1]) {
		t.Errorf("OwnerIndex(last position) = %d, want %d", got, r.owners[len(r.owners)-1])
	}
}

func TestCustomHash(t *testing.T) {
	t.Parallel()
	calls := 0
	h := func(b []byte) uint64 { calls++; return xxh3.Hash(b) ^ 0x5555 }
	r := mustRing(t, ipPeers(10), WithHash(h), WithReplicas(64))
	if calls != 10*64 {
		t.Errorf("hash called %d times for 640 virtual nodes", calls)
	}
	if r.Replicas() != 64 {
		t.Errorf("Replicas = %d", r.Replicas())
	}
	for _, k := range sampleKeys {
		if r.KeyHash([]byte(k)) != xxh3.HashString(k)^0x5555 || r.KeyHashString(k) != xxh3.HashString(k)^0x5555 {
			t.Fatalf("key hash of %q does not use the custom hash", k)
		}
		a, _ := r.Owner([]byte(k))
		b, _ := r.OwnerString(k)
		if a != b || a != r.Peer(r.OwnerIndex(xxh3.HashString(k)^0x5555)) {
			t.Fatalf("owners of %q differ: %q %q", k, a, b)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	key := []byte("user:1234567")
	skey := "user:1234567"
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"default", nil}, {"custom hash", []Option{WithHash(func(b []byte) uint64 { return xxh3.Hash(b) })}}} {
		for _, n := range []int{0, 1, 3, 50} {
			r := mustRing(t, ipPeers(n), tc.opts...)
			ops := map[string]func(){
				"Owner":         func() { r.Owner(key) },
				"OwnerString":   func() { r.OwnerString(skey) },
				"OwnerIndex":    func() { r.OwnerIndex(12345) },
				"KeyHash":       func() { r.KeyHash(key) },
				"KeyHashString": func() { r.KeyHashString(skey) },
				"Contains":      func() { r.Contains("10.0.0.2:8080") },
				"Len":           func() { r.Len() },
			}
			for name, f := range ops {
				if a := testing.AllocsPerRun(1000, f); a != 0 {
					t.Errorf("%s/peers=%d: %s allocates %.1f times per call", tc.name, n, name, a)
				}
			}
		}
	}
}

func TestConcurrentLookups(t *testing.T) {
	t.Parallel()
	r := mustRing(t, ipPeers(10))
	keys := randomKeyHashes(10_000)
	want := owners(r, keys)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(keys); i += 8 {
				if got := r.Peer(r.OwnerIndex(keys[i])); got != want[i] {
					t.Errorf("concurrent lookup %d = %q, want %q", i, got, want[i])
					return
				}
				_, _ = r.OwnerString(sampleKeys[i%len(sampleKeys)])
				_ = r.Contains(want[i])
			}
		})
	}
	wg.Wait()
}

var sampleKeys = []string{"", "a", "user:42", "profile:alice", "\x00\xff", "日本語キー", string(make([]byte, 300))}

func TestSortVnodes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	// Masks make many hashes equal, or equal in some bytes, so that skipped passes and
	// stability are exercised.
	for _, mask := range []uint64{math.MaxUint64, 0xff, 0xff00_ff00_0000_0000, 0xf000_0000_0000_000f, 0} {
		for _, n := range []int{0, 1, 2, 3, 100, 10_000} {
			in := make([]vnode, n)
			for i := range in {
				in[i] = vnode{hash: rng.Uint64() & mask, peer: int32(i / 7)}
			}
			want := slices.Clone(in)
			slices.SortStableFunc(want, func(a, b vnode) int {
				switch {
				case a.hash < b.hash:
					return -1
				case a.hash > b.hash:
					return 1
				}
				return 0
			})
			if got := sortVnodes(in); !slices.Equal(got, want) {
				t.Fatalf("mask %#x, n %d: radix sort differs from a stable sort", mask, n)
			}
		}
	}
}

func TestBuckets(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 8, 16, 17, 100, 1000, 102_400} {
		r := mustRing(t, []string{"a"}, WithReplicas(1)) // shape only; fill in synthetic positions
		rng := rand.New(rand.NewPCG(uint64(n), 0))
		r.hashes = make([]uint64, n)
		for i := range r.hashes {
			r.hashes[i] = rng.Uint64()
		}
		slices.Sort(r.hashes)
		r.owners = make([]int32, n)
		r.buildBuckets()
		if len(r.buckets) != 1<<(64-r.shift)+1 || r.buckets[0] != 0 || int(r.buckets[len(r.buckets)-1]) != n {
			t.Fatalf("n=%d: bad bucket table shape (shift %d, %d entries)", n, r.shift, len(r.buckets))
		}
		for b := range len(r.buckets) - 1 {
			for i := r.buckets[b]; i < r.buckets[b+1]; i++ {
				if r.hashes[i]>>r.shift != uint64(b) {
					t.Fatalf("n=%d: position %d (%#x) in bucket %d", n, i, r.hashes[i], b)
				}
			}
		}
		if per := float64(n) / float64(len(r.buckets)-1); n >= 16 && (per < 8 || per > 16) {
			t.Errorf("n=%d: %.1f positions per bucket", n, per)
		}
	}
}

// TestOwnerWithout checks OwnerWithout against the ring built without the peer, with and without
// ties between positions, including wrap-around and a ring of one peer.
func TestOwnerWithout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		peers []string
		opts  []Option
	}{
		{"ties", []string{"a", "b", "c", "d", "e", "f"}, []Option{WithReplicas(8), WithHash(coarseHash)}},
		{"default", ipPeers(5), nil},
		{"two", ipPeers(2), []Option{WithReplicas(4)}},
	} {
		full := mustRing(t, tc.peers, tc.opts...)
		moved := 0 // keys whose owner was the peer left out: those OwnerWithout must move
		for gone := range tc.peers {
			rest := mustRing(t, slices.Delete(slices.Clone(tc.peers), gone, gone+1), tc.opts...)
			for i := range 5_000 {
				key := []byte(fmt.Sprintf("key-%d", i))
				want, _ := rest.Owner(key)
				got, ok := full.OwnerWithout(key, tc.peers[gone])
				if !ok || got != want {
					t.Fatalf("%s: OwnerWithout(%q, %s) = %q, %v; the ring without it says %q", tc.name, key, tc.peers[gone], got, ok, want)
				}
				if owner, _ := full.Owner(key); owner == tc.peers[gone] {
					moved++
				}
			}
		}
		if moved < 5_000 {
			t.Fatalf("%s: %d keys checked that move", tc.name, moved)
		}
	}
	one := mustRing(t, []string{"a"})
	if p, ok := one.OwnerWithout([]byte("k"), "a"); ok {
		t.Fatalf("OwnerWithout on a ring of the peer alone = %q, true", p)
	}
	if p, ok := one.OwnerWithout([]byte("k"), "z"); !ok || p != "a" {
		t.Fatalf("OwnerWithout of a peer not on the ring = %q, %v; want a", p, ok)
	}
}
