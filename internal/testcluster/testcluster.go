// Package testcluster starts clusters of real nodes on 127.0.0.1 inside one test process: each
// node listens on its own loopback port and talks to the others over real sockets.
package testcluster

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/peer"
)

// Cluster is a set of nodes that know each other.
type Cluster struct {
	Nodes []*groupcache.Node
	Addrs []string

	t     testing.TB
	wg    sync.WaitGroup
	mu    sync.Mutex
	alive []bool // guarded by mu
}

// Start starts n nodes, each serving on its own 127.0.0.1 port, and gives every node the full peer
// set. The nodes are closed when the test ends.
func Start(t testing.TB, n int, opts ...groupcache.NodeOption) *Cluster {
	t.Helper()
	c := &Cluster{t: t, alive: make([]bool, n)}
	listeners := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[i] = l
		c.Addrs = append(c.Addrs, l.Addr().String())
	}
	for i, l := range listeners {
		node, err := groupcache.NewNode(c.Addrs[i], append([]groupcache.NodeOption{groupcache.WithPeers(c.Addrs...)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
		c.alive[i] = true
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := node.Serve(l); err != nil && !errors.Is(err, peer.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("node %s: serve: %v", node.Self(), err)
			}
		}()
	}
	t.Cleanup(c.Close)
	return c
}

// Kill closes node i: it stops serving and its listener is gone, as if its process had died.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	alive := c.alive[i]
	c.alive[i] = false
	c.mu.Unlock()
	if alive {
		c.Nodes[i].Close()
	}
}

// Close closes every node and waits for their servers to stop.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Kill(i)
	}
	c.wg.Wait()
}
