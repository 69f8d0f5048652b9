//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
)

// childConfig is what a node process is started with.
type childConfig struct {
	addr   string // peer address to listen on; 127.0.0.1:0 the first time
	peers  string // comma-separated peer set, this node included
	dbPath string
	keys   int
	ttl    time.Duration
	hotTTL time.Duration
}

func (c childConfig) args() []string {
	return []string{"-addr", c.addr, "-peers", c.peers, "-db", c.dbPath, "-keys", strconv.Itoa(c.keys),
		"-ttl", c.ttl.String(), "-hotttl", c.hotTTL.String()}
}

func parseChild(args []string) childConfig {
	var c childConfig
	fs := flag.NewFlagSet("soak child", flag.ExitOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "")
	fs.StringVar(&c.peers, "peers", "", "")
	fs.StringVar(&c.dbPath, "db", "", "")
	fs.IntVar(&c.keys, "keys", 1000, "")
	fs.DurationVar(&c.ttl, "ttl", 10*time.Second, "")
	fs.DurationVar(&c.hotTTL, "hotttl", 2*time.Second, "")
	_ = fs.Parse(args)
	return c
}

// node is a node process: a groupcache.Node with one cache per name in cacheNames, its loaders
// reading the shared database, and a control endpoint through which the parent drives it.
type node struct {
	node   *groupcache.Node
	caches []*groupcache.Cache[string, string]
	db     *db
	loads  atomic.Int64
	leave  chan struct{}
	once   sync.Once
}

// runChild runs a node process until the parent makes it leave (Shutdown) or kills it.
func runChild(args []string) {
	cfg := parseChild(args)
	fail := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak child:", err)
			os.Exit(2)
		}
	}
	d, err := openDB(cfg.dbPath, len(cacheNames), cfg.keys, false)
	fail(err)
	pl, err := listenPeer(cfg.addr)
	fail(err)
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	fail(err)
	n, err := newNode(pl.Addr().String(), cfg, d)
	fail(err)
	go func() { _ = n.node.Serve(pl) }()
	ctl := &http.Server{Handler: n.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ctl.Serve(cl) }()
	fmt.Printf("READY %s %s\n", pl.Addr(), cl.Addr())
	<-n.leave
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.node.Shutdown(ctx)
	_ = ctl.Shutdown(ctx) // the parent's calls in flight are answered first
	for _, c := range n.caches {
		c.Close()
	}
	os.Exit(0)
}

func newNode(self string, cfg childConfig, d *db) (*node, error) {
	quiet := slog.New(slog.DiscardHandler)
	peers := []string{self}
	if cfg.peers != "" {
		peers = strings.Split(cfg.peers, ",")
	}
	gn, err := groupcache.NewNode(self, groupcache.WithPeers(peers...),
		groupcache.WithNodeLogger(quiet))
	if err != nil {
		return nil, err
	}
	n := &node{node: gn, db: d, leave: make(chan struct{})}
	for ci, name := range cacheNames {
		opts := []groupcache.Option{groupcache.WithNode(gn), groupcache.WithCodec(codec.String()),
			groupcache.WithTTL(cfg.ttl), groupcache.WithHotTTL(cfg.hotTTL), groupcache.WithLogger(quiet)}
		switch name {
		case "nohot": // fallbacks go to the main store
			opts = append(opts, groupcache.WithHotFraction(0))
		case "small": // evictions all the time
			opts = append(opts, groupcache.WithMaxBytes(64<<10), groupcache.WithBatchSize(4))
		}
		c, err := groupcache.New[string, string](name, groupcache.LoaderFunc[string, string](
			func(_ context.Context, key string) (string, error) { return n.load(ci, name, key) }), opts...)
		if err != nil {
			return nil, err
		}
		n.caches = append(n.caches, c)
	}
	return n, nil
}

func (n *node) load(ci int, name, key string) (string, error) {
	k, ok := keyIndex(key)
	if !ok || k < 0 || k >= n.db.keys {
		return "", fmt.Errorf("no key %q: %w", key, groupcache.ErrNotFound)
	}
	n.loads.Add(1)
	return value(name, key, n.db.version(ci, k)), nil
}

// reply is the answer of a control call: one result per key (Get, GetMany), or an error.
type reply struct {
	Values []string `json:"values,omitempty"`
	Kinds  []string `json:"kinds,omitempty"` // the error kind per key, "" for none
	Errs   []string `json:"errs,omitempty"`
	Kind   string   `json:"kind,omitempty"` // of a write's error
	Err    string   `json:"err,omitempty"`
}

// stats is what a node reports of itself.
type stats struct {
	Goroutines int   `json:"goroutines"`
	RSS        int64 `json:"rss"`
	Heap       int64 `json:"heap"`
	Loads      int64 `json:"loads"`
}

// kind names the class of an error for the report.
func kind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, groupcache.ErrIncomplete):
		return "incomplete"
	case errors.Is(err, groupcache.ErrLoadTimeout):
		return "load-timeout"
	case errors.Is(err, groupcache.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, groupcache.ErrNotFound):
		return "not-found"
	case errors.Is(err, groupcache.ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "context"
	}
	return "other"
}

func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /get", n.cacheCall(n.get))
	mux.HandleFunc("POST /getmany", n.cacheCall(n.getMany))
	mux.HandleFunc("POST /set", n.cacheCall(n.set))
	mux.HandleFunc("POST /remove", n.cacheCall(n.remove))
	mux.HandleFunc("POST /clear", n.cacheCall(n.clear))
	mux.HandleFunc("POST /peers", func(w http.ResponseWriter, r *http.Request) {
		if err := n.node.SetPeers(strings.Split(r.URL.Query().Get("peers"), ",")...); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /stats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(stats{Goroutines: runtime.NumGoroutine(), RSS: rss(),
			Heap: int64(ms.HeapInuse), Loads: n.loads.Load()})
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		n.once.Do(func() { close(n.leave) })
	})
	return mux
}

// cacheCall serves a call on the cache named by the query's "cache", with its "keys".
func (n *node) cacheCall(call func(ctx context.Context, c *groupcache.Cache[string, string], q callArgs) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ci, err := strconv.Atoi(q.Get("cache"))
		if err != nil || ci < 0 || ci >= len(n.caches) {
			http.Error(w, "bad cache", http.StatusBadRequest)
			return
		}
		args := callArgs{keys: strings.Split(q.Get("keys"), ","), value: q.Get("value"), reqCtx: r.Context()}
		_ = json.NewEncoder(w).Encode(call(context.Background(), n.caches[ci], args))
	}
}

type callArgs struct {
	keys   []string
	value  string
	reqCtx context.Context
}

// get uses a context that never ends (the flight runs in the caller's goroutine); getMany uses
// the request's (the flights run detached): both paths are exercised.
func (n *node) get(ctx context.Context, c *groupcache.Cache[string, string], a callArgs) reply {
	v, err := c.Get(ctx, a.keys[0])
	return results([]string{v}, []error{err})
}

func (n *node) getMany(_ context.Context, c *groupcache.Cache[string, string], a callArgs) reply {
	rs := c.GetMany(a.reqCtx, a.keys)
	vals := make([]string, len(rs))
	errs := make([]error, len(rs))
	for i, r := range rs {
		vals[i], errs[i] = r.Value, r.Err
	}
	return results(vals, errs)
}

func results(vals []string, errs []error) reply {
	r := reply{Values: vals, Kinds: make([]string, len(vals)), Errs: make([]string, len(vals))}
	for i, err := range errs {
		if err != nil {
			r.Kinds[i], r.Errs[i] = kind(err), err.Error()
		}
	}
	return r
}

func (n *node) set(ctx context.Context, c *groupcache.Cache[string, string], a callArgs) reply {
	return writeReply(c.Set(ctx, a.keys[0], a.value))
}

func (n *node) remove(ctx context.Context, c *groupcache.Cache[string, string], a callArgs) reply {
	return writeReply(c.RemoveMany(ctx, a.keys))
}

func (n *node) clear(ctx context.Context, c *groupcache.Cache[string, string], _ callArgs) reply {
	return writeReply(c.Clear(ctx))
}

func writeReply(err error) reply {
	if err == nil {
		return reply{}
	}
	return reply{Kind: kind(err), Err: err.Error()}
}

// listenPeer listens on addr; for a port 0, on a free port below the kernel's usual range of
// ephemeral ports (32768 and up), so that no outgoing connection can hold the port while the node
// is down and keep it from starting again at the same address.
func listenPeer(addr string) (net.Listener, error) {
	if addr != "127.0.0.1:0" {
		return net.Listen("tcp", addr)
	}
	for range 100 {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", addr)
}

// rss returns the resident set size of this process, from /proc/self/statm.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
