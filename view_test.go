package groupcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/internal/testcluster"
)

// viewValues memoizes viewValue.
var viewValues sync.Map

// viewValue is the value of key in the View tests: its bytes differ from key to key, and so does
// its length (from 1 KiB to about 64 KiB), so that a value read into memory still holding another
// one's bytes would show. Keys of even number have values that compress (they travel compressed),
// the others values that do not.
func viewValue(key string) []byte {
	if v, ok := viewValues.Load(key); ok {
		return v.([]byte)
	}
	n, _ := strconv.Atoi(key[1:])
	b := make([]byte, 1<<10+(n%8)*9000)
	x := uint64(n)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		if n%2 == 0 {
			b[i] = byte(n + i/64)
			continue
		}
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	viewValues.Store(key, b)
	return b
}

// viewCache makes the []byte cache "v" (codec.Bytes) on node with load as its loader.
func viewCache(t testing.TB, node *groupcache.Node, load groupcache.LoaderFunc[string, []byte], opts ...groupcache.Option) *groupcache.Cache[string, []byte] {
	t.Helper()
	c, err := groupcache.New[string, []byte]("v", load,
		append([]groupcache.Option{groupcache.WithNode(node), groupcache.WithCodec(codec.Bytes())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// viewCaches makes one viewCache per node of cl whose loader answers viewValue, or
// groupcache.ErrNotFound for keys starting with "n"; it counts the loads.
func viewCaches(t testing.TB, cl *testcluster.Cluster, loads *atomic.Int64, opts ...groupcache.Option) []*groupcache.Cache[string, []byte] {
	t.Helper()
	var caches []*groupcache.Cache[string, []byte]
	for _, n := range cl.Nodes {
		caches = append(caches, viewCache(t, n, func(_ context.Context, k string) ([]byte, error) {
			loads.Add(1)
			if k[0] == 'n' {
				return nil, fmt.Errorf("no %s: %w", k, groupcache.ErrNotFound)
			}
			return viewValue(k), nil
		}, opts...))
	}
	return caches
}

// checkView views key in c and checks, inside fn, that the value is key's.
func checkView(c *groupcache.Cache[string, []byte], key string) error {
	called := false
	err := c.View(context.Background(), key, func(v []byte) error {
		called = true
		if !bytes.Equal(v, viewValue(key)) {
			return fmt.Errorf("View(%s): wrong value (%d bytes)", key, len(v))
		}
		return nil
	})
	if err == nil && !called {
		return fmt.Errorf("View(%s): fn not called", key)
	}
	return err
}

// TestViewRemoteHits views keys of both nodes, from many goroutines at once, with the hot store
// on: every value seen inside fn is the key's own, although remote values are read into memory
// reused from View to View, and the values the hot store kept stay intact afterwards.
func TestViewRemoteHits(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	var loads atomic.Int64
	caches := viewCaches(t, cl, &loads)
	const keys = 64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := "k" + strconv.Itoa((g*13+i)%keys)
				if err := checkView(caches[g%2], k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := loads.Load(); n != keys {
		t.Fatalf("%d loads for %d keys", n, keys)
	}
	st := caches[0].Stats()
	if st.RemoteGets == 0 || st.HotItems == 0 {
		t.Fatalf("no remote hit or no hot copy: %+v", st)
	}
	// The hot copies (promoted from memory View read them into) survive later Views.
	for i := range keys {
		k := "k" + strconv.Itoa(i)
		for _, c := range caches {
			if err := checkView(c, k); err != nil {
				t.Fatal(err)
			}
			if v, err := c.Get(context.Background(), k); err != nil || !bytes.Equal(v, viewValue(k)) {
				t.Fatalf("Get(%s) after Views: %v", k, err)
			}
		}
	}
}

// TestViewErrors checks what View returns when there is no value, and that fn's error comes back
// as it is.
func TestViewErrors(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2, groupcache.WithPeerBackoff(time.Hour))
	var loads atomic.Int64
	caches := viewCaches(t, cl, &loads, groupcache.WithHotFraction(0))
	ctx := context.Background()
	never := func([]byte) error { t.Fatal("fn called"); return nil }

	// The remote owner's "not found" is believed: no local load.
	nk := "n" + keyOwnedBy(t, cl, 1)[1:]
	for ownerOf(t, cl, nk) != 1 {
		nk += "x"
	}
	if err := caches[0].View(ctx, nk, never); !errors.Is(err, groupcache.ErrNotFound) {
		t.Fatalf("remote not found: %v", err)
	}
	if loads.Load() != 1 {
		t.Fatalf("%d loads for a remote not found", loads.Load())
	}

	// fn's error, as it is, for a remote hit and for a local one.
	errFn := errors.New("fn failed")
	for _, k := range []string{keyOwnedBy(t, cl, 1), keyOwnedBy(t, cl, 0)} {
		if err := caches[0].View(ctx, k, func([]byte) error { return errFn }); err != errFn {
			t.Fatalf("View(%s) = %v, want fn's error", k, err)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := caches[0].View(cctx, "k999", never); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}

	// A dead owner: the key is loaded here, once.
	k := keyOwnedBy(t, cl, 1, keyOwnedBy(t, cl, 1))
	cl.Kill(1)
	before := loads.Load()
	for range 3 {
		if err := checkView(caches[0], k); err != nil {
			t.Fatal(err)
		}
	}
	if st := caches[0].Stats(); loads.Load() != before+1 || st.FallbackLoads != 1 {
		t.Fatalf("dead owner: %d loads, stats %+v", loads.Load()-before, st)
	}

	caches[0].Close()
	if err := caches[0].View(ctx, k, never); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// TestViewAlone checks View on a cache without a node.
func TestViewAlone(t *testing.T) {
	t.Parallel()
	c := groupcache.MustNew[string, []byte]("alone", groupcache.LoaderFunc[string, []byte](
		func(_ context.Context, k string) ([]byte, error) { return viewValue(k), nil }), groupcache.WithCodec(codec.Bytes()))
	defer c.Close()
	for range 2 { // a load, then a hit
		if err := checkView(c, "k7"); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Loads != 1 || st.Hits != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestViewLoadTimeout checks that the load timeout bounds a View's remote fetch as it bounds
// Get's: an owner stuck in its load is given up after it, marked down, and the key loaded here.
func TestViewLoadTimeout(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2, groupcache.WithPeerBackoff(time.Hour))
	release := make(chan struct{})
	defer close(release)
	var caches []*groupcache.Cache[string, []byte]
	// The asking node gives up after 200 ms; the owner would go on loading for a minute.
	timeouts := []time.Duration{200 * time.Millisecond, time.Minute}
	for i, n := range cl.Nodes {
		caches = append(caches, viewCache(t, n, func(ctx context.Context, k string) ([]byte, error) {
			if i == 1 {
				select { // the owner is stuck
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return viewValue(k), nil
		}, groupcache.WithLoadTimeout(timeouts[i])))
	}
	k := keyOwnedBy(t, cl, 1)
	start := time.Now()
	if err := checkView(caches[0], k); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("View took %v with a load timeout of 200ms", took)
	}
	if st := caches[0].Stats(); st.FallbackLoads != 1 || st.RemoteErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestViewSharesFlight has Views and Gets of one remote key wait together for a slow owner: every
// caller sees the right value, the values the Gets returned keep it after later Views reuse the
// memory the first View was lent, and each caller either asked the owner or shared a request.
func TestViewSharesFlight(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	slow := keyOwnedBy(t, cl, 1)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var caches []*groupcache.Cache[string, []byte]
	for i, n := range cl.Nodes {
		caches = append(caches, viewCache(t, n, func(ctx context.Context, k string) ([]byte, error) {
			if i == 1 && k == slow {
				started <- struct{}{}
				<-release
			}
			return viewValue(k), nil
		}, groupcache.WithHotFraction(0)))
	}
	const callers = 21
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	gets := make([][]byte, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				errs <- checkView(caches[0], slow)
				return
			}
			v, err := caches[0].Get(context.Background(), slow)
			gets[i] = v
			errs <- err
		}()
		if i == 0 {
			<-started // the first caller's request is at the owner, loading
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := caches[0].Stats()
	if st.RemoteGets+st.Deduplicated != callers {
		t.Fatalf("%d remote gets and %d shared for %d callers", st.RemoteGets, st.Deduplicated, callers)
	}
	t.Logf("%d callers: %d shared a request", callers, st.Deduplicated)
	// Views of other keys whose values have the same length (and compress alike) reuse the
	// memory lent to the Views above.
	n, _ := strconv.Atoi(slow[1:])
	for i := n + 8; i < n+8*40; i += 8 {
		if k := "k" + strconv.Itoa(i); ownerOf(t, cl, k) == 1 {
			if err := checkView(caches[0], k); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, v := range gets {
		if i%2 == 1 && !bytes.Equal(v, viewValue(slow)) {
			t.Fatalf("the value Get %d returned changed under later Views", i)
		}
	}
}
