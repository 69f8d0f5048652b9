// Package testcluster starts clusters of real nodes on 127.0.0.1 inside one test process: each
// node listens on its own loopback port and talks to the others over real sockets.
package testcluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/typedcache/groupcache"
)

// Cluster is a set of nodes that know each other.
type Cluster struct {
	Nodes []*groupcache.Node
	Addrs []string

	t     testing.TB
	opts  []groupcache.NodeOption
	wg    sync.WaitGroup
	mu    sync.Mutex
	alive []bool // guarded by mu
}

// Start starts n nodes, each serving on its own 127.0.0.1 port, and gives every node the full peer
// set. The nodes are closed when the test ends.
func Start(t testing.TB, n int, opts ...groupcache.NodeOption) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	listeners := make([]net.Listener, n)
	for i := range n {
		listeners[i] = c.listen()
		c.Addrs = append(c.Addrs, listeners[i].Addr().String())
	}
	for i, l := range listeners {
		c.add(c.serve(c.Addrs[i], l))
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Cluster) listen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// add appends a node that serves.
func (c *Cluster) add(node *groupcache.Node) {
	c.mu.Lock()
	c.Nodes = append(c.Nodes, node)
	c.alive = append(c.alive, true)
	c.mu.Unlock()
}

// serve makes the node at addr, with the cluster's current addresses as its peer set, and serves
// it on l.
func (c *Cluster) serve(addr string, l net.Listener) *groupcache.Node {
	node, err := groupcache.NewNode(addr, append([]groupcache.NodeOption{groupcache.WithPeers(c.Addrs...)}, c.opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := node.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.t.Errorf("node %s: serve: %v", node.Self(), err)
		}
	}()
	return node
}

// Add starts one more node, whose peer set is the whole cluster with it, and returns its index.
// The other nodes do not know it until Announce.
func (c *Cluster) Add() int {
	l := c.listen()
	c.Addrs = append(c.Addrs, l.Addr().String())
	c.add(c.serve(c.Addrs[len(c.Addrs)-1], l))
	return len(c.Nodes) - 1
}

// Shutdown makes node i leave the cluster gracefully (Node.Shutdown) and returns what it returned.
func (c *Cluster) Shutdown(ctx context.Context, i int) error {
	c.mu.Lock()
	alive := c.alive[i]
	c.alive[i] = false
	c.mu.Unlock()
	if !alive {
		return groupcache.ErrClosed
	}
	return c.Nodes[i].Shutdown(ctx)
}

// Restart starts node i again at its address after Kill or Shutdown, as a new process would: a
// new node, with the cluster's current peer set and nothing cached, which replaces Nodes[i].
func (c *Cluster) Restart(i int) *groupcache.Node {
	l, err := net.Listen("tcp", c.Addrs[i])
	if err != nil {
		c.t.Fatal(err)
	}
	node := c.serve(c.Addrs[i], l)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.alive[i] {
		c.t.Fatalf("node %d restarted while alive", i)
	}
	c.Nodes[i], c.alive[i] = node, true
	return node
}

// Announce gives every node the cluster's current peer set.
func (c *Cluster) Announce() {
	for _, n := range c.Nodes {
		if err := n.SetPeers(c.Addrs...); err != nil {
			c.t.Fatal(err)
		}
	}
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
