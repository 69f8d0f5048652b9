// Command cluster starts a 3-node cluster on 127.0.0.1 in one process (three nodes, three ports,
// real sockets between them), runs a short workload against every node and prints, per node, what
// happened: loads, hits, remote fetches, hot copies and bytes on the wire.
//
// The point to see: 3 nodes x 8 goroutines read the same 2,000 products, yet the "database" is
// queried once per product in the whole cluster, each time by the product's owner. Then a Set, a
// Remove and a GetMany show how writes and bulk reads reach every node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/typedcache/groupcache"
)

type ProductID uint32

type Product struct {
	ID          ProductID
	Name        string
	Description string
	PriceCents  int64
	Tags        []string
}

func main() {
	nodes := flag.Int("nodes", 3, "nodes in the cluster")
	products := flag.Int("products", 2000, "distinct products")
	readers := flag.Int("goroutines", 8, "readers per node")
	reads := flag.Int("reads", 5000, "reads per reader")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	// The "database": slow, and it counts its queries.
	var queries atomic.Int64
	db := func(ctx context.Context, id ProductID) (Product, error) {
		queries.Add(1)
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return Product{}, ctx.Err()
		}
		return Product{
			ID: id, Name: fmt.Sprintf("product %d", id), PriceCents: int64(id) * 99,
			Description: strings.Repeat(fmt.Sprintf("Product %d is a fine product. ", id), 100),
			Tags:        []string{"catalog", fmt.Sprintf("shelf-%d", id%40)},
		}, nil
	}

	// Listen first, so every node knows every address before it starts.
	var listeners []net.Listener
	var addrs []string
	for range *nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr().String())
	}
	type member struct {
		node  *groupcache.Node
		cache *groupcache.Cache[ProductID, Product]
		srv   *http.Server
	}
	var members []member
	for i, l := range listeners {
		// The nodes start together, so no node has values to hand over to another: no hand-off.
		node, err := groupcache.NewNode(addrs[i], groupcache.WithPeers(addrs...), groupcache.WithHandoffWindow(0))
		if err != nil {
			log.Fatal(err)
		}
		cache, err := groupcache.New[ProductID, Product]("products",
			groupcache.LoaderFunc[ProductID, Product](db),
			groupcache.WithNode(node),
			groupcache.WithMaxBytes(16<<20))
		if err != nil {
			log.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/_groupcache/", node.Handler()) // the node's peer protocol, on your own mux
		srv := &http.Server{Handler: mux}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Fatal(err)
			}
		}()
		members = append(members, member{node, cache, srv})
	}
	fmt.Printf("cluster of %d nodes: %s\n", *nodes, strings.Join(addrs, ", "))
	fmt.Printf("workload: %d goroutines per node, %d reads each, zipf over %d products\n\n", *readers, *reads, *products)

	start := time.Now()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i, m := range members {
		for g := range *readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				z := rand.NewZipf(rand.New(rand.NewPCG(uint64(i), uint64(g))), 1.1, 1, uint64(*products-1))
				for range *reads {
					id := ProductID(z.Uint64())
					p, err := m.cache.Get(context.Background(), id)
					if err != nil || p.ID != id {
						failures.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tgets\towned-key hits\thot hits\tloads\tfetched from peers\tserved to peers\tbytes sent (raw)\tbytes received (raw)\t")
	var loads, distinct int64
	for _, m := range members {
		st := m.cache.Stats()
		loads += st.Loads
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d (%d)\t%d (%d)\t\n", m.node.Self(),
			st.Gets-st.PeerRequests, st.Hits-st.HotHits, st.HotHits, st.Loads, st.RemoteGets, st.PeerRequests,
			st.BytesSent, st.BytesSentRaw, st.BytesReceived, st.BytesReceivedRaw)
		distinct += st.Items - st.HotItems
	}
	tw.Flush()
	fmt.Printf("\n%d reads in %v, %d failed\n", int64(*nodes**readers**reads), elapsed.Round(time.Millisecond), failures.Load())
	fmt.Printf("database queries: %d for %d distinct products cached by their owners: one load per key in the whole cluster\n",
		queries.Load(), distinct)

	// Writes and bulk reads, seen from every node.
	ctx := context.Background()
	last := members[len(members)-1]
	p, _ := last.cache.Get(ctx, 7)
	p.PriceCents = 1
	if err := last.cache.Set(ctx, 7, p); err != nil { // stored on product 7's owner; copies dropped
		log.Fatal(err)
	}
	var prices []string
	for _, m := range members {
		p, _ := m.cache.Get(ctx, 7)
		prices = append(prices, fmt.Sprint(p.PriceCents))
	}
	fmt.Printf("\nSet product 7 to 1 cent on %s; every node now reads: %s\n", last.node.Self(), strings.Join(prices, ", "))

	before := queries.Load()
	members[0].cache.Remove(ctx, 8) // gone on its owner and from every hot store
	for _, m := range members {
		m.cache.Get(ctx, 8)
	}
	fmt.Printf("Removed product 8; the next reads on every node queried the database %d time(s)\n", queries.Load()-before)

	ids := make([]ProductID, 100)
	for i := range ids {
		ids[i] = ProductID(*products + i) // not cached yet
	}
	before = queries.Load()
	sent := members[0].node.Stats().Client.Requests
	results := members[0].cache.GetMany(ctx, ids)
	ok := 0
	for i, r := range results {
		if r.Err == nil && r.Value.ID == ids[i] {
			ok++
		}
	}
	fmt.Printf("GetMany of %d new products on %s: %d values, %d database queries, %d requests to peers\n",
		len(ids), members[0].node.Self(), ok, queries.Load()-before, members[0].node.Stats().Client.Requests-sent)

	for _, m := range members {
		m.cache.Close()
		m.srv.Close()
		m.node.Close()
	}
}
