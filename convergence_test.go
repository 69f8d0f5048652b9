package groupcache_test

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
)

// membership is a membership service in miniature: every subscribed source is told the full
// member list whenever it changes, as a gossip or registry backend would.
type membership struct {
	mu      sync.Mutex
	members []string        // guarded by mu
	subs    []chan []string // guarded by mu
}

func (m *membership) set(members []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = slices.Clone(members)
	for _, s := range m.subs {
		select { // keep only the newest list in each subscriber
		case <-s:
		default:
		}
		s <- slices.Clone(members)
	}
}

func (m *membership) source() discovery.Source {
	return discovery.SourceFunc(func(ctx context.Context, updates chan<- discovery.Update) error {
		sub := make(chan []string, 1)
		m.mu.Lock()
		m.subs = append(m.subs, sub)
		sub <- slices.Clone(m.members)
		m.mu.Unlock()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case peers := <-sub:
				select {
				case updates <- discovery.Update{Peers: peers}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
	})
}

// TestDiscoveryConverges drives every node of a cluster from one membership source through
// discovery.Run and checks, after each membership change, that all nodes agree on the owner of
// each of 10,000 keys within a bounded time.
func TestDiscoveryConverges(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 4)
	m := &membership{}
	m.set(cl.Addrs[:3]) // node 3 is running but not a member yet
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	quiet := slog.New(slog.DiscardHandler)
	for _, n := range cl.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			discovery.Run(ctx, n, m.source(), discovery.WithDebounce(10*time.Millisecond), discovery.WithLogger(quiet))
		}()
	}

	agree := func(members []string) {
		t.Helper()
		want := slices.Sorted(slices.Values(members))
		deadline := time.Now().Add(10 * time.Second)
		for _, i := range memberIndexes(cl.Addrs, members) {
			for !slices.Equal(cl.Nodes[i].Peers(), want) {
				if time.Now().After(deadline) {
					t.Fatalf("node %d has peers %v, want %v", i, cl.Nodes[i].Peers(), want)
				}
				runtime.Gosched()
			}
		}
		// Every node's ring is built from its peer set alone: rebuild them to compare owners.
		rings := make(map[int]*hash.Ring)
		for _, i := range memberIndexes(cl.Addrs, members) {
			r, err := hash.NewRing(cl.Nodes[i].Peers())
			if err != nil {
				t.Fatal(err)
			}
			rings[i] = r
		}
		for k := range 10_000 {
			key := []byte("key-" + strconv.Itoa(k))
			var first string
			for j, i := range memberIndexes(cl.Addrs, members) {
				owner, _ := rings[i].Owner(key)
				if j == 0 {
					first = owner
				} else if owner != first {
					t.Fatalf("key %s: node %d says %s, another node %s", key, i, owner, first)
				}
			}
		}
	}
	agree(cl.Addrs[:3])
	m.set(cl.Addrs) // node 3 joins
	agree(cl.Addrs)
	m.set([]string{cl.Addrs[0], cl.Addrs[1], cl.Addrs[3]}) // node 2 leaves
	agree([]string{cl.Addrs[0], cl.Addrs[1], cl.Addrs[3]})
	m.set(nil) // a broken source reports nobody: the nodes keep the last good set
	agree([]string{cl.Addrs[0], cl.Addrs[1], cl.Addrs[3]})
}

func memberIndexes(addrs, members []string) []int {
	var out []int
	for i, a := range addrs {
		if slices.Contains(members, a) {
			out = append(out, i)
		}
	}
	return out
}

func TestClosingTheNodeStopsDiscovery(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	done := make(chan error, 1)
	go func() {
		done <- discovery.Run(context.Background(), cl.Nodes[0], discovery.Static(cl.Addrs...),
			discovery.WithLogger(slog.New(slog.DiscardHandler)))
	}()
	cl.Kill(0)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the node was closed")
	}
}
