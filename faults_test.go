package groupcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/peer"
)

// leavingCluster is a cluster of three nodes on real sockets in which node 2 (the one that
// leaves) answers "from2-<key>" once released, and the others answer "value-<key>": a Get's value
// tells who loaded it.
type leavingCluster struct {
	cl      *testcluster.Cluster
	caches  []*groupcache.Cache[string, string]
	release chan struct{}
	once    sync.Once
	loading atomic.Int64  // loads node 2 has begun
	began   chan struct{} // one per load node 2 begins
}

// unblock lets node 2's loads answer.
func (lc *leavingCluster) unblock() { lc.once.Do(func() { close(lc.release) }) }

func newLeavingCluster(t *testing.T) *leavingCluster {
	t.Helper()
	lc := &leavingCluster{cl: testcluster.Start(t, 3), release: make(chan struct{}), began: make(chan struct{}, 64)}
	t.Cleanup(lc.unblock)
	lc.caches = stringCaches(t, lc.cl, "c", newLoadLog(), func(ctx context.Context, node int, k string) (string, error) {
		if node != 2 {
			return "value-" + k, nil
		}
		lc.loading.Add(1)
		select {
		case lc.began <- struct{}{}:
		default:
		}
		select {
		case <-lc.release:
			return "from2-" + k, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	return lc
}

// inFlight starts, from nodes 0 and 1, Gets of n keys node 2 owns, and returns once node 2 is
// loading every one of them; each Get's value or error then comes on the channel, in any order.
func (lc *leavingCluster) inFlight(t *testing.T, n int) (keys []string, results chan [2]string) {
	t.Helper()
	results = make(chan [2]string, n)
	keys = keysOwnedIn(t, lc.cl.Addrs, lc.cl.Addrs[2], n)
	for i, k := range keys {
		go func() {
			v, err := lc.caches[i%2].Get(context.Background(), k)
			if err != nil {
				v = "error: " + err.Error()
			}
			results <- [2]string{k, v}
		}()
	}
	for range n {
		<-lc.began
	}
	return keys, results
}

// untilRefused waits until node 2 refuses new connections: it has begun to leave.
func (lc *leavingCluster) untilRefused(t *testing.T) {
	t.Helper()
	c, err := peer.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		// Before: "not found". After: Leaving on the open connection, then 503 on a new one.
		_, err := c.Peek(context.Background(), lc.cl.Addrs[2], "c", []byte("x"))
		if errors.Is(err, peer.ErrUnavailable) || peer.StatusOf(err) == peer.StatusLeaving {
			return
		}
		runtime.Gosched()
	}
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	t.Parallel()
	lc := newLeavingCluster(t)
	_, results := lc.inFlight(t, 12)
	done := make(chan error, 1)
	go func() { done <- lc.cl.Shutdown(context.Background(), 2) }()
	lc.untilRefused(t)

	// Node 2 takes no new request: keys it owns are loaded by the node that asks, and none fails.
	for i, k := range keysOwnedIn(t, lc.cl.Addrs, lc.cl.Addrs[2], 32)[12:] {
		if v, err := lc.caches[i%2].Get(context.Background(), k); err != nil || v != "value-"+k {
			t.Fatalf("Get(%s) while node 2 leaves = %q, %v; want a local load", k, v, err)
		}
	}
	if got := lc.loading.Load(); got != 12 {
		t.Fatalf("node 2 began %d loads; want only the 12 in flight when it began to leave", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with requests in flight", err)
	default:
	}

	lc.unblock()
	for range 12 {
		r := <-results
		if r[1] != "from2-"+r[0] {
			t.Errorf("Get(%s) in flight during Shutdown = %q; want node 2's answer", r[0], r[1])
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := lc.cl.Nodes[2].Shutdown(context.Background()); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("second Shutdown = %v, want ErrClosed", err)
	}
}

// TestShutdownPastDeadlineFallsBack: requests still in flight when Shutdown's ctx ends, or when
// the owner is closed, fail over to their callers' own loads.
func TestShutdownPastDeadlineFallsBack(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"shutdown", "close"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			lc := newLeavingCluster(t)
			_, results := lc.inFlight(t, 12)
			if how == "close" {
				lc.cl.Kill(2)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				if err := lc.cl.Shutdown(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v, want the deadline's error", err)
				}
			}
			for range 12 {
				if r := <-results; r[1] != "value-"+r[0] {
					t.Errorf("Get(%s) cut short on its owner = %q; want a local load", r[0], r[1])
				}
			}
		})
	}
}

// TestRestartedOwnerServesAgain: a node that comes back at its address is used again within a
// probe's period, not when the back-off ends.
func TestRestartedOwnerServesAgain(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 3, groupcache.WithPeerBackoff(time.Hour))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	keys := keysOwnedIn(t, cl.Addrs, cl.Addrs[2], 1000)
	k := keys[0]
	if err := cl.Shutdown(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := caches[0].Get(context.Background(), k); err != nil { // marks node 2 down
		t.Fatal(err)
	}
	restarted := cl.Restart(2)
	start := time.Now()
	c2, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		log.add(restarted.Self(), k)
		return "from2-" + k, nil
	}), groupcache.WithNode(restarted))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	for _, k := range keys[1:] {
		v, err := caches[0].Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if v == "from2-"+k {
			t.Logf("the restarted owner served its keys again %v after its restart", time.Since(start))
			return
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the restarted owner is not asked %v after its restart", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond) // polls a condition: how soon node 0 asks node 2 again
	}
}

// TestBlackHolePeerCostsOneTimeout: against a peer that accepts connections and never answers,
// concurrent Gets of its keys wait for one dial together, and fail over at once when it fails
// instead of dialing again one after another.
func TestBlackHolePeerCostsOneTimeout(t *testing.T) {
	t.Parallel()
	hole, accepted := blackHole(t)
	const timeout = 300 * time.Millisecond // the dial's; a call's own is 5 s
	node, self := startNode(t, []string{hole}, groupcache.WithPeerOptions(peer.WithDialTimeout(timeout)))
	c := groupcache.MustNew[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		return "value-" + k, nil
	}), groupcache.WithNode(node))
	t.Cleanup(func() { c.Close() })
	var wg sync.WaitGroup
	var worst atomic.Int64
	for _, k := range keysOwnedIn(t, []string{self, hole}, hole, 16) {
		wg.Go(func() {
			start := time.Now()
			if v, err := c.Get(context.Background(), k); err != nil || v != "value-"+k {
				t.Errorf("Get(%s) = %q, %v", k, v, err)
			}
			d := int64(time.Since(start))
			for w := worst.Load(); d > w && !worst.CompareAndSwap(w, d); w = worst.Load() {
			}
		})
	}
	wg.Wait()
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections to the black hole; want 1", n)
	}
	if w := time.Duration(worst.Load()); w >= 2*timeout {
		t.Errorf("the slowest Get took %v; want one dial timeout (%v)", w, timeout)
	}
}

// keysOwnedIn returns n keys that owner owns in the ring of peers.
func keysOwnedIn(t *testing.T, peers []string, owner string, n int) []string {
	t.Helper()
	r, err := hash.NewRing(peers)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := "k" + strconv.Itoa(i)
		if p, _ := r.Owner(keyBytes(t, k)); p == owner {
			keys = append(keys, k)
		}
	}
	return keys
}

// blackHole listens on a loopback port, accepts connections and never answers. It returns the
// address and the count of connections accepted.
func blackHole(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), &n
}

// TestPeerNamesAreCanonical: nodes that name a peer differently ("localhost:p" on one,
// "127.0.0.1:p" on the other) agree on the ring: each key is loaded once.
func TestPeerNamesAreCanonical(t *testing.T) {
	t.Parallel()
	if _, err := groupcache.NewNode("127.0.0.1:99999"); !errors.Is(err, groupcache.ErrInvalidOption) {
		t.Fatalf("NewNode with port 99999: %v", err)
	}
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lb.Addr().String())
	b, err := groupcache.NewNode("LOCALHOST:0" + port)
	if err != nil {
		t.Fatal(err)
	}
	if b.Self() != "127.0.0.1:"+port {
		t.Fatalf("Self() = %q", b.Self())
	}
	var wg sync.WaitGroup
	wg.Go(func() { b.Serve(lb) })
	t.Cleanup(func() { b.Close(); wg.Wait() })
	a, aAddr := startNode(t, []string{"localhost:" + port})
	if err := b.SetPeers(aAddr, "127.0.0.1:"+port); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPeers("[::ffff:127.0.0.1]:"+port, aAddr, "localhost:"+port); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Peers(), b.Peers(); !slices.Equal(got, want) {
		t.Fatalf("peer sets %v and %v", got, want)
	}
	if err := a.SetPeers(aAddr, "127.0.0.1:99999"); !errors.Is(err, groupcache.ErrInvalidOption) {
		t.Fatalf("SetPeers with port 99999: %v", err)
	}
	var loads atomic.Int64
	var caches []*groupcache.Cache[string, string]
	for _, n := range []*groupcache.Node{a, b} {
		c := groupcache.MustNew[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
			loads.Add(1)
			return "value-" + k, nil
		}), groupcache.WithNode(n))
		t.Cleanup(func() { c.Close() })
		caches = append(caches, c)
	}
	for i := range 100 {
		for _, c := range caches {
			if _, err := c.Get(context.Background(), "k"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := loads.Load(); n != 100 {
		t.Fatalf("%d loads for 100 keys", n)
	}
	if n := a.Stats().Misnamed + b.Stats().Misnamed; n != 0 {
		t.Fatalf("%d connections misnamed", n)
	}
}

// TestMisnamedPeerIsCounted: a node that reaches a peer under another name than the peer's own
// counts it and logs it.
func TestMisnamedPeerIsCounted(t *testing.T) {
	t.Parallel()
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A forwarder: the peer set of node a names node b by the forwarder's address.
	fwd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })
	go forward(fwd, lb.Addr().String())
	b, err := groupcache.NewNode(lb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { b.Serve(lb) })
	t.Cleanup(func() { b.Close(); wg.Wait() })
	var logs lockedBuffer
	a, aAddr := startNode(t, []string{fwd.Addr().String()},
		groupcache.WithNodeLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := groupcache.MustNew[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		return "value-" + k, nil
	}), groupcache.WithNode(a))
	t.Cleanup(func() { c.Close() })
	k := keysOwnedIn(t, []string{aAddr, fwd.Addr().String()}, fwd.Addr().String(), 1)[0]
	if _, err := c.Get(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if n := a.Stats().Misnamed; n != 1 {
		t.Fatalf("Misnamed = %d, want 1", n)
	}
	if s := logs.String(); !strings.Contains(s, "names itself") || !strings.Contains(s, "claims="+lb.Addr().String()) {
		t.Fatalf("no log of the misnamed peer in %q", s)
	}
}

// forward copies the connections l accepts to and from addr, until l is closed.
func forward(l net.Listener, addr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			d, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer d.Close()
			go func() { io.Copy(d, c); d.Close() }()
			io.Copy(c, d)
		}()
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, for logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRollingGracefulRestart: every node of five, one after the other, leaves with Shutdown and
// comes back at its address while Gets run on every node: none fails or returns a wrong value.
func TestRollingGracefulRestart(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 5)
	var caches [5]atomic.Pointer[groupcache.Cache[string, string]]
	attach := func(i int) {
		c := groupcache.MustNew[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
			return "value-" + k, nil
		}), groupcache.WithNode(cl.Nodes[i]))
		t.Cleanup(func() { c.Close() }) // a replaced cache stays usable: a Get may still hold it
		caches[i].Store(c)
	}
	for i := range caches {
		attach(i)
	}
	var gets, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := w; ; n += 7 {
				select {
				case <-stop:
					return
				default:
				}
				k := "k" + strconv.Itoa(n%500)
				v, err := caches[n%5].Load().Get(context.Background(), k)
				gets.Add(1)
				if err != nil || v != "value-"+k {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("Get(%s) = %q, %v", k, v, err))
				}
			}
		})
	}
	for i := range caches {
		before := gets.Load()
		for gets.Load() < before+100 { // load on the cluster as node i leaves
			runtime.Gosched()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cl.Shutdown(ctx, i); err != nil {
			t.Errorf("Shutdown of node %d: %v", i, err)
		}
		cancel()
		cl.Restart(i)
		attach(i)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d Gets failed during the rolling restart; first: %v", n, gets.Load(), firstErr.Load())
	}
	t.Logf("%d Gets during a rolling graceful restart of 5 nodes, 0 failed", gets.Load())
}

// TestRejoinedPeerIsAskedAtOnce: a peer that leaves the peer set, restarts at its address and
// joins again is asked at once: what the old connection still holds (its notice that it was
// leaving) does not make the node skip the new process.
func TestRejoinedPeerIsAskedAtOnce(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2, groupcache.WithPeerBackoff(time.Hour))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	k := keyOwnedBy(t, cl, 1)
	if _, err := caches[0].Get(context.Background(), k); err != nil { // a connection to node 1
		t.Fatal(err)
	}
	if err := cl.Nodes[0].SetPeers(cl.Addrs[0]); err != nil {
		t.Fatal(err)
	}
	if err := cl.Shutdown(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cl.Restart(1)
	groupcache.MustNew[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		return "value-" + k, nil
	}), groupcache.WithNode(cl.Nodes[1]))
	if err := cl.Nodes[0].SetPeers(cl.Addrs...); err != nil {
		t.Fatal(err)
	}
	for _, k2 := range []string{keyOwnedBy(t, cl, 1, k), keyOwnedBy(t, cl, 1, k, keyOwnedBy(t, cl, 1, k))} {
		if v, err := caches[0].Get(context.Background(), k2); err != nil || v != "value-"+k2 {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if st := caches[0].Stats(); st.FallbackLoads != 0 {
		t.Fatalf("the rejoined peer was skipped: %+v", st)
	}
}

// TestCallerGivingUpKeepsPeerInUse: a GetMany whose caller gives up while the keys' owner is
// loading them (its context cancelled; GetMany fetches with the caller's context) fails alone;
// the owner is not taken for down: the next Get of another of its keys is still asked of it.
func TestCallerGivingUpKeepsPeerInUse(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	log := newLoadLog()
	slow := keyOwnedBy(t, cl, 1)
	caches := stringCaches(t, cl, "c", log, func(ctx context.Context, node int, key string) (string, error) {
		if key == slow {
			started <- struct{}{}
			<-release
		}
		return "value-" + key, nil
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- caches[0].GetMany(ctx, []string{slow})[0].Err }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up got %v", err)
	}
	// The fetch ends with the caller's context (its latency is recorded then).
	for deadline := time.Now().Add(20 * time.Second); cl.Nodes[0].Stats().Peers[cl.Addrs[1]].FetchLatency.Count() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned fetch did not end")
		}
		time.Sleep(time.Millisecond)
	}
	other := keyOwnedBy(t, cl, 1, slow)
	if v, err := caches[0].Get(context.Background(), other); err != nil || v != "value-"+other {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if st := caches[0].Stats(); st.FallbackLoads != 0 {
		t.Fatalf("the owner was skipped after a caller gave up: %+v", st)
	}
}
