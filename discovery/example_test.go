package discovery_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
)

// Run keeps a node's peer set in line with a source; here a fixed list.
func ExampleRun() {
	node, err := groupcache.NewNode("10.0.0.1:8080", groupcache.WithNodeLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	applied := make(chan []string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		src := discovery.Static("10.0.0.3:8080", "10.0.0.2:8080", "10.0.0.2:8080")
		done <- discovery.Run(ctx, node, src,
			discovery.WithLogger(slog.New(slog.DiscardHandler)),
			discovery.WithOnApply(func(peers []string, err error) { applied <- peers }))
	}()

	fmt.Println(<-applied) // the node itself is added
	fmt.Println(node.Peers())
	cancel()
	fmt.Println(<-done)
	// Output:
	// [10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080]
	// [10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080]
	// context canceled
}

// In Kubernetes a headless Service lists the IPs of the cache pods: each pod makes its node with
// its own IP and the peer port, and polls the Service's name.
func ExampleDNS() {
	ctx := context.Background()
	podIP := "10.1.2.3" // from the Downward API, say
	node, err := groupcache.NewNode(podIP + ":8080")
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	l, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	go node.Serve(l)

	src := discovery.DNS("cache-peers.default.svc.cluster.local", 8080, discovery.WithInterval(10*time.Second))
	go discovery.Run(ctx, node, src, discovery.WithDebounce(time.Second))
	// ... caches made with groupcache.WithNode(node) ...
}

// SRV records name each node and its port: "_cache._tcp.example.com. SRV 10 5 8080 node-1.example.com."
// makes the peer "node-1.example.com:8080", which is what that node must give NewNode.
func ExampleSRV() {
	node, err := groupcache.NewNode("node-1.example.com:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	go discovery.Run(context.Background(), node, discovery.SRV("cache", "tcp", "example.com"))
}

// A Runner is Run with counters, for metrics.
func ExampleRunner_Stats() {
	node, err := groupcache.NewNode("10.0.0.1:8080", groupcache.WithNodeLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	applied := make(chan struct{}, 1)
	r, err := discovery.NewRunner(node, discovery.Static("10.0.0.2:8080", "10.0.0.2"),
		discovery.WithLogger(slog.New(slog.DiscardHandler)),
		discovery.WithOnApply(func([]string, error) { applied <- struct{}{} }))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-applied
	cancel()
	<-done
	st := r.Stats()
	fmt.Printf("updates %d, applied %d, dropped %d\n", st.Updates, st.Applied, st.Dropped)
	// Output: updates 1, applied 1, dropped 1
}
