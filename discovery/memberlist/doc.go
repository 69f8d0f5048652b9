// Package memberlist is a discovery.Source backed by a hashicorp/memberlist gossip cluster.
//
// Every process runs one Source. It joins the gossip cluster and advertises its groupcache peer
// address ("host:port", the address its groupcache.Node serves on, not the gossip address) in its
// memberlist node metadata. Watch reports the peer addresses of all live members, and the full set
// again after each join, graceful leave, failure or metadata change seen by the gossip layer:
//
//	import gcmemberlist "github.com/typedcache/groupcache/discovery/memberlist"
//
//	src, err := gcmemberlist.New(gcmemberlist.Config{
//		PeerAddr: "10.0.0.1:8080", // this node's groupcache address
//		BindPort: 7946,            // gossip port
//		Join:     []string{"10.0.0.2:7946", "10.0.0.3:7946"},
//	})
//	if err != nil { ... }
//	defer src.Shutdown()
//	defer src.Leave(5 * time.Second) // runs first: the others drop this node at once
//	discovery.Run(ctx, node, src)    // until ctx ends
//
// A member that leaves with Leave is dropped by the others as soon as the message spreads; one
// that stops without it (a crash, a lost network) is dropped once memberlist's failure detection
// declares it dead: with memberlist.DefaultLANConfig, 4 s to 24 s after it stopped, sooner the more
// members confirm the suspicion; the timings are set in Config.MemberlistConfig.
//
// The package has no errors of its own: New's errors for an invalid Config wrap
// groupcache.ErrInvalidOption, and Watch, Join and Leave after Shutdown return an error matching
// groupcache.ErrClosed.
//
// The package lives in its own module so that the core groupcache module does not depend on
// memberlist.
package memberlist
