package etcd_test

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
	gcetcd "github.com/typedcache/groupcache/discovery/etcd"
)

// gcMember is one process of the test: a groupcache node serving on 127.0.0.1, fed its peer set
// by an etcd source with a client of its own.
type gcMember struct {
	node    *groupcache.Node
	src     *gcetcd.Source
	cache   *groupcache.Cache[string, string]
	applied chan []string // each peer set applied to the node
	cancel  context.CancelFunc
	done    chan struct{}
}

// startMember starts the node, its source and discovery.Run between them.
func startMember(t *testing.T, e *etcdServer, loads *loadCount) *gcMember {
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
		loads.add(addr, k)
		return "value-" + k, nil
	}), groupcache.WithNode(node), groupcache.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	src, err := gcetcd.New(gcetcd.Config{
		Client:   e.client(),
		Prefix:   "/test/groupcache/",
		PeerAddr: addr,
		TTL:      2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &gcMember{node: node, src: src, cache: cache, applied: make(chan []string, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		err := discovery.Run(ctx, node, src, discovery.WithLogger(quiet), discovery.WithOnApply(func(peers []string, err error) {
			if err != nil {
				t.Errorf("%s: SetPeers(%v): %v", addr, peers, err)
				return
			}
			select {
			case m.applied <- peers:
			default:
			}
		}))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Run = %v, want context.Canceled", addr, err)
		}
	}()
	t.Cleanup(func() {
		m.stop()
		cache.Close()
		node.Close()
		<-served
	})
	return m
}

func (m *gcMember) stop() {
	m.cancel()
	<-m.done
	m.src.Close()
}

// waitPeers waits until the node's applied peer set is want.
func (m *gcMember) waitPeers(t *testing.T, want []string, timeout time.Duration) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if slices.Equal(m.node.Peers(), want) {
		return
	}
	deadline := time.After(timeout)
	for {
		select {
		case got := <-m.applied:
			if slices.Equal(got, want) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: peers %v, want %v after %v", m.node.Self(), m.node.Peers(), want, timeout)
		}
	}
}

type loadCount struct {
	mu     sync.Mutex
	byKey  map[string]int
	byNode map[string]int
}

func (l *loadCount) add(node, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKey[key]++
	l.byNode[node]++
}

// Three groupcache nodes find each other through etcd and discovery.Run alone (no static peer
// list): every key is then loaded exactly once in the whole cluster, by its owner, whichever node
// asks. After a node stops, the other two re-shard between themselves.
func TestFeedsGroupcacheNodes(t *testing.T) {
	e := startEtcd(t)
	loads := &loadCount{byKey: map[string]int{}, byNode: map[string]int{}}
	start := time.Now()
	var ms []*gcMember
	for range 3 {
		ms = append(ms, startMember(t, e, loads))
	}
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.node.Self())
	}
	for _, m := range ms {
		m.waitPeers(t, addrs, 10*time.Second)
	}
	t.Logf("3 groupcache nodes have the full peer set %v after start", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	const keys = 60
	for _, m := range ms {
		for i := range keys {
			k := fmt.Sprint("k", i)
			if v, err := m.cache.Get(ctx, k); err != nil || v != "value-"+k {
				t.Fatalf("%s: Get(%s) = %q, %v", m.node.Self(), k, v, err)
			}
		}
	}
	loads.mu.Lock()
	for k, n := range loads.byKey {
		if n != 1 {
			t.Errorf("key %s loaded %d times, want once in the cluster", k, n)
		}
	}
	if len(loads.byKey) != keys || len(loads.byNode) != 3 {
		t.Errorf("%d keys loaded by %d nodes (%v), want %d keys spread over 3 nodes", len(loads.byKey), len(loads.byNode), loads.byNode, keys)
	}
	loads.mu.Unlock()

	// Node 2 stops (its lease revoked as its Run ends); the two others shard between themselves.
	start = time.Now()
	ms[2].stop()
	ms[0].waitPeers(t, addrs[:2], 10*time.Second)
	ms[1].waitPeers(t, addrs[:2], 10*time.Second)
	t.Logf("after a stop, the others apply the 2-node set in %v", time.Since(start).Round(time.Millisecond))
	for _, m := range ms[:2] {
		for i := range keys {
			k := fmt.Sprint("new", i)
			if v, err := m.cache.Get(ctx, k); err != nil || v != "value-"+k {
				t.Fatalf("%s: Get(%s) = %q, %v", m.node.Self(), k, v, err)
			}
		}
	}
	loads.mu.Lock()
	defer loads.mu.Unlock()
	for i := range keys {
		if n := loads.byKey[fmt.Sprint("new", i)]; n != 1 {
			t.Errorf("key new%d loaded %d times after the stop, want once", i, n)
		}
	}
}
