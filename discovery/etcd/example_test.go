package etcd_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gcetcd "github.com/typedcache/groupcache/discovery/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// One process of a cluster: it registers its groupcache address in etcd, and its node gets the
// addresses of every registered process through discovery.Run.
func Example() {
	self := "10.0.0.1:8080" // this process's groupcache address
	node, err := groupcache.NewNode(self)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	l, err := net.Listen("tcp", self)
	if err != nil {
		log.Fatal(err)
	}
	go node.Serve(l)

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"10.0.0.9:2379", "10.0.0.10:2379", "10.0.0.11:2379"},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close() // after src.Close

	src, err := gcetcd.New(gcetcd.Config{
		Client:   cli,
		Prefix:   "/myapp/groupcache/", // one prefix per cluster
		PeerAddr: self,
		TTL:      10 * time.Second, // a crashed process is dropped at most 10 s later
		Logger:   slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	discovery.Run(ctx, node, src) // until interrupted; Watch then revokes the lease
}

// A process that is not a groupcache node reads the peer set without registering.
func ExampleSource_Peers() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"10.0.0.9:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	src, err := gcetcd.New(gcetcd.Config{Client: cli, Prefix: "/myapp/groupcache/"}) // no PeerAddr
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	peers, err := src.Peers(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	log.Println(peers)
}
