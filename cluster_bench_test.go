package groupcache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/peer"
)

// BenchmarkRemoteHit measures a Get of a key owned by another node of an in-process cluster and
// already cached there; the asking node keeps no copy. The "view" variant asks with View, whose
// remote hits read into reused memory. The "ttl" variant is "cache" for entries with a TTL,
// whose remaining lifetime travels with them. The "transport" variant asks the owner
// through a bare peer.Client, to separate the cache's own cost from the transport's.
func BenchmarkRemoteHit(b *testing.B) {
	cl := testcluster.Start(b, 2)
	caches := benchCaches(b, cl)
	withTTL := namedBenchCaches(b, cl, "bt", groupcache.WithTTL(time.Hour))
	var keys []string
	for i := 0; len(keys) < 256; i++ {
		k := strconv.Itoa(i)
		if ownerOf(b, cl, k) == 1 {
			keys = append(keys, k)
			caches[0].Get(context.Background(), k)
			withTTL[0].Get(context.Background(), k)
		}
	}
	ctx := context.Background()
	b.Run("cache", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := caches[0].Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ttl", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := withTTL[0].Get(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := caches[0].View(ctx, keys[i%len(keys)], func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transport", func(b *testing.B) {
		client, err := peer.NewClient()
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := client.Get(ctx, cl.Addrs[1], "b", []byte(keys[i%len(keys)])); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetMany compares, on an in-process cluster of 3 nodes, one GetMany of 100 keys owned
// by the two other nodes (1 KiB values, already cached there; the asking node keeps no copy)
// with 100 sequential Gets of the same keys. One op is 100 keys either way.
func BenchmarkGetMany(b *testing.B) {
	cl := testcluster.Start(b, 3)
	caches := benchCaches(b, cl)
	ctx := context.Background()
	var keys []string
	for i := 0; len(keys) < 1000; i++ {
		k := strconv.Itoa(i)
		if ownerOf(b, cl, k) != 0 {
			keys = append(keys, k)
			caches[0].Get(ctx, k)
		}
	}
	b.Run("GetMany-100", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			off := (i * 100) % (len(keys) - 100)
			for _, r := range caches[0].GetMany(ctx, keys[off:off+100]) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
	b.Run("Get-x100", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			off := (i * 100) % (len(keys) - 100)
			for _, k := range keys[off : off+100] {
				if _, err := caches[0].Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// benchCaches makes a cache "b" of 1 KiB values on every node of cl; node 0 keeps no hot copies,
// so each Get there of a key owned elsewhere is a remote hit.
func benchCaches(b *testing.B, cl *testcluster.Cluster) []*groupcache.Cache[string, []byte] {
	return namedBenchCaches(b, cl, "b")
}

// namedBenchCaches is benchCaches for a cache of another name, with extra options.
func namedBenchCaches(b *testing.B, cl *testcluster.Cluster, name string, extra ...groupcache.Option) []*groupcache.Cache[string, []byte] {
	value := make([]byte, 1024)
	var caches []*groupcache.Cache[string, []byte]
	for i, n := range cl.Nodes {
		opts := append([]groupcache.Option{groupcache.WithNode(n), groupcache.WithCodec(codec.Bytes())}, extra...)
		if i == 0 {
			opts = append(opts, groupcache.WithHotFraction(0))
		}
		c := groupcache.MustNew[string, []byte](name, groupcache.LoaderFunc[string, []byte](
			func(context.Context, string) ([]byte, error) { return value, nil }), opts...)
		b.Cleanup(func() { c.Close() })
		caches = append(caches, c)
	}
	return caches
}
