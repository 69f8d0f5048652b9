// Command quickstart shows a typed loading cache on one process: a slow "database", many
// concurrent readers, one load per key, and the cache's statistics.
package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache"
)

type UserID int64

type Profile struct {
	Name  string
	Email string
}

func main() {
	var dbQueries atomic.Int64
	db := func(ctx context.Context, id UserID) (Profile, error) {
		dbQueries.Add(1)
		select { // a slow query
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return Profile{}, ctx.Err()
		}
		if id%100 == 0 {
			return Profile{}, fmt.Errorf("user %d: %w", id, groupcache.ErrNotFound)
		}
		return Profile{Name: fmt.Sprintf("user-%d", id), Email: fmt.Sprintf("u%d@example.com", id)}, nil
	}

	users, err := groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](db),
		groupcache.WithMaxBytes(1<<20),
		groupcache.WithTTL(time.Minute),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()
	ctx := context.Background()

	fmt.Println("1. 100 goroutines ask for user 42 at the same moment:")
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := users.Get(ctx, 42); err != nil {
				log.Fatal(err)
			}
		}()
	}
	wg.Wait()
	p, _ := users.Get(ctx, 42)
	fmt.Printf("   got %+v\n   database queries: %d (one load, shared by every caller)\n", p, dbQueries.Load())

	fmt.Println("2. 8 goroutines read 10,000 times from 500 users, skewed towards a few:")
	start := time.Now()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			z := rand.NewZipf(r, 1.1, 1, 499)
			for range 10_000 {
				users.Get(ctx, UserID(z.Uint64()+1))
			}
		}()
	}
	wg.Wait()
	st := users.Stats()
	fmt.Printf("   %d gets in %v: %d hits, %d misses, %d loads, %d deduplicated waiters\n",
		st.Gets, time.Since(start).Round(time.Millisecond), st.Hits, st.Misses, st.Loads, st.Deduplicated)
	fmt.Printf("   database queries: %d; load errors (not found, not cached): %d\n", dbQueries.Load(), st.LoadErrors)
	fmt.Printf("   memory: %d items, %d of %d bytes, %d evictions\n", st.Items, st.Bytes, st.MaxBytes, st.Evictions)
}
