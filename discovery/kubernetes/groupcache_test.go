package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// gcMember is one "pod" of the test: a groupcache node serving on 127.0.0.1, fed its peer set by
// a Source watching the fake clientset's EndpointSlices through discovery.Run.
type gcMember struct {
	node    *groupcache.Node
	cache   *groupcache.Cache[string, string]
	host    string
	port    int32
	applied chan []string // each peer set applied to the node
}

func startMember(t *testing.T, c *fake.Clientset, loads *loadCount) *gcMember {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	host, p, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(p)
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
	src, err := gck8s.New(gck8s.Config{Client: c, Namespace: ns, Service: svc, PortName: "groupcache"})
	if err != nil {
		t.Fatal(err)
	}
	m := &gcMember{node: node, cache: cache, host: host, port: int32(pn), applied: make(chan []string, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := discovery.Run(ctx, node, src, discovery.WithLogger(quiet), discovery.WithDebounce(10*time.Millisecond),
			discovery.WithOnApply(func(peers []string, err error) {
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
		cancel()
		<-done
		cache.Close()
		node.Close()
		<-served
	})
	return m
}

// podSlice is the EndpointSlice of one member: its 127.0.0.1 address and its own port, named
// "groupcache". (In a cluster every pod has its own IP and the same port; here all share
// 127.0.0.1, so each needs its own port, and a slice lists a single set of ports.)
func (m *gcMember) podSlice(ready bool) *discoveryv1.EndpointSlice {
	e := ep(m.host)
	e.Conditions.Ready = &ready
	return slice("gc-"+strconv.Itoa(int(m.port)), svc, []discoveryv1.EndpointPort{port("groupcache", m.port)}, e)
}

// waitPeers waits until the node's applied peer set is want.
func (m *gcMember) waitPeers(t *testing.T, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	if slices.Equal(m.node.Peers(), want) {
		return
	}
	deadline := time.After(wait)
	for {
		select {
		case got := <-m.applied:
			if slices.Equal(got, want) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: peers %v, want %v after %v", m.node.Self(), m.node.Peers(), want, wait)
		}
	}
}

type loadCount struct {
	mu    sync.Mutex
	byKey map[string]int
	nodes map[string]bool
}

func (l *loadCount) add(node, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKey[key]++
	l.nodes[node] = true
}

// Three groupcache nodes get their peer sets from the Service's EndpointSlices alone (no static
// list): every key is then loaded exactly once in the whole cluster, whichever node asks. When
// one pod turns not ready, the other two drop it and reshard between themselves.
func TestFeedsGroupcacheNodes(t *testing.T) {
	c := client(t)
	loads := &loadCount{byKey: map[string]int{}, nodes: map[string]bool{}}
	var ms []*gcMember
	var addrs []string
	for range 3 {
		m := startMember(t, c, loads)
		ms = append(ms, m)
		addrs = append(addrs, m.node.Self())
	}
	for _, m := range ms {
		create(t, c, m.podSlice(true))
	}
	for _, m := range ms {
		m.waitPeers(t, addrs)
	}

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
	if len(loads.byKey) != keys || len(loads.nodes) != 3 {
		t.Errorf("%d keys loaded by %d nodes, want %d keys spread over 3 nodes", len(loads.byKey), len(loads.nodes), keys)
	}
	loads.mu.Unlock()

	// The third pod fails its readiness probe: the two others drop it. (It keeps itself in its
	// own set: discovery.Run always adds the node itself.)
	update(t, c, ms[2].podSlice(false))
	ms[0].waitPeers(t, addrs[:2])
	ms[1].waitPeers(t, addrs[:2])
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
			t.Errorf("key new%d loaded %d times after the pod turned not ready, want once", i, n)
		}
	}
}
