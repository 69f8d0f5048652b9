package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"
)

// measureGetMany compares, on the measuring node of a 3-process cluster, one GetMany of batch
// remote keys (values of size bytes, already cached on their owners; the measuring node keeps no
// copy) with batch sequential Gets of the same keys, one caller, for d each, rounds times. It
// returns the batches per second of each and the median of the per-round ratios.
func measureGetMany(size, batch, rounds int, d time.Duration) (many, seq, ratio float64) {
	var manys, seqs, ratios []float64
	for range rounds {
		c := newOurs(size, "")
		idx := c.remoteKeys(*keysFlag)
		keys := make([]string, len(idx))
		ctx := context.Background()
		for i, k := range idx {
			keys[i] = keyName(k)
			if _, err := c.local.cache.Get(ctx, keys[i]); err != nil { // fills the owner
				log.Fatalf("getmany: warm-up: %v", err)
			}
		}
		window := func(i int) []string {
			off := (i * batch) % (len(keys) - batch)
			return keys[off : off+batch]
		}
		rate := func(one func([]string)) float64 {
			for i := range 20 { // settle the connections
				one(window(i))
			}
			n := 0
			start := time.Now()
			for time.Since(start) < d {
				one(window(n))
				n++
			}
			return float64(n) / time.Since(start).Seconds()
		}
		m := rate(func(ks []string) {
			for _, r := range c.local.cache.GetMany(ctx, ks) {
				if r.Err != nil {
					log.Fatalf("getmany: %v", r.Err)
				}
			}
		})
		s := rate(func(ks []string) {
			for _, k := range ks {
				if _, err := c.local.cache.Get(ctx, k); err != nil {
					log.Fatalf("get: %v", err)
				}
			}
		})
		c.close()
		manys, seqs, ratios = append(manys, m), append(seqs, s), append(ratios, m/s)
	}
	med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	return med(manys), med(seqs), med(ratios)
}

func printGetMany(sizes []int) {
	fmt.Printf("\nGetMany of %d remote keys against %d sequential Gets of the same keys, 1 caller, on the measuring node (%d rounds of %v each; medians)\n\n",
		*batchFlag, *batchFlag, *roundsFlag, *duration)
	fmt.Println("| value | GetMany batches/s | sequential batches/s | ratio |")
	fmt.Println("|---|---|---|---|")
	for _, size := range sizes {
		m, s, r := measureGetMany(size, *batchFlag, *roundsFlag, *duration)
		fmt.Printf("| %s | %.0f | %.0f | %.2f |\n", sizeName(size), m, s, r)
	}
}
