package memberlist_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gcmemberlist "github.com/typedcache/groupcache/discovery/memberlist"
)

// Two members on 127.0.0.1 find each other. Each advertises its groupcache address; the gossip
// runs on other ports (here picked by the system).
func Example() {
	a, err := gcmemberlist.New(gcmemberlist.Config{
		PeerAddr: "127.0.0.1:8081", // where this process's groupcache.Node serves
		BindAddr: "127.0.0.1",      // gossip on a free port of 127.0.0.1
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Shutdown()

	b, err := gcmemberlist.New(gcmemberlist.Config{
		PeerAddr: "127.0.0.1:8082",
		BindAddr: "127.0.0.1",
		Join:     []string{a.GossipAddr()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown()
	defer b.Leave(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	updates := make(chan discovery.Update)
	go a.Watch(ctx, updates)
	for u := range updates {
		if len(u.Peers) == 2 {
			fmt.Println(u.Peers)
			break
		}
	}
	// Output:
	// [127.0.0.1:8081 127.0.0.1:8082]
}

// One process of a cluster: its groupcache node gets its peer set from memberlist gossip through
// discovery.Run.
func Example_node() {
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

	src, err := gcmemberlist.New(gcmemberlist.Config{
		PeerAddr:         self,
		BindPort:         7946, // gossip
		Join:             []string{"10.0.0.2:7946", "10.0.0.3:7946"},
		MemberlistConfig: memberlist.DefaultLANConfig(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Shutdown()
	defer src.Leave(5 * time.Second) // runs before Shutdown: the others drop this node at once

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	discovery.Run(ctx, node, src) // until interrupted
}
