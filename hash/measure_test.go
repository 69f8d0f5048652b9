package hash

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// exactShares returns each peer's share of the hash space (fractions summing to 1), from the
// arc lengths: virtual node i owns the arc (hashes[i-1], hashes[i]].
func exactShares(r *Ring) []float64 {
	s := make([]float64, len(r.peers))
	n := len(r.hashes)
	for i := range n {
		prev := r.hashes[(i+n-1)%n]
		arc := r.hashes[i] - prev // wraps for i == 0
		if n == 1 {
			arc = 0
		}
		s[r.owners[i]] += float64(arc) / (1 << 64)
	}
	if n == 1 {
		s[0] = 1
	}
	return s
}

func maxOverMean(s []float64) float64 {
	var sum float64
	for _, v := range s {
		sum += v
	}
	return slices.Max(s) / (sum / float64(len(s)))
}

// TestMeasureReplicas prints, for several replica counts, the exact share of the hash space owned
// by the most loaded peer relative to the mean (max/mean), for 3 to 50 peers: for each peer-name
// pattern of the balance test, and the median, 99th percentile and maximum over 200 sets of
// random peer names. The exact shares come from the arc lengths between virtual nodes, so they
// carry no key-sampling noise. DefaultReplicas was chosen from this table (see doc.go). Run with
//
//	HASH_MEASURE=1 go test -run TestMeasureReplicas -v ./hash/
func TestMeasureReplicas(t *testing.T) {
	t.Parallel()
	if os.Getenv("HASH_MEASURE") == "" {
		t.Skip("set HASH_MEASURE=1 to print the replica measurements")
	}
	sizes := []int{3, 5, 10, 20, 50}
	for _, v := range []int{128, 256, 512, 1024, 2048, 4096} {
		fmt.Printf("replicas=%d\n", v)
		for _, n := range sizes {
			line := fmt.Sprintf("  n=%2d", n)
			for _, p := range peerPatterns {
				peers := make([]string, n)
				for i := range peers {
					peers[i] = p.f(i)
				}
				r, _ := NewRing(peers, WithReplicas(v))
				line += fmt.Sprintf(" %s=%.3f", p.name, maxOverMean(exactShares(r)))
			}
			// Random name sets.
			rng := rand.New(rand.NewPCG(uint64(n), uint64(v)))
			const trials = 200
			res := make([]float64, trials)
			for k := range trials {
				peers := make([]string, n)
				for i := range peers {
					peers[i] = fmt.Sprintf("%016x:%d", rng.Uint64(), rng.IntN(65536))
				}
				r, _ := NewRing(peers, WithReplicas(v))
				res[k] = maxOverMean(exactShares(r))
			}
			slices.Sort(res)
			line += fmt.Sprintf(" | random p50=%.3f p99=%.3f max=%.3f", res[trials/2], res[trials*99/100], res[trials-1])
			fmt.Println(line)
		}
	}
}
