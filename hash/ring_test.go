package hash

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

func mustRing(t testing.TB, peers []string, opts ...Option) *Ring {
	t.Helper()
	r, err := NewRing(peers, opts...)
	if err != nil {
		t.Fatalf("NewRing(%q): %v", peers, err)
	}
	return r
}

func namedPeers(n int, f func(int) string) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = f(i)
	}
	return p
}

func ipPeers(n int) []string {
	return namedPeers(n, func(i int) string { return fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1) })
}

func TestNewRing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		peers     []string
		opts      []Option
		wantErr   error
		wantPeers []string
	}{
		{name: "nil", peers: nil, wantPeers: []string{}},
		{name: "empty", peers: []string{}, wantPeers: []string{}},
		{name: "one", peers: []string{"a:1"}, wantPeers: []string{"a:1"}},
		{name: "many", peers: []string{"c", "a", "b", "e", "d"}, wantPeers: []string{"a", "b", "c", "d", "e"}},
		{name: "duplicates", peers: []string{"b", "a", "b", "a", "a"}, wantPeers: []string{"a", "b"}},
		{name: "all duplicates", peers: []string{"x", "x", "x"}, wantPeers: []string{"x"}},
		{name: "binary names", peers: []string{"\x00", "\xff\xfe", "a\x00b"}, wantPeers: []string{"\x00", "a\x00b", "\xff\xfe"}},
		{name: "empty name", peers: []string{"a", ""}, wantErr: ErrInvalid},
		{name: "only empty name", peers: []string{""}, wantErr: ErrInvalid},
		{name: "replicas 1", peers: []string{"a", "b"}, opts: []Option{WithReplicas(1)}, wantPeers: []string{"a", "b"}},
		{name: "replicas max", peers: []string{"a"}, opts: []Option{WithReplicas(MaxReplicas)}, wantPeers: []string{"a"}},
		{name: "replicas 0", peers: []string{"a"}, opts: []Option{WithReplicas(0)}, wantErr: ErrInvalid},
		{name: "replicas negative", peers: []string{"a"}, opts: []Option{WithReplicas(-1)}, wantErr: ErrInvalid},
		{name: "replicas too many", peers: []string{"a"}, opts: []Option{WithReplicas(MaxReplicas + 1)}, wantErr: ErrInvalid},
		{name: "nil hash", peers: []string{"a"}, opts: []Option{WithHash(nil)}, wantErr: ErrInvalid},
		{name: "nil option ignored", peers: []string{"a"}, opts: []Option{nil}, wantPeers: []string{"a"}},
		{name: "too many virtual nodes", peers: ipPeers(1 << 15), opts: []Option{WithReplicas(MaxReplicas)}, wantErr: ErrInvalid},
		{name: "custom hash", peers: []string{"b", "a"}, opts: []Option{WithHash(xxh3.Hash)}, wantPeers: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRing(tt.peers, tt.opts...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "hash: ") {
					t.Errorf("error %q does not start with \"hash: \"", err)
				}
				if r != nil {
					t.Errorf("ring = %v, want nil on error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Peers(); len(got) != len(tt.wantPeers) || !slices.Equal(got, tt.wantPeers) {
				t.Fatalf("Peers = %q, want %q", got, tt.wantPeers)
			}
			if r.Len() != len(tt.wantPeers) {
				t.Errorf("Len = %d, want %d", r.Len(), len(tt.wantPeers))
			}
			if want := len(tt.wantPeers) * r.Replicas(); len(r.hashes) != want || len(r.owners) != want {
				t.Errorf("%d/%d virtual nodes, want %d", len(r.hashes), len(r.owners), want)
			}
			for i, p := range tt.wantPeers {
				if !r.Contains(p) {
					t.Errorf("Contains(%q) = false", p)
				}
				if r.Peer(i) != p {
					t.Errorf("Peer(%d) = %q, want %q", i, r.Peer(i), p)
				}
			}
			if r.Contains("not-a-peer") || r.Contains("") {
				t.Error("Contains reports a peer that is not in the ring")
			}
			for _, key := range []string{"", "k", "user:42", strings.Repeat("x", 1000)} {
				p, ok := r.OwnerString(key)
				p2, ok2 := r.Owner([]byte(key))
				if p != p2 || ok != ok2 {
					t.Errorf("OwnerString(%q) = %q,%v; Owner = %q,%v", key, p, ok, p2, ok2)
				}
				idx := r.OwnerIndex(r.KeyHash([]byte(key)))
				if len(tt.wantPeers) == 0 {
					if ok || p != "" || idx != -1 {
						t.Errorf("empty ring: Owner(%q) = %q,%v, OwnerIndex = %d", key, p, ok, idx)
					}
					continue
				}
				if !ok || !r.Contains(p) || idx < 0 || r.Peer(idx) != p {
					t.Errorf("Owner(%q) = %q,%v, OwnerIndex = %d", key, p, ok, idx)
				}
				if len(tt.wantPeers) == 1 && p != tt.wantPeers[0] {
					t.Errorf("one-peer ring: Owner(%q) = %q", key, p)
				}
			}
		})
	}
}

func TestPeersIsACopy(t *testing.T) {
	t.Parallel()
	r := mustRing(t, []string{"a", "b"})
	p := r.Peers()
	p[0] = "zzz"
	if r.Peer(0) != "a" {
		t.Fatal("modifying the result of Peers changed the ring")
	}
	in := []string{"b", "a"}
	r = mustRing(t, in)
	in[0] = "zzz"
	if !slices.Equal(r.Peers(), []string{"a", "b"}) {
		t.Fatal("modifying the input slice changed the ring")
	}
}

func TestNilRing(t *testing.T) {
	t.Parallel()
	var r *Ring
	if p, ok := r.Owner([]byte("k")); ok || p != "" {
		t.Errorf("Owner = %q, %v", p, ok)
	}
	if p, ok := r.OwnerString("k"); ok || p != "" {
		t.Errorf("OwnerString = %q, %v", p, ok)
	}
	if r.OwnerIndex(1) != -1 || r.Len() != 0 || r.Peers() != nil || r.Contains("a") {
		t.Error("nil ring is not empty")
	}
	if r.KeyHash([]byte("k")) != xxh3.HashString("k") || r.KeyHashString("k") != xxh3.HashString("k") {
		t.Error("nil ring does not use the default hash")
	}
	if r.Replicas() != DefaultReplicas {
		t.Errorf("Replicas = %d", r.Replicas())
	}
}

// TestPinnedOwners pins the owners of fixed keys on a fixed peer set. The values are part of the
// cluster protocol: every process, on every architecture and every version of this package, must
// pick the same owner. If this test fails, hashing or placement changed; that is a breaking
// change for mixed-version clusters and must be deliberate.
func TestPinnedOwners(t *testing.T) {
	t.Parallel()
	peers := []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.5:8080"}
	pinned := []struct{ key, owner string }{
		{"", "10.0.0.5:8080"},
		{"a", "10.0.0.2:8080"},
		{"user:42", "10.0.0.2:8080"},
		{"user:43", "10.0.0.3:8080"},
		{"session/8f14e45f", "10.0.0.2:8080"},
		{"profile:alice", "10.0.0.5:8080"},
		{"profile:bob", "10.0.0.4:8080"},
		{"img/2024/01/cat.jpg", "10.0.0.2:8080"},
		{"\x00", "10.0.0.4:8080"},
		{"\x00\x01\x02\x03\x04\x05\x06\a", "10.0.0.5:8080"},
		{"groupcache", "10.0.0.4:8080"},
		{strings.Repeat("k", 100), "10.0.0.5:8080"},
		{"order-000001", "10.0.0.5:8080"},
		{"order-000002", "10.0.0.2:8080"},
		{"order-999999", "10.0.0.4:8080"},
		{"日本語キー", "10.0.0.1:8080"},
		{"tenant=7;id=19", "10.0.0.1:8080"},
		{"https://example.com/a?b=c", "10.0.0.1:8080"},
		{"0", "10.0.0.2:8080"},
		{strings.Repeat("x", 300), "10.0.0.1:8080"},
	}
	r := mustRing(t, peers)
	for _, p := range pinned {
		if got, _ := r.OwnerString(p.key); got != p.owner {
			t.Errorf("OwnerString(%q) = %q, pinned %q", p.key, got, p.owner)
		}
		if got, _ := r.Owner([]byte(p.key)); got != p.owner {
			t.Errorf("Owner(%q) = %q, pinned %q", p.key, got, p.owner)
		}
	}

	// The hash and the virtual node encoding, pinned directly: XXH3-64 (seed 0) of the key, and
	// of the peer name followed by the replica index as 4 big-endian bytes.
	if got := r.KeyHash([]byte("user:42")); got != 0x9fc1e605fa7174aa {
		t.Errorf("KeyHash(user:42) = %#x", got)
	}
	if got := r.KeyHashString(strings.Repeat("x", 300)); got != 0xa5d1b4607dc83554 {
		t.Errorf("KeyHashString(x*300) = %#x", got)
	}
	vn := append([]byte("10.0.0.3:8080"), 0x00, 0x00, 0x01, 0x02) // replica 258
	if h := xxh3.Hash(vn); h != 0x9424790814983b0d {
		t.Errorf("xxh3 of virtual node 258 of 10.0.0.3:8080 = %#x", h)
	}
	i, found := slices.BinarySearch(r.hashes, 0x9424790814983b0d)
	if !found || r.Peer(int(r.owners[i])) != "10.0.0.3:8080" {
		t.Errorf("no virtual node of 10.0.0.3:8080 at %#x", uint64(0x9424790814983b0d))
	}
	if r.hashes[0] != 0xe0ccf0f68293f || r.Peer(int(r.owners[0])) != "10.0.0.3:8080" {
		t.Errorf("first virtual node = %#x owned by %q", r.hashes[0], r.Peer(int(r.owners[0])))
	}
}

func TestShares(t *testing.T) {
	if s := (*Ring)(nil).Shares(); s != nil {
		t.Fatalf("nil ring: %v", s)
	}
	one, _ := NewRing([]string{"a"})
	if s := one.Shares(); len(s) != 1 || s[0] != 1 {
		t.Fatalf("one peer: %v", s)
	}
	peers := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	r, err := NewRing(peers)
	if err != nil {
		t.Fatal(err)
	}
	shares := r.Shares()
	// The shares add up to 1 and match the owners of many keys.
	counts := make([]int, len(peers))
	const keys = 200_000
	for i := range keys {
		counts[r.OwnerIndex(r.KeyHashString(strconv.Itoa(i)))]++
	}
	var sum float64
	for i, s := range shares {
		sum += s
		if got := float64(counts[i]) / keys; math.Abs(got-s) > 0.01 {
			t.Errorf("peer %s: share %.4f, owns %.4f of the keys", r.Peer(i), s, got)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("shares add up to %v", sum)
	}
}
