package hash

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchKeys returns n random keys of 8 to 40 bytes, the same on every run.
func benchKeys(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, 8+rng.IntN(33))
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		keys[i] = k
	}
	return keys
}

func benchRing(b *testing.B, n int, opts ...Option) *Ring {
	b.Helper()
	peers := make([]string, n)
	for i := range peers {
		peers[i] = fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)
	}
	r, err := NewRing(peers, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

var benchSizes = []int{3, 10, 50}

// sink keeps results alive so the compiler cannot drop the lookups.
var sink string

func BenchmarkOwner(b *testing.B) {
	keys := benchKeys(4096)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			r := benchRing(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p, _ := r.Owner(keys[i&4095])
				sink = p
				i++
			}
		})
	}
}

func BenchmarkOwnerString(b *testing.B) {
	raw := benchKeys(4096)
	keys := make([]string, len(raw))
	for i, k := range raw {
		keys[i] = string(k)
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			r := benchRing(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p, _ := r.OwnerString(keys[i&4095])
				sink = p
				i++
			}
		})
	}
}

// BenchmarkOwnerIndex measures the search alone, on precomputed key hashes.
func BenchmarkOwnerIndex(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	hashes := make([]uint64, 4096)
	for i := range hashes {
		hashes[i] = rng.Uint64()
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			r := benchRing(b, n)
			b.ReportAllocs()
			i, s := 0, 0
			for b.Loop() {
				s += r.OwnerIndex(hashes[i&4095])
				i++
			}
			sink = r.Peer(s % n)
		})
	}
}

func BenchmarkNewRing(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		peers := make([]string, n)
		for i := range peers {
			peers[i] = fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)
		}
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewRing(peers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
