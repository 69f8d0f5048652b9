package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	gc "github.com/golang/groupcache"
)

// gcNode is a github.com/golang/groupcache node: one HTTPPool and one group. The library keeps a
// process-wide registry of groups and peer pickers, so a process can hold only one such node:
// the measuring process makes one, and the two others are child processes.
type gcNode struct {
	pool  *gc.HTTPPool
	group *gc.Group
	loads atomic.Int64
}

func newGCNode(l net.Listener, size int, cacheBytes int64) *gcNode {
	n := &gcNode{pool: gc.NewHTTPPoolOpts("http://"+l.Addr().String(), nil)}
	n.group = gc.NewGroup(cacheName, cacheBytes, gc.GetterFunc(func(_ context.Context, key string, dest gc.Sink) error {
		n.loads.Add(1)
		return dest.SetBytes(payload(key, size))
	}))
	return n
}

func (n *gcNode) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/_groupcache/", n.pool)
	mux.HandleFunc("POST /control/peers", func(w http.ResponseWriter, r *http.Request) {
		var urls []string
		for _, a := range strings.Split(r.URL.Query().Get("peers"), ",") {
			urls = append(urls, "http://"+a)
		}
		n.pool.Set(urls...)
	})
	mux.HandleFunc("POST /control/stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int64{"loads": n.loads.Load()})
	})
	mux.HandleFunc("POST /control/fill", func(w http.ResponseWriter, r *http.Request) {
		keys, _ := strconv.Atoi(r.URL.Query().Get("keys"))
		goroutines, _ := strconv.Atoi(r.URL.Query().Get("goroutines"))
		if err := fill(keys, goroutines, n.get); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

func (n *gcNode) get(key string) error {
	var b []byte
	return n.group.Get(context.Background(), key, gc.AllocatingByteSliceSink(&b))
}

func runGCChild(size int) {
	l := listenLoopback()
	n := newGCNode(l, size, 1<<30)
	serveUntilStdinCloses(l, n.handler(), nil)
}

// gcSystem is the measuring golang/groupcache node (this process) and two child nodes. Only one
// can exist per process (see gcNode), so it is made once and reused.
type gcSystem struct {
	local    *gcNode
	children []*child
	addrs    []string
	size     int
}

var gcLocal *gcNode
var gcListener net.Listener

func newGCSystem(size int) *gcSystem {
	if gcLocal == nil {
		gcListener = listenLoopback()
		// A small cache: the measuring node's main cache holds only keys it owns, and its hot
		// cache (1/8 of this) cannot hold enough copies to turn remote hits into local ones.
		gcLocal = newGCNode(gcListener, size, 64<<10)
		go serve(newServer(gcLocal.handler(), nil), gcListener)
	}
	s := &gcSystem{local: gcLocal, children: []*child{startChild("gcnode", size, ""), startChild("gcnode", size, "")}, size: size}
	s.addrs = []string{gcListener.Addr().String(), s.children[0].addr, s.children[1].addr}
	q := url.Values{"peers": {strings.Join(s.addrs, ",")}}
	for _, ch := range s.children {
		ch.control("/control/peers", q, nil)
	}
	var urls []string
	for _, a := range s.addrs {
		urls = append(urls, "http://"+a)
	}
	gcLocal.pool.Set(urls...)
	return s
}

type golangGroupcache struct{ *gcSystem }

func newGC(size int) *golangGroupcache { return &golangGroupcache{newGCSystem(size)} }

func (g *golangGroupcache) name() string { return "golang/groupcache" }

func (g *golangGroupcache) remoteKeys(n int) []int {
	var out []int
	for i := 0; len(out) < n; i++ {
		// A key of another size run would be cached with the wrong size: keys are per size.
		if _, remote := g.local.pool.PickPeer(g.key(i)); remote {
			out = append(out, i)
		}
	}
	return out
}

func (g *golangGroupcache) key(i int) string { return keyName(i) + "/" + strconv.Itoa(g.size) }

func (g *golangGroupcache) get(_ int, i int) error { return g.local.get(g.key(i)) }

func (g *golangGroupcache) close() {
	for _, ch := range g.children {
		ch.stop()
	}
}
