// Command cluster starts a 3-node cluster on 127.0.0.1 in one process (three nodes, three ports,
// real sockets between them), runs a short workload against every node and prints, per node, what
// happened: this node's own reads (hits, hot hits, misses), the loads it ran, the requests it sent
// to its peers and answered for them, and the bytes on the wire. It then checks that the columns
// add up.
//
// The point to see: 3 nodes x 8 goroutines read the same 2,000 products, yet the "database" is
// queried once per product in the whole cluster, each time by the product's owner. Then a Set, a
// Remove and a GetMany show how writes and bulk reads reach every node.
//
// Each node also serves its status page (package status) on an HTTP port of its own, as an
// application would on its own port: with -serve the cluster keeps running after the demo, reads
// go on at a gentle pace, and the command prints each node's page until it is interrupted.
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
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/status"
)

type ProductID uint32

type Product struct {
	ID          ProductID
	Name        string
	Description string
	PriceCents  int64
	Tags        []string
}

// workload is what every node's readers do.
type workload struct {
	nodes, products, readers, reads int
}

func (w workload) total() int64 { return int64(w.nodes * w.readers * w.reads) }

func main() {
	var w workload
	flag.IntVar(&w.nodes, "nodes", 3, "nodes in the cluster")
	flag.IntVar(&w.products, "products", 2000, "distinct products")
	flag.IntVar(&w.readers, "goroutines", 8, "readers per node")
	flag.IntVar(&w.reads, "reads", 5000, "reads per reader")
	serve := flag.Bool("serve", false, "keep the cluster running after the demo and print each node's status page")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	db := new(database)
	members, err := startCluster(w.nodes, db)
	if err != nil {
		log.Fatal(err)
	}
	defer stopCluster(members)
	var addrs []string
	for _, m := range members {
		addrs = append(addrs, m.node.Self())
	}
	fmt.Printf("cluster of %d nodes: %s\n", w.nodes, strings.Join(addrs, ", "))
	fmt.Printf("workload: %d goroutines per node, %d reads each, zipf over %d products\n\n", w.readers, w.reads, w.products)

	start := time.Now()
	distinct, failures := run(members, w)
	fmt.Printf("%d reads in %v, %d failed\n\n", w.total(), time.Since(start).Round(time.Millisecond), failures)

	stats := make([]groupcache.Stats, len(members))
	for i, m := range members {
		stats[i] = m.cache.Stats()
	}
	printStats(members, stats)
	checkSums(stats, w.total(), db.queries.Load(), distinct)

	ctx := context.Background()
	showSet(ctx, members)
	showRemove(ctx, members, db)
	showGetMany(ctx, members[0], db, w.products)
	if *serve {
		serveUntilInterrupted(members, w)
	}
}

// serveUntilInterrupted prints each node's status page, then reads one product a millisecond on
// every node, so that the pages' rates move, until the process is interrupted.
func serveUntilInterrupted(members []member, w workload) {
	fmt.Println("\nthe cluster keeps running; each node's status page (Ctrl-C to stop):")
	for _, m := range members {
		fmt.Printf("  %s  %s\n", m.node.Self(), m.statusURL)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			z := rand.NewZipf(rand.New(rand.NewPCG(uint64(i), 1)), 1.1, 1, uint64(w.products*2))
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					m.cache.Get(context.Background(), ProductID(z.Uint64())) // ctx ends the loop, not a Get
				}
			}
		})
	}
	wg.Wait()
}

// database is the slow source of truth; it counts its queries.
type database struct {
	queries atomic.Int64
}

func (db *database) load(ctx context.Context, id ProductID) (Product, error) {
	db.queries.Add(1)
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

// member is one node of the cluster with its cache, the HTTP server it answers peers on, and the
// application's own HTTP server, which serves the node's status page.
type member struct {
	node      *groupcache.Node
	cache     *groupcache.Cache[ProductID, Product]
	srv, app  *http.Server
	statusURL string
}

// startCluster starts n nodes on 127.0.0.1, each with a "products" cache loading from db.
func startCluster(n int, db *database) ([]member, error) {
	// Listen first, so every node knows every address before it starts: its peers' addresses,
	// and where their status pages are.
	var peerLs, appLs []net.Listener
	var addrs []string
	pages := map[string]string{} // peer address -> its status page
	for range n {
		pl, err1 := net.Listen("tcp", "127.0.0.1:0")
		al, err2 := net.Listen("tcp", "127.0.0.1:0")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		peerLs, appLs = append(peerLs, pl), append(appLs, al)
		addrs = append(addrs, pl.Addr().String())
		pages[pl.Addr().String()] = "http://" + al.Addr().String() + status.DefaultPath
	}
	var members []member
	for i := range peerLs {
		m, err := startMember(peerLs[i], appLs[i], addrs[i], addrs, pages, db)
		if err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	return members, nil
}

// startMember starts the node self, serving peers on l and its status page on app, with peers.
func startMember(l, app net.Listener, self string, peers []string, pages map[string]string, db *database) (member, error) {
	// The nodes start together, so no node has values to hand over to another: no hand-off.
	node, err := groupcache.NewNode(self, groupcache.WithPeers(peers...), groupcache.WithHandoffWindow(0))
	if err != nil {
		return member{}, err
	}
	cache, err := groupcache.New[ProductID, Product]("products",
		groupcache.LoaderFunc[ProductID, Product](db.load),
		groupcache.WithNode(node),
		groupcache.WithMaxBytes(16<<20))
	if err != nil {
		return member{}, err
	}
	mux := http.NewServeMux()
	mux.Handle("/_groupcache/", node.Handler()) // the node's peer protocol, on your own mux
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// The status page names keys: it goes on the application's port, never on the peer port.
	appMux := http.NewServeMux()
	appMux.Handle(status.DefaultPath, status.Handler(node, status.WithPeerURL(func(p string) string { return pages[p] })))
	appSrv := &http.Server{Handler: appMux, ReadHeaderTimeout: 10 * time.Second}
	for s, l := range map[*http.Server]net.Listener{srv: l, appSrv: app} {
		go func() {
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Fatal(err)
			}
		}()
	}
	return member{node, cache, srv, appSrv, pages[self]}, nil
}

func stopCluster(members []member) {
	for _, m := range members {
		m.cache.Close()
		m.srv.Close()
		m.app.Close()
		m.node.Close()
	}
}

// run runs the workload: w.readers goroutines per node, each reading w.reads products of a zipf
// distribution. It returns how many distinct products were read, and how many reads failed.
func run(members []member, w workload) (distinct int, failures int64) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		read   = map[ProductID]bool{}
		failed atomic.Int64
	)
	for i, m := range members {
		for g := range w.readers {
			wg.Go(func() {
				seen := map[ProductID]bool{}
				z := rand.NewZipf(rand.New(rand.NewPCG(uint64(i), uint64(g))), 1.1, 1, uint64(w.products-1))
				for range w.reads {
					id := ProductID(z.Uint64())
					seen[id] = true
					if p, err := m.cache.Get(context.Background(), id); err != nil || p.ID != id {
						failed.Add(1)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for id := range seen {
					read[id] = true
				}
			})
		}
	}
	wg.Wait()
	return len(read), failed.Load()
}

// printStats prints, per node, its own reads and loads, then what went between the nodes.
func printStats(members []member, stats []groupcache.Stats) {
	fmt.Println("this node's reads (gets = owned-key hits + hot hits + misses) and the loads it ran for them:")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tgets\towned-key hits\thot hits\tmisses\tfetched from peers\tloads\t")
	for i, st := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", members[i].node.Self(),
			st.Gets, st.Hits-st.HotHits, st.HotHits, st.Misses, st.RemoteGets, st.Loads-st.PeerLoads)
	}
	tw.Flush()
	fmt.Println("\nrequests from peers, the loads they caused, and value bytes on the wire:")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tpeers' requests\tloads for peers\tbytes sent (raw)\tbytes received (raw)\t")
	for i, st := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d (%d)\t%d (%d)\t\n", members[i].node.Self(),
			st.PeerRequests, st.PeerLoads, st.BytesSent, st.BytesSentRaw, st.BytesReceived, st.BytesReceivedRaw)
	}
	tw.Flush()
}

// checkSums checks and prints that the columns add up: the nodes' gets are the workload's reads,
// every fetch from a peer is a request that peer answered, and the loads of all nodes are the
// database's queries, one per distinct product read. It reports a mismatch and goes on.
func checkSums(stats []groupcache.Stats, reads, queries int64, distinct int) {
	var sum groupcache.Stats
	split := true
	for _, st := range stats {
		split = split && st.Gets == st.Hits+st.Misses
		sum.Gets += st.Gets
		sum.RemoteGets += st.RemoteGets
		sum.PeerRequests += st.PeerRequests
		sum.Loads += st.Loads
	}
	fmt.Println("\ndo the columns add up?")
	check(split, "on every node, gets = owned-key hits + hot hits + misses")
	check(sum.Gets == reads, "gets of all nodes: %d; reads of the workload: %d", sum.Gets, reads)
	check(sum.RemoteGets == sum.PeerRequests, "fetched from peers, all nodes: %d; peers' requests answered: %d", sum.RemoteGets, sum.PeerRequests)
	check(sum.Loads == queries && queries == int64(distinct),
		"loads of all nodes (for themselves and for peers): %d; database queries: %d; distinct products read: %d (one load per key in the whole cluster)",
		sum.Loads, queries, distinct)
}

func check(ok bool, format string, args ...any) {
	verdict := "ok       "
	if !ok {
		verdict = "MISMATCH "
	}
	fmt.Printf("  %s%s\n", verdict, fmt.Sprintf(format, args...))
}

// showSet sets a product on one node and reads it back on every node.
func showSet(ctx context.Context, members []member) {
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
}

// showRemove removes a product and reads it again on every node.
func showRemove(ctx context.Context, members []member, db *database) {
	before := db.queries.Load()
	members[0].cache.Remove(ctx, 8) // gone on its owner and from every hot store
	for _, m := range members {
		m.cache.Get(ctx, 8)
	}
	fmt.Printf("Removed product 8; the next reads on every node queried the database %d time(s)\n", db.queries.Load()-before)
}

// showGetMany reads 100 products not cached yet in one call.
func showGetMany(ctx context.Context, m member, db *database, products int) {
	ids := make([]ProductID, 100)
	for i := range ids {
		ids[i] = ProductID(products + i) // not cached yet
	}
	before := db.queries.Load()
	sent := m.node.Stats().Client.Requests
	results := m.cache.GetMany(ctx, ids)
	ok := 0
	for i, r := range results {
		if r.Err == nil && r.Value.ID == ids[i] {
			ok++
		}
	}
	fmt.Printf("GetMany of %d new products on %s: %d values, %d database queries, %d requests to peers\n",
		len(ids), m.node.Self(), ok, db.queries.Load()-before, m.node.Stats().Client.Requests-sent)
}
