//go:build !race

package groupcache_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/testcluster"
)

// TestViewReusesMemory checks that a remote hit through View costs no new memory for the value,
// where Get's costs the value's size: the bytes allocated by the whole process (both nodes run in
// it) over 200 remote hits of values from 1 to 64 KiB. (Not under the race detector, whose
// sync.Pool drops a share of what it is given.)
func TestViewReusesMemory(t *testing.T) {
	cl := testcluster.Start(t, 2)
	var loads atomic.Int64
	caches := viewCaches(t, cl, &loads, groupcache.WithHotFraction(0))
	var keys []string
	var total int
	for i := 0; len(keys) < 20; i++ {
		k := "k" + strconv.Itoa(i)
		if ownerOf(t, cl, k) == 1 {
			keys = append(keys, k)
			total += len(viewValue(k))
		}
	}
	ctx := context.Background()
	perHit := func(get func(k string)) float64 {
		for _, k := range keys {
			get(k) // the owner loads, the pool fills
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			for _, k := range keys {
				get(k)
			}
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / float64(10*len(keys))
	}
	view := perHit(func(k string) {
		if err := checkView(caches[0], k); err != nil {
			t.Fatal(err)
		}
	})
	get := perHit(func(k string) {
		if _, err := caches[0].Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	})
	mean := float64(total) / float64(len(keys))
	t.Logf("mean value %.0f bytes; allocated per remote hit: View %.0f bytes, Get %.0f bytes", mean, view, get)
	if get < mean {
		t.Fatalf("Get allocated %.0f bytes per hit, less than its values (%.0f): the measure is broken", get, mean)
	}
	if view > mean/8 {
		t.Fatalf("View allocated %.0f bytes per remote hit of %.0f-byte values", view, mean)
	}
}
