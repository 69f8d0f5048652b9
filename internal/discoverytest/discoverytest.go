// Package discoverytest is the harness shared by the tests of the discovery backends (the etcd,
// memberlist and Kubernetes modules under discovery/): groupcache nodes serving on 127.0.0.1 and
// fed their peer sets by discovery.Run from a backend's Source, a count of the loads their caches
// make, and a Watch of a Source run in the background.
//
// It is imported by tests only, and depends on the standard library and this module alone.
package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
)

// LoadCount counts the loads of the members' caches, by key and by node. The zero value is
// ready to use; it is safe for concurrent use.
type LoadCount struct {
	mu     sync.Mutex
	byKey  map[string]int
	byNode map[string]int
}

// Add counts one load of key by the node at address node.
func (l *LoadCount) Add(node, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKey == nil {
		l.byKey = map[string]int{}
		l.byNode = map[string]int{}
	}
	l.byKey[key]++
	l.byNode[node]++
}

// CheckSpread checks that every key loaded so far was loaded exactly once in the cluster, and
// that keys keys were loaded, spread over nodes nodes.
func (l *LoadCount) CheckSpread(t testing.TB, keys, nodes int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, n := range l.byKey {
		if n != 1 {
			t.Errorf("key %s loaded %d times, want once in the cluster", k, n)
		}
	}
	if len(l.byKey) != keys || len(l.byNode) != nodes {
		t.Errorf("%d keys loaded by %d nodes (%v), want %d keys spread over %d nodes", len(l.byKey), len(l.byNode), l.byNode, keys, nodes)
	}
}

// CheckOnce checks that each of the keys prefix0 to prefix<n-1> was loaded exactly once; after
// says when, in the error ("after the stop").
func (l *LoadCount) CheckOnce(t testing.TB, prefix string, n int, after string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range n {
		if c := l.byKey[fmt.Sprint(prefix, i)]; c != 1 {
			t.Errorf("key %s%d loaded %d times %s, want once", prefix, i, c, after)
		}
	}
}

// Member is one process of a test: a groupcache node serving on 127.0.0.1 with a cache "users"
// whose loader returns "value-"+key, and (once Run is called) discovery.Run feeding the node its
// peer sets from a Source.
type Member struct {
	Node  *groupcache.Node
	Cache *groupcache.Cache[string, string]
	// Applied receives each peer set discovery.Run applied to the node (when it has room: it
	// holds 64).
	Applied chan []string

	t      testing.TB
	cancel context.CancelFunc // nil until Run
	done   chan struct{}      // closed when Run returned
	stop   func()             // closes the source, or nil
}

// NewMember starts a node serving on a free 127.0.0.1 port, and its cache, whose loads are
// counted in loads. They are closed when the test ends.
func NewMember(t testing.TB, loads *LoadCount) *Member {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	quiet := slog.New(slog.DiscardHandler)
	node, err := groupcache.NewNode(addr, groupcache.WithNodeLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		node.Serve(l)
	}()
	cache, err := groupcache.New[string, string]("users", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		loads.Add(addr, k)
		return "value-" + k, nil
	}), groupcache.WithNode(node), groupcache.WithLogger(quiet))
	if err != nil {
		node.Close()
		<-served
		t.Fatal(err)
	}
	m := &Member{Node: node, Cache: cache, Applied: make(chan []string, 64), t: t}
	t.Cleanup(func() {
		cache.Close()
		node.Close()
		<-served
	})
	return m
}

// Run starts discovery.Run(ctx, m.Node, src) in the background with a silent logger, opts, and
// an apply hook that fails the test on a SetPeers error and sends the sets applied to Applied.
// Run must return context.Canceled when Stop cancels it. Stop calls stop, if not nil, once Run
// has returned (to close src). Stop is also called when the test ends, before the cleanups
// registered before Run (such as closing a client src uses), and before the node and cache are
// closed. Run is called at most once.
func (m *Member) Run(src discovery.Source, stop func(), opts ...discovery.Option) {
	addr := m.Node.Self()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done, m.stop = cancel, make(chan struct{}), stop
	opts = append([]discovery.Option{discovery.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	opts = append(opts, discovery.WithOnApply(func(peers []string, err error) {
		if err != nil {
			m.t.Errorf("%s: SetPeers(%v): %v", addr, peers, err)
			return
		}
		select {
		case m.Applied <- peers:
		default:
		}
	}))
	m.t.Cleanup(m.Stop)
	go func() {
		defer close(m.done)
		err := discovery.Run(ctx, m.Node, src, opts...)
		if !errors.Is(err, context.Canceled) {
			m.t.Errorf("%s: Run = %v, want context.Canceled", addr, err)
		}
	}()
}

// Stop cancels discovery.Run, waits for it to return, then calls the stop function given to Run.
// Stop is called again when the test ends, and calls that function again: it must be safe to
// call twice. Before Run, Stop does nothing.
func (m *Member) Stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	if m.stop != nil {
		m.stop()
	}
}

// WaitPeers waits until the node's peer set is want (in any order), failing the test after
// timeout. It looks at the node itself after each set applied: an older set still queued in
// Applied may equal want while the node has moved on.
func (m *Member) WaitPeers(t testing.TB, want []string, timeout time.Duration) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.After(timeout)
	for !slices.Equal(m.Node.Peers(), want) {
		select {
		case <-m.Applied:
		case <-deadline:
			t.Fatalf("%s: peers %v, want %v after %v", m.Node.Self(), m.Node.Peers(), want, timeout)
		}
	}
}

// GetKeys gets the keys prefix0 to prefix<n-1> through the member's cache, failing the test at
// the first error or value other than "value-"+key.
func (m *Member) GetKeys(t testing.TB, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		k := fmt.Sprint(prefix, i)
		if v, err := m.Cache.Get(ctx, k); err != nil || v != "value-"+k {
			t.Fatalf("%s: Get(%s) = %q, %v", m.Node.Self(), k, v, err)
		}
	}
}

// Watch runs src.Watch in the background, sending to the unbuffered channel updates, until stop
// is called or the test ends. done is closed once Watch has returned, after its error has been
// stored in *err. stop cancels the Watch and waits for it to return (an error of the test if it
// takes more than 5s); it returns Watch's error. name names the watch in errors.
func Watch(t testing.TB, name string, src discovery.Source, err *error) (updates chan discovery.Update, done chan struct{}, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	updates, done = make(chan discovery.Update), make(chan struct{})
	go func() {
		defer close(done)
		*err = src.Watch(ctx, updates)
	}()
	stop = func() error {
		cancel()
		select {
		case <-done:
			return *err
		case <-time.After(5 * time.Second):
			t.Errorf("%s: Watch did not return within 5s of its context ending", name)
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return updates, done, stop
}
