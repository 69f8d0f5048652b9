package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

const cacheName = "bench"

// ourNode is a node of this library with one cache of []byte values; loads are counted.
type ourNode struct {
	node  *groupcache.Node
	cache *groupcache.Cache[string, []byte]
	loads atomic.Int64
}

func newOurNode(self string, size int, nodeOpts []groupcache.NodeOption, opts ...groupcache.Option) *ourNode {
	quiet := slog.New(slog.DiscardHandler)
	n := &ourNode{}
	node, err := groupcache.NewNode(self, append([]groupcache.NodeOption{groupcache.WithNodeLogger(quiet)}, nodeOpts...)...)
	fatalIf(err)
	n.node = node
	n.cache, err = groupcache.New[string, []byte](cacheName, groupcache.LoaderFunc[string, []byte](
		func(_ context.Context, k string) ([]byte, error) {
			n.loads.Add(1)
			return payload(k, size), nil
		}), append([]groupcache.Option{groupcache.WithNode(node), groupcache.WithCodec(codec.Bytes()),
		groupcache.WithMaxBytes(1 << 30), groupcache.WithLogger(quiet)}, opts...)...)
	fatalIf(err)
	return n
}

// handler serves the peer protocol and the control endpoints.
func (n *ourNode) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(peer.DefaultBasePath, n.node.Handler())
	mux.HandleFunc("POST /control/peers", func(w http.ResponseWriter, r *http.Request) {
		if err := n.node.SetPeers(strings.Split(r.URL.Query().Get("peers"), ",")...); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /control/stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int64{"loads": n.loads.Load()})
	})
	mux.HandleFunc("POST /control/fill", func(w http.ResponseWriter, r *http.Request) {
		keys, _ := strconv.Atoi(r.URL.Query().Get("keys"))
		goroutines, _ := strconv.Atoi(r.URL.Query().Get("goroutines"))
		err := fill(keys, goroutines, func(k string) error { _, err := n.cache.Get(r.Context(), k); return err })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// fill makes goroutines ask for keys "cold-0".."cold-<keys-1>", each in its own order.
func fill(keys, goroutines int, get func(string) error) error {
	var wg sync.WaitGroup
	var first atomic.Value
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				if err := get("cold-" + strconv.Itoa((i*7+g*131)%keys)); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

func runNodeChild(size int) {
	l := listenLoopback()
	n := newOurNode(l.Addr().String(), size, []groupcache.NodeOption{groupcache.WithPeerOptions(authOptions(*authFlag)...)})
	serveUntilStdinCloses(l, n.handler(), serverTLS(*authFlag))
	n.cache.Close()
	n.node.Close()
}

// ourCluster is the measuring node (this process) and two child nodes.
type ourCluster struct {
	local    *ourNode
	stop     func()
	children []*child
	addrs    []string
	size     int    // of the values
	auth     string // "", "secret" or "tls"
	traced   bool   // the measuring cache has an OpenTelemetry tracer (newTracer)
	// tracedAll: the tracer samples every miss, not 1%
	tracedAll bool
}

func startOurCluster(size int, auth string) *ourCluster {
	l := listenLoopback()
	// The measuring node keeps no copies of remote values, so every Get of a remote key is a
	// remote hit.
	// "traced" and "tracedall" are the plaintext cluster whose measuring cache has an
	// OpenTelemetry tracer, sampling 1% of the misses or all of them.
	traced, all := strings.HasPrefix(auth, "traced"), auth == "tracedall"
	if traced {
		auth = ""
	}
	opts := append(peerOptions(clientOptions()), authOptions(auth)...)
	cacheOpts := []groupcache.Option{groupcache.WithHotFraction(0)}
	stopTracer := func() {}
	if traced {
		var tracer observe.Tracer
		tracer, stopTracer = newTracer(all)
		cacheOpts = append(cacheOpts, groupcache.WithTracer(tracer))
	}
	local := newOurNode(l.Addr().String(), size, []groupcache.NodeOption{groupcache.WithPeerOptions(opts...)},
		cacheOpts...)
	srv := newServer(local.handler(), serverTLS(auth))
	go serve(srv, l)
	c := &ourCluster{local: local, children: []*child{startChild("node", size, auth), startChild("node", size, auth)},
		size: size, auth: auth, traced: traced, tracedAll: all}
	c.addrs = []string{l.Addr().String(), c.children[0].addr, c.children[1].addr}
	q := url.Values{"peers": {strings.Join(c.addrs, ",")}}
	for _, ch := range c.children {
		ch.control("/control/peers", q, nil)
	}
	fatalIf(local.node.SetPeers(c.addrs...))
	c.stop = func() {
		for _, ch := range c.children {
			ch.stop()
		}
		local.cache.Close()
		local.node.Close()
		srv.Close()
		stopTracer()
	}
	return c
}

type ours struct {
	*ourCluster
	// view asks with Cache.View, whose callback reads the value where it lies (the cache then
	// reuses its memory), instead of Get.
	view bool
}

func newOurs(size int, auth string) *ours { return &ours{ourCluster: startOurCluster(size, auth)} }

func (o *ours) name() string {
	name := "this library"
	if o.view {
		name += ", View"
	}
	switch o.auth {
	case "secret":
		name += ", shared secret"
	case "tls":
		name += ", mutual TLS"
	}
	switch {
	case o.tracedAll:
		name += ", traced (every miss)"
	case o.traced:
		name += ", traced (1% of misses)"
	}
	return name + connsName()
}

func (o *ours) remoteKeys(n int) []int {
	ring, err := hash.NewRing(o.addrs)
	fatalIf(err)
	keys := codec.String()
	var out []int
	for i := 0; len(out) < n; i++ {
		kb, _ := keys.Append(nil, keyName(i))
		if owner, _ := ring.Owner(kb); owner != o.addrs[0] {
			out = append(out, i)
		}
	}
	return out
}

func (o *ours) get(_ int, i int) error {
	if o.view {
		return o.local.cache.View(context.Background(), keyName(i), func(v []byte) error {
			if len(v) != o.size {
				return fmt.Errorf("value of %d bytes", len(v))
			}
			return nil
		})
	}
	_, err := o.local.cache.Get(context.Background(), keyName(i))
	return err
}

func (o *ours) close() { o.stop() }

// transportOnly asks the owners through a bare peer.Client, without the cache on the asking side:
// the transport's share of a remote hit.
type transportOnly struct {
	*ours
	client *peer.Client
	ring   *hash.Ring
}

func newTransportOnly(size int) *transportOnly {
	client, err := peer.NewClient(clientOptions()...)
	fatalIf(err)
	t := &transportOnly{ours: newOurs(size, ""), client: client}
	t.ring, err = hash.NewRing(t.addrs)
	fatalIf(err)
	return t
}

func (t *transportOnly) name() string { return "peer.Client alone" + connsName() }

// clientOptions are the options of the measuring node's peer.Client and of the bare one (-conns).
func clientOptions() []peer.ClientOption {
	if *conns <= 0 {
		return nil
	}
	return []peer.ClientOption{peer.WithConnsPerPeer(*conns)}
}

func connsName() string {
	if *conns > 0 {
		return fmt.Sprintf(", %d conns/peer", *conns)
	}
	return ""
}

func (t *transportOnly) get(_ int, i int) error {
	k := []byte(keyName(i))
	owner, _ := t.ring.Owner(k)
	_, err := t.client.Get(context.Background(), owner, cacheName, k)
	return err
}

func (t *transportOnly) close() {
	t.client.Close()
	t.ours.close()
}

// coldFill starts 3 child nodes of role ("node" or "gcnode"), makes all of them ask for the same
// fresh keys at once, and returns the loads counted across the 3 processes.
func coldFill(role string, keys, goroutines int) (int64, time.Duration) {
	children := []*child{startChild(role, 1024, ""), startChild(role, 1024, ""), startChild(role, 1024, "")}
	defer func() {
		for _, ch := range children {
			ch.stop()
		}
	}()
	var addrs []string
	for _, ch := range children {
		addrs = append(addrs, ch.addr)
	}
	for _, ch := range children {
		ch.control("/control/peers", url.Values{"peers": {strings.Join(addrs, ",")}}, nil)
	}
	start := time.Now()
	var wg sync.WaitGroup
	q := url.Values{"keys": {strconv.Itoa(keys)}, "goroutines": {strconv.Itoa(goroutines)}}
	for _, ch := range children {
		wg.Add(1)
		go func() { defer wg.Done(); ch.control("/control/fill", q, nil) }()
	}
	wg.Wait()
	took := time.Since(start)
	var loads int64
	for _, ch := range children {
		var st map[string]int64
		ch.control("/control/stats", nil, &st)
		loads += st["loads"]
	}
	return loads, took
}

// peerOptions returns opts as a Node takes them.
func peerOptions(opts []peer.ClientOption) []peer.Option {
	out := make([]peer.Option, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}
