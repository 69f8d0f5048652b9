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
	db := new(database)
	users, err := groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](db.load),
		groupcache.WithMaxBytes(1<<20),
		groupcache.WithTTL(time.Minute),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()
	ctx := context.Background()

	fmt.Println("1. 100 goroutines ask for user 42 at the same moment:")
	sameKey(ctx, users)
	p, _ := users.Get(ctx, 42)
	fmt.Printf("   got %+v\n   database queries: %d (one load, shared by every caller)\n", p, db.queries.Load())

	fmt.Println("2. 8 goroutines read 10,000 times from 500 users, skewed towards a few:")
	start := time.Now()
	skewedReads(ctx, users)
	st := users.Stats()
	fmt.Printf("   %d gets in %v: %d hits, %d misses, %d loads, %d deduplicated waiters\n",
		st.Gets, time.Since(start).Round(time.Millisecond), st.Hits, st.Misses, st.Loads, st.Deduplicated)
	fmt.Printf("   database queries: %d; load errors (not found, not cached): %d\n", db.queries.Load(), st.LoadErrors)
	fmt.Printf("   memory: %d items, %d of %d bytes, %d evictions\n", st.Items, st.Bytes, st.MaxBytes, st.Evictions)
}

// database is the slow source of truth; it counts its queries.
type database struct {
	queries atomic.Int64
}

func (db *database) load(ctx context.Context, id UserID) (Profile, error) {
	db.queries.Add(1)
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

// sameKey gets user 42 from 100 goroutines at once.
func sameKey(ctx context.Context, users *groupcache.Cache[UserID, Profile]) {
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := users.Get(ctx, 42); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
}

// skewedReads gets users 1 to 500, a zipf distribution's worth, from 8 goroutines.
func skewedReads(ctx context.Context, users *groupcache.Cache[UserID, Profile]) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			z := rand.NewZipf(r, 1.1, 1, 499)
			for range 10_000 {
				users.Get(ctx, UserID(z.Uint64()+1))
			}
		})
	}
	wg.Wait()
}
