// Package etcd is a discovery.Source backed by etcd: every node registers its groupcache address
// under a key prefix, bound to a lease it keeps alive, and watches the prefix.
//
// Every process runs one Source on an etcd client of its own:
//
//	import gcetcd "github.com/typedcache/groupcache/discovery/etcd"
//
//	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"10.0.0.9:2379"}})
//	if err != nil { ... }
//	defer cli.Close()
//	src, err := gcetcd.New(gcetcd.Config{
//		Client:   cli,
//		PeerAddr: "10.0.0.1:8080", // this node's groupcache address
//		TTL:      10 * time.Second,
//	})
//	if err != nil { ... }
//	defer src.Close()
//	discovery.Run(ctx, node, src) // until ctx ends
//
// While Watch runs, the key Prefix+PeerAddr holds PeerAddr, attached to a lease of Config.TTL that
// the etcd client keeps alive. Watch reads the prefix, then follows its changes from the revision it
// read, and reports the full set of addresses (the values of the keys under the prefix) after each
// change.
//
// A node whose Watch ends (its context, or Close) revokes its lease on the way out, so the others
// drop it at once. A node that dies or loses etcd stops keeping its lease alive, and etcd deletes
// its key once the TTL has run out: the others drop it at most TTL later (etcd may raise a very
// short TTL to its own minimum). A node that finds its lease lost re-registers with a new one.
//
// The package has no errors of its own: New's errors for an invalid Config wrap
// groupcache.ErrInvalidOption, and a Watch ended by Close, or by the etcd client's Close, returns
// an error matching groupcache.ErrClosed.
//
// The package lives in its own module so that the core groupcache module does not depend on the
// etcd client.
package etcd
