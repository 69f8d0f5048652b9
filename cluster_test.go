package groupcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/peer"
)

// loadLog counts loads per node and per key across a whole in-process cluster.
type loadLog struct {
	mu     sync.Mutex
	byKey  map[string]int
	byNode map[string]int
	total  atomic.Int64
}

func newLoadLog() *loadLog { return &loadLog{byKey: map[string]int{}, byNode: map[string]int{}} }

func (l *loadLog) add(node, key string) {
	l.total.Add(1)
	l.mu.Lock()
	l.byKey[key]++
	l.byNode[node]++
	l.mu.Unlock()
}

// stringCaches makes one cache named name per node, whose loader answers "value-<key>" (or calls
// load when it is set) and records the load.
func stringCaches(t *testing.T, cl *testcluster.Cluster, name string, log *loadLog,
	load func(ctx context.Context, node int, key string) (string, error), opts ...groupcache.Option) []*groupcache.Cache[string, string] {
	t.Helper()
	var caches []*groupcache.Cache[string, string]
	for i, n := range cl.Nodes {
		c, err := groupcache.New[string, string](name, groupcache.LoaderFunc[string, string](func(ctx context.Context, k string) (string, error) {
			log.add(n.Self(), k)
			if load != nil {
				return load(ctx, i, k)
			}
			return "value-" + k, nil
		}), append([]groupcache.Option{groupcache.WithNode(n)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches = append(caches, c)
	}
	return caches
}

// ownerOf returns the index of the node owning key, computed with the same ring as the nodes.
func ownerOf(t testing.TB, cl *testcluster.Cluster, key string) int {
	t.Helper()
	r, err := hash.NewRing(cl.Addrs)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := codec.String().Append(nil, key)
	owner, _ := r.Owner(kb)
	for i, a := range cl.Addrs {
		if a == owner {
			return i
		}
	}
	t.Fatalf("no owner for %q", key)
	return -1
}

func TestClusterOneLoadPerKey(t *testing.T) {
	t.Parallel()
	// Timeouts far above what a loaded machine may take: this test is about single flight, and a
	// fetch that timed out would rightly fall back to a load of its own.
	cl := testcluster.Start(t, 3, groupcache.WithPeerOptions(peer.WithTimeout(time.Minute), peer.WithDialTimeout(time.Minute)))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	const keys, goroutines = 500, 50
	var wg sync.WaitGroup
	for _, c := range caches {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range keys {
					k := strconv.Itoa((i + g*7) % keys)
					v, err := c.Get(context.Background(), k)
					if err != nil || v != "value-"+k {
						t.Errorf("Get(%s) = %q, %v", k, v, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if n := log.total.Load(); n != keys {
		t.Fatalf("loads = %d, want exactly %d (one per key in the whole cluster)", n, keys)
	}
	for k, n := range log.byKey {
		if n != 1 {
			t.Fatalf("key %s loaded %d times", k, n)
		}
	}
	// Each key was loaded by its owner.
	log.mu.Lock()
	defer log.mu.Unlock()
	perNode := map[string]int{}
	for k := range log.byKey {
		perNode[cl.Addrs[ownerOf(t, cl, k)]]++
	}
	for node, n := range perNode {
		if log.byNode[node] != n {
			t.Fatalf("node %s loaded %d keys, owns %d", node, log.byNode[node], n)
		}
	}
	var remote, served int64
	for _, c := range caches {
		st := c.Stats()
		remote += st.RemoteGets
		served += st.PeerRequests
		if st.FallbackLoads != 0 || st.RemoteErrors != 0 {
			t.Fatalf("healthy cluster: stats %+v", st)
		}
	}
	if remote == 0 || remote != served {
		t.Fatalf("remote gets %d, peer requests served %d: want equal and non-zero", remote, served)
	}
}

func TestClusterRemoteNotFoundIsBelieved(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3)
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, func(_ context.Context, _ int, k string) (string, error) {
		return "", fmt.Errorf("no %s: %w", k, groupcache.ErrNotFound)
	})
	key := "missing"
	asker := (ownerOf(t, cl, key) + 1) % 3
	_, err := caches[asker].Get(context.Background(), key)
	if !errors.Is(err, groupcache.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no missing") {
		t.Fatalf("err = %v: the owner's loader's words are lost", err)
	}
	if n := log.total.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1 (on the owner only; no local fallback)", n)
	}
	if st := caches[asker].Stats(); st.FallbackLoads != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClusterLoaderErrorTravels(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, func(_ context.Context, _ int, k string) (string, error) {
		return "", errors.New("database is down")
	})
	key := keyOwnedBy(t, cl, 1)
	_, err := caches[0].Get(context.Background(), key)
	if !errors.Is(err, groupcache.ErrUnavailable) || !strings.Contains(err.Error(), "database is down") ||
		peer.StatusOf(err) != peer.StatusInternal || log.total.Load() != 1 {
		t.Fatalf("err = %v, loads = %d: want the owner's error (ErrUnavailable, its message kept) and one load", err, log.total.Load())
	}
}

// keyOwnedBy returns a key owned by node i.
func keyOwnedBy(t *testing.T, cl *testcluster.Cluster, i int, skip ...string) string {
	t.Helper()
	for n := 0; ; n++ {
		k := "k" + strconv.Itoa(n)
		if ownerOf(t, cl, k) == i && !contains(skip, k) {
			return k
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestClusterDeadOwnerFallsBackOncePerBackoff(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3, groupcache.WithPeerBackoff(time.Hour))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	k1 := keyOwnedBy(t, cl, 2)
	k2 := keyOwnedBy(t, cl, 2, k1)
	cl.Kill(2)

	v, err := caches[0].Get(context.Background(), k1)
	if err != nil || v != "value-"+k1 {
		t.Fatalf("Get with dead owner = %q, %v", v, err)
	}
	st := caches[0].Stats()
	if st.RemoteGets != 1 || st.RemoteErrors != 1 || st.FallbackLoads != 1 {
		t.Fatalf("after first fallback: %+v", st)
	}
	// The dead peer is skipped now: no network attempt for its other keys.
	if v, err := caches[0].Get(context.Background(), k2); err != nil || v != "value-"+k2 {
		t.Fatalf("second Get = %q, %v", v, err)
	}
	if st := caches[0].Stats(); st.RemoteGets != 1 || st.FallbackLoads != 2 {
		t.Fatalf("after second fallback: %+v (the dead peer was asked again)", st)
	}
	// The fallback value is kept as a hot copy: no further load.
	before := log.total.Load()
	caches[0].Get(context.Background(), k1)
	if log.total.Load() != before {
		t.Fatal("fallback value was not kept")
	}
}

func TestClusterSlowPeerDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3)
	release := make(chan struct{})
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, func(ctx context.Context, node int, k string) (string, error) {
		if node == 2 {
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return "value-" + k, nil
	})
	slowKey := keyOwnedBy(t, cl, 2)
	slow := make(chan error, 1)
	go func() { _, err := caches[0].Get(context.Background(), slowKey); slow <- err }()
	for log.total.Load() == 0 { // the slow owner is loading
		runtime.Gosched()
	}
	// Keys of the other nodes are served while node 2 is stuck.
	for i := 0; i < 20; i++ {
		k := "other" + strconv.Itoa(i)
		if ownerOf(t, cl, k) == 2 {
			continue
		}
		if v, err := caches[0].Get(context.Background(), k); err != nil || v != "value-"+k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	select {
	case err := <-slow:
		t.Fatalf("slow Get returned early: %v", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

func TestClusterCodecMismatchIsADecodeError(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	strs, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](
		func(context.Context, string) (string, error) { return "text", nil }), groupcache.WithNode(cl.Nodes[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer strs.Close()
	ints, err := groupcache.New[string, int]("c", groupcache.LoaderFunc[string, int](
		func(context.Context, string) (int, error) { return 42, nil }), groupcache.WithNode(cl.Nodes[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer ints.Close()
	v, err := strs.Get(context.Background(), keyOwnedBy(t, cl, 1))
	if ce, ok := errors.AsType[*codec.Error](err); !ok || ce.Op != "decode" || v != "" {
		t.Fatalf("Get = %q, %v; want a decode error", v, err)
	}
}

func TestClusterUnknownCacheOnPeerFallsBack(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	c, err := groupcache.New[string, string]("only-here", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) { return "v" + k, nil }), groupcache.WithNode(cl.Nodes[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := keyOwnedBy(t, cl, 1)
	if v, err := c.Get(context.Background(), k); err != nil || v != "v"+k {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if st := c.Stats(); st.RemoteErrors != 1 || st.FallbackLoads != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClusterHotCachePromotesByFrequency(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	k := keyOwnedBy(t, cl, 1)
	ctx := context.Background()
	for range 3 {
		if _, err := caches[0].Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	st := caches[0].Stats()
	// First fetch: seen once, not promoted. Second: promoted. Third Get: a hot hit.
	if st.RemoteGets != 2 || st.HotHits != 1 || st.HotItems != 1 {
		t.Fatalf("stats %+v", st)
	}
	if log.total.Load() != 1 {
		t.Fatalf("loads = %d", log.total.Load())
	}
	// A key fetched once is not copied.
	once := keyOwnedBy(t, cl, 1, k)
	caches[0].Get(ctx, once)
	if st := caches[0].Stats(); st.HotItems != 1 {
		t.Fatalf("one-off key promoted: %+v", st)
	}
}

func TestClusterValuesTravelCompressed(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	big := make([]byte, 0, 64<<10)
	for i := 0; len(big) < 64<<10; i++ {
		big = fmt.Appendf(big, "line %d of compressible text\n", i) // a few times smaller, as text is
	}
	c0 := groupcache.MustNew[string, []byte]("b", groupcache.LoaderFunc[string, []byte](
		func(context.Context, string) ([]byte, error) { return big, nil }),
		groupcache.WithNode(cl.Nodes[0]), groupcache.WithCodec(codec.Bytes()))
	defer c0.Close()
	c1 := groupcache.MustNew[string, []byte]("b", groupcache.LoaderFunc[string, []byte](
		func(context.Context, string) ([]byte, error) { return big, nil }),
		groupcache.WithNode(cl.Nodes[1]), groupcache.WithCodec(codec.Bytes()))
	defer c1.Close()
	v, err := c0.Get(context.Background(), keyOwnedBy(t, cl, 1))
	if err != nil || string(v) != string(big) {
		t.Fatalf("Get: %v (len %d)", err, len(v))
	}
	st := c0.Stats()
	if st.BytesReceivedRaw != int64(len(big)) || st.BytesReceived == 0 || st.BytesReceived >= st.BytesReceivedRaw/4 {
		t.Fatalf("received %d bytes for %d raw: want compressed", st.BytesReceived, st.BytesReceivedRaw)
	}
	if s1 := c1.Stats(); s1.BytesSent != st.BytesReceived || s1.BytesSentRaw != st.BytesReceivedRaw {
		t.Fatalf("owner sent %d/%d, asker received %d/%d", s1.BytesSent, s1.BytesSentRaw, st.BytesReceived, st.BytesReceivedRaw)
	}
}

func TestNodePeerSetChanges(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3)
	n := cl.Nodes[0]
	if err := n.SetPeers(cl.Addrs[1], cl.Addrs[2]); !errors.Is(err, groupcache.ErrInvalidOption) {
		t.Fatalf("SetPeers without self: %v", err)
	}
	if err := n.SetPeers(n.Self(), "no-port"); !errors.Is(err, groupcache.ErrInvalidOption) {
		t.Fatalf("SetPeers with a bad address: %v", err)
	}
	if got := len(n.Peers()); got != 3 {
		t.Fatalf("a refused change altered the peer set: %d peers", got)
	}

	// Gets keep working while the ring is swapped back and forth.
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				n.SetPeers(cl.Addrs[:2]...)
			} else {
				n.SetPeers(cl.Addrs...)
			}
		}
	}()
	for i := range 300 {
		k := strconv.Itoa(i)
		if v, err := caches[0].Get(context.Background(), k); err != nil || v != "value-"+k {
			t.Fatalf("Get(%s) during ring changes = %q, %v", k, v, err)
		}
	}
	close(stop)
	<-done
}

func TestNodeRejectsDuplicateCacheNames(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 1)
	load := groupcache.LoaderFunc[string, string](func(context.Context, string) (string, error) { return "", nil })
	c, err := groupcache.New[string, string]("same", load, groupcache.WithNode(cl.Nodes[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groupcache.New[string, string]("same", load, groupcache.WithNode(cl.Nodes[0])); !errors.Is(err, groupcache.ErrInvalidOption) {
		t.Fatalf("duplicate name: %v", err)
	}
	c.Close() // frees the name
	c2, err := groupcache.New[string, string]("same", load, groupcache.WithNode(cl.Nodes[0]))
	if err != nil {
		t.Fatalf("name after Close: %v", err)
	}
	c2.Close()
}

func TestClusterHandoffOnScaleOut(t *testing.T) {
	t.Parallel()
	const keys = 10_000
	cl := testcluster.Start(t, 3)
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	ctx := context.Background()
	get := func(i int) {
		k := "key-" + strconv.Itoa(i)
		if v, err := caches[i%len(caches)].Get(ctx, k); err != nil || v != "value-"+k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
	for i := range keys {
		get(i)
	}
	if n := log.total.Load(); n != keys {
		t.Fatalf("first pass: %d loads, want %d", n, keys)
	}

	// A fourth node joins: it takes over about a quarter of the keys.
	fourth := cl.Add()
	caches = append(caches, stringCaches(t, &testcluster.Cluster{Nodes: cl.Nodes[fourth:]}, "c", log, nil)...)
	cl.Announce()
	for i := range keys {
		get(i)
	}
	second := log.total.Load() - keys
	handoffs := caches[fourth].Stats().Handoffs
	t.Logf("second pass: %d loads, %d values handed off to the new node", second, handoffs)
	if second > keys/100 {
		t.Fatalf("second pass loaded %d keys, more than 1%% of %d", second, keys)
	}
	if handoffs < keys/8 {
		t.Fatalf("only %d hand-offs to the new node", handoffs)
	}
}

// A load in progress on an owner holds up none of the other requests a node sends it: they share
// one multiplexed connection, and the owner answers its hits while the load goes on.
func TestClusterSlowLoadDoesNotStallOwnersHits(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3)
	release := make(chan struct{})
	log := newLoadLog()
	var slowKey string
	caches := stringCaches(t, cl, "c", log, func(ctx context.Context, node int, k string) (string, error) {
		if k == slowKey {
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return "value-" + k, nil
	})
	slowKey = keyOwnedBy(t, cl, 2)
	var warm []string
	for i := 0; len(warm) < 20; i++ {
		if k := "warm" + strconv.Itoa(i); ownerOf(t, cl, k) == 2 {
			warm = append(warm, k)
		}
	}
	for _, k := range warm { // loaded on node 2, asked by node 1: node 0 holds no copy
		if _, err := caches[1].Get(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	loads := log.total.Load()
	slow := make(chan error, 1)
	go func() { _, err := caches[0].Get(context.Background(), slowKey); slow <- err }()
	for log.total.Load() == loads { // node 2 is loading the slow key
		runtime.Gosched()
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, k := range warm {
				if v, err := caches[0].Get(context.Background(), k); err != nil || v != "value-"+k {
					t.Errorf("Get(%s) = %q, %v", k, v, err)
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-slow:
		t.Fatalf("slow Get returned early: %v", err)
	default:
	}
	st := cl.Nodes[0].Stats().Client
	if st.OpenConns == 0 || st.Dials > 2 {
		t.Errorf("node 0's requests did not share multiplexed connections: %+v", st)
	}
	if got := log.total.Load(); got != loads+1 {
		t.Errorf("%d loads after the warm-up, want 1 (the slow key)", got-loads)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if d := cl.Nodes[2].Stats().Server.Detached; d < 1 {
		t.Errorf("the slow load did not run on a goroutine of its own: Detached %d", d)
	}
}

// warnings counts the records at Warn level that a logger's handler gets, by message.
type warnings struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *warnings) WithGroup(string) slog.Handler            { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		w.mu.Lock()
		w.n[r.Message]++
		w.mu.Unlock()
	}
	return nil
}

// TestClusterFallbackWarnsOncePerPeer: a peer that cannot serve any Get (it lacks the cache) is
// warned about once, not once per Get, while every Get falls back.
func TestClusterFallbackWarnsOncePerPeer(t *testing.T) {
	t.Parallel()
	w := &warnings{n: map[string]int{}}
	cl := testcluster.Start(t, 2, groupcache.WithNodeLogger(slog.New(w)))
	c, err := groupcache.New[string, string]("only-here", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) { return "v" + k, nil }), groupcache.WithNode(cl.Nodes[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var keys []string
	for len(keys) < 15 {
		keys = append(keys, keyOwnedBy(t, cl, 1, keys...))
	}
	for _, k := range keys {
		if v, err := c.Get(context.Background(), k); err != nil || v != "v"+k {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if st := c.Stats(); st.FallbackLoads != 15 {
		t.Fatalf("stats %+v", st)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	total := 0
	for _, n := range w.n {
		total += n
	}
	if total != 1 {
		t.Fatalf("%d warnings for 15 Gets a peer could not serve: %v", total, w.n)
	}
}

// TestNodeProbes: livez answers 200 until Close; readyz answers 200 once the peer set is known
// and until the node starts leaving, 503 otherwise; other paths still reach the peer server.
func TestNodeProbes(t *testing.T) {
	t.Parallel()
	get := func(n *groupcache.Node, path string) int {
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, peer.DefaultBasePath+path, nil))
		return w.Code
	}
	alone, err := groupcache.NewNode("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if get(alone, "livez") != 200 || get(alone, "readyz") != 503 {
		t.Fatalf("before its peer set: livez %d, readyz %d", get(alone, "livez"), get(alone, "readyz"))
	}
	if err := alone.SetPeers("127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if get(alone, "readyz") != 200 {
		t.Fatalf("with its peer set (itself): readyz %d", get(alone, "readyz"))
	}
	if code := get(alone, ""); code != http.StatusMethodNotAllowed && code != http.StatusBadRequest {
		t.Fatalf("the base path answered %d: not the peer server's refusal of a plain GET", code)
	}
	if err := alone.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if get(alone, "livez") != 503 || get(alone, "readyz") != 503 {
		t.Fatalf("after Shutdown: livez %d, readyz %d", get(alone, "livez"), get(alone, "readyz"))
	}

	cl := testcluster.Start(t, 2) // WithPeers: ready at once, over a real socket
	resp, err := http.Get("http://" + cl.Addrs[0] + peer.DefaultBasePath + "readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a node started with its peers: readyz %d", resp.StatusCode)
	}
}
