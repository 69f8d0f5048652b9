// Package statustest starts clusters of real nodes on 127.0.0.1 inside one test process, each node
// with caches of strings and its status page on an HTTP server of its own, linked to its peers'
// pages: what the status page's tests, its browser tests and the command's tests run against.
package statustest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/status"
)

// Node is one node of a cluster, its caches by name, and the URL of its status page.
type Node struct {
	Node   *groupcache.Node
	Caches map[string]*groupcache.Cache[string, string]
	// URL is the node's status page (status.DefaultPath on a server of its own); Addr that
	// server's host:port.
	URL, Addr string
}

// Start starts n nodes, each with the caches named (1 MiB each) and its status page. A cache's
// loader returns "name:key", ErrNotFound for a key that starts with "missing", and an error for
// one that starts with "fail". Everything stops when the test ends.
func Start(t testing.TB, n int, caches []string, opts ...groupcache.NodeOption) []Node {
	t.Helper()
	cl := testcluster.Start(t, n, opts...)
	urls := map[string]string{} // peer address -> its status page; filled before the servers start
	nodes := make([]Node, n)
	servers := make([]*httptest.Server, n)
	for i, gn := range cl.Nodes {
		nodes[i] = Node{Node: gn, Caches: map[string]*groupcache.Cache[string, string]{}}
		for _, name := range caches {
			c, err := groupcache.New[string, string](name, groupcache.LoaderFunc[string, string](
				func(_ context.Context, k string) (string, error) {
					switch {
					case strings.HasPrefix(k, "missing"):
						return "", groupcache.ErrNotFound
					case strings.HasPrefix(k, "fail"):
						return "", errors.New("the database is down")
					}
					return name + ":" + k, nil
				}), groupcache.WithNode(gn), groupcache.WithMaxBytes(1<<20))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			nodes[i].Caches[name] = c
		}
		mux := http.NewServeMux()
		mux.Handle(status.DefaultPath, status.Handler(gn, status.WithPeerURL(func(p string) string { return urls[p] })))
		servers[i] = httptest.NewUnstartedServer(mux)
		t.Cleanup(servers[i].Close)
		nodes[i].Addr = servers[i].Listener.Addr().String()
		nodes[i].URL = "http://" + nodes[i].Addr + status.DefaultPath
		urls[gn.Self()] = nodes[i].URL
	}
	for _, srv := range servers {
		srv.Start()
	}
	return nodes
}

// Traffic makes every node read keys keys of each of its caches, twice, plus a few that are
// missing and a few whose load fails, so that every counter of the page moves.
func Traffic(t testing.TB, nodes []Node, keys int) {
	t.Helper()
	ctx := context.Background()
	for i, n := range nodes {
		for _, c := range n.Caches {
			for round := range 2 {
				for k := range keys {
					if _, err := c.Get(ctx, fmt.Sprint("key", k)); err != nil {
						t.Fatal(err)
					}
				}
				c.Get(ctx, fmt.Sprint("missing", i, round))
				c.Get(ctx, fmt.Sprint("fail", i))
			}
		}
	}
}
