package localcache

import (
	"context"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/store"
)

// groupcacheCache drives the root groupcache.Cache[K, int] (the whole Get path: closed check,
// main store, stats) through the Cache interface. It is a loading cache: a Get that misses loads
// the value itself (the loader answers 1), so Set has nothing to do. It takes part in throughput
// runs only; its hit ratio is the store's.
type groupcacheCache[K Key] struct{ c *groupcache.Cache[K, int] }

// newGroupcache makes a cache for about capacity entries: each costs 1 (its sizer) plus its
// encoded key plus the store's entry overhead; keys are taken at 8 bytes.
func newGroupcache[K Key](capacity int, _ bool) Cache[K] {
	c, err := groupcache.New[K, int]("bench",
		groupcache.LoaderFunc[K, int](func(context.Context, K) (int, error) { return 1, nil }),
		groupcache.WithMaxBytes(int64(capacity)*(1+8+store.EntryOverhead)),
		groupcache.WithSizer(func(int) int64 { return 1 }))
	if err != nil {
		panic(err)
	}
	return groupcacheCache[K]{c}
}

func (c groupcacheCache[K]) Get(k K) (int, bool) {
	v, err := c.c.Get(context.Background(), k)
	return v, err == nil
}

func (c groupcacheCache[K]) Set(K, int) {}
