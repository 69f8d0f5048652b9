package groupcache_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/clock"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/peer"
)

// The tests of this file play a hostile peer against real nodes over real sockets on 127.0.0.1:
// a raw *peer.Client sending requests a node would never send, or a fake node answering with
// values no owner would send. What they check is the root package's side: the bounds on what a
// peer can make a cache keep, clear or load.

// hostileEpoch is the fake clock's start in these tests.
var hostileEpoch = time.Unix(1_700_000_000, 0)

// century is a lifetime no cache of these tests allows.
const century = 100 * 365 * 24 * time.Hour

// rawClient returns a peer client that claims to be the node at self (a member of the peer set,
// as a compromised node would be), closed at the end of the test.
func rawClient(t *testing.T, self string, opts ...peer.ClientOption) *peer.Client {
	t.Helper()
	c, err := peer.NewClient(append([]peer.ClientOption{peer.WithSelf(self)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keyBytes returns the bytes a cache of string keys sends for k.
func keyBytes(t testing.TB, k string) []byte {
	t.Helper()
	kc, ok := codec.Key[string]()
	if !ok {
		t.Fatal("no key codec for string")
	}
	b, err := kc.Append(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// valueBytes returns the wire bytes of a string value of a cache with the default codec.
func valueBytes(t testing.TB, v string) []byte {
	t.Helper()
	b, err := codec.CBOR[string]().Append(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyOfRing returns a key that the ring of addrs gives to owner.
func keyOfRing(t testing.TB, addrs []string, owner, prefix string) string {
	t.Helper()
	r, err := hash.NewRing(addrs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		k := prefix + strconv.Itoa(i)
		if o, _ := r.Owner(keyBytes(t, k)); o == owner {
			return k
		}
	}
	t.Fatalf("no key owned by %s", owner)
	return ""
}

// TestHostileSetExpiryBoundedByTTL: a peer's Set with a lifetime of a century, the longest one
// the wire can say, or none, keeps the value no longer than the cache's TTL from its arrival.
func TestHostileSetExpiryBoundedByTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"a century", century}, {"longest", math.MaxInt64}, {"never", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testcluster.Start(t, 2) // node 1 is the one the attacker claims to be
			clk := clock.NewFake(hostileEpoch)
			log := newLoadLog()
			c := stringCaches(t, cl, "c", log, nil, groupcache.WithTTL(time.Minute), groupcache.WithClock(clk.Now))[0]
			k := keyOwnedBy(t, cl, 0)
			attacker := rawClient(t, cl.Addrs[1])
			ctx := context.Background()
			err := attacker.Set(ctx, cl.Addrs[0], "c", keyBytes(t, k), peer.Value{Data: valueBytes(t, "planted"), TTL: tc.ttl})
			if err != nil {
				t.Fatalf("Set from the peer: %v", err)
			}
			clk.Advance(time.Minute - time.Second)
			if v, err := c.Get(ctx, k); err != nil || v != "planted" {
				t.Fatalf("Get within the TTL = %q, %v; want the value the peer set", v, err)
			}
			clk.Advance(2 * time.Second)
			if v, err := c.Get(ctx, k); err != nil || v != "value-"+k {
				t.Fatalf("Get past the TTL = %q, %v; want the loader's value (the peer's expiry must not outlive the TTL)", v, err)
			}
		})
	}
}

// TestPeerExpiryKeptWithoutTTL: a cache without a TTL keeps its entries until evicted, and keeps
// a peer's lifetime as sent (it gives the value no longer a life than a local Set would).
func TestPeerExpiryKeptWithoutTTL(t *testing.T) {
	cl := testcluster.Start(t, 2)
	clk := clock.NewFake(hostileEpoch)
	c := stringCaches(t, cl, "c", newLoadLog(), nil, groupcache.WithClock(clk.Now))[0]
	ctx := context.Background()
	k := keyOwnedBy(t, cl, 0)
	err := rawClient(t, cl.Addrs[1]).Set(ctx, cl.Addrs[0], "c", keyBytes(t, k), peer.Value{Data: valueBytes(t, "planted"), TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, k); v != "planted" {
		t.Fatalf("Get before the peer's expiry = %q", v)
	}
	clk.Advance(11 * time.Second)
	if v, _ := c.Get(ctx, k); v != "value-"+k {
		t.Fatalf("Get after the peer's expiry = %q, want a reload", v)
	}
}

// hostileOwner is a fake node that answers every Get, GetMany, Peek and PeekMany with one value
// that claims to live for a century, and counts the requests.
type hostileOwner struct {
	value                 []byte
	gets, getManys, peeks atomic.Int64
	unexpectedWrite       atomic.Bool
}

func (h *hostileOwner) val() peer.Value { return peer.Value{Data: h.value, TTL: century} }

func (h *hostileOwner) Get(context.Context, string, []byte) (peer.Value, error) {
	h.gets.Add(1)
	return h.val(), nil
}

func (h *hostileOwner) GetInline(string, []byte) (peer.Value, bool, error) {
	return peer.Value{}, false, nil
}

func (h *hostileOwner) Peek(context.Context, string, []byte) (peer.Value, error) {
	h.peeks.Add(1)
	return h.val(), nil
}

func (h *hostileOwner) GetMany(_ context.Context, _ string, keys [][]byte) ([]peer.Result, error) {
	h.getManys.Add(1)
	return h.many(len(keys)), nil
}

func (h *hostileOwner) PeekMany(_ context.Context, _ string, keys [][]byte) ([]peer.Result, error) {
	h.peeks.Add(1)
	return h.many(len(keys)), nil
}

func (h *hostileOwner) many(n int) []peer.Result {
	rs := make([]peer.Result, n)
	for i := range rs {
		rs[i].Value = h.val()
	}
	return rs
}

func (h *hostileOwner) Set(context.Context, string, []byte, peer.Value) error {
	h.unexpectedWrite.Store(true)
	return nil
}

func (h *hostileOwner) Offer(context.Context, string, []byte, peer.Value) error {
	h.unexpectedWrite.Store(true)
	return nil
}

func (h *hostileOwner) Remove(context.Context, string, [][]byte) error { return nil }

func (h *hostileOwner) Clear(context.Context, string, uint64) error { return nil }

// startHostileOwner serves h on a loopback port until the end of the test and returns its address.
func startHostileOwner(t *testing.T, h *hostileOwner) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := peer.NewServer(h, peer.WithServerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return l.Addr().String()
}

// TestHostileOwnerExpiryBounded: values an owner sends (a Get's reply, a GetMany's, a hand-off's
// peek) with a lifetime of a century are kept no longer than the receiving cache's TTL, even
// when the hot TTL is longer.
func TestHostileOwnerExpiryBounded(t *testing.T) {
	for _, path := range []string{"get", "getmany", "handoff"} {
		t.Run(path, func(t *testing.T) {
			h := &hostileOwner{value: valueBytes(t, "from-hostile-owner")}
			bad := startHostileOwner(t, h)
			cl := testcluster.Start(t, 1)
			self := cl.Addrs[0]
			clk := clock.NewFake(hostileEpoch)
			c := stringCaches(t, cl, "c", newLoadLog(), nil, groupcache.WithTTL(time.Minute), groupcache.WithHotTTL(time.Hour),
				groupcache.WithPromoter(func(uint64, int) bool { return true }), groupcache.WithClock(clk.Now))[0]
			if err := cl.Nodes[0].SetPeers(self, bad); err != nil {
				t.Fatal(err)
			}
			k := keyOfRing(t, []string{self, bad}, bad, "k")
			count := &h.gets
			get := func() string {
				v, err := c.Get(context.Background(), k)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			switch path {
			case "getmany":
				count = &h.getManys
				get = func() string {
					r := c.GetMany(context.Background(), []string{k})[0]
					if r.Err != nil {
						t.Fatal(r.Err)
					}
					return r.Value
				}
			case "handoff": // this node becomes the owner and takes the value over from the hostile one
				count = &h.peeks
				if err := cl.Nodes[0].SetPeers(self); err != nil {
					t.Fatal(err)
				}
			}
			if v := get(); v != "from-hostile-owner" {
				t.Fatalf("first Get = %q", v)
			}
			clk.Advance(time.Minute - time.Second)
			if v := get(); v != "from-hostile-owner" || count.Load() != 1 {
				t.Fatalf("Get within the TTL = %q after %d requests to the owner; want a hit", v, count.Load())
			}
			clk.Advance(2 * time.Second)
			get()
			if n := count.Load(); n != 2 {
				t.Fatalf("requests to the owner after the TTL = %d, want 2: the owner's century outlived the TTL", n)
			}
			if h.unexpectedWrite.Load() {
				t.Fatal("the node sent the hostile owner a Set")
			}
		})
	}
}

// TestHostileClearGeneration: a Clear of generation 2^64-1 is refused with StatusBadRequest and
// clears nothing; a legitimate Clear afterwards still clears the node. A generation within the
// allowed skew is adopted, and still does not keep a later legitimate Clear from clearing.
func TestHostileClearGeneration(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gen     func() uint64
		refused bool
	}{
		{"max", func() uint64 { return math.MaxUint64 }, true},
		{"past the skew", func() uint64 { return uint64(time.Now().Add(2 * time.Minute).UnixNano()) }, true},
		{"within the skew", func() uint64 { return uint64(time.Now().Add(30 * time.Second).UnixNano()) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testcluster.Start(t, 2)
			log := newLoadLog()
			caches := stringCaches(t, cl, "c", log, nil)
			ctx := context.Background()
			victim := 1
			k := keyOwnedBy(t, cl, victim)
			caches[victim].Get(ctx, k)
			err := rawClient(t, cl.Addrs[0]).Clear(ctx, cl.Addrs[victim], "c", tc.gen())
			switch {
			case tc.refused && peer.StatusOf(err) != peer.StatusBadRequest:
				t.Fatalf("Clear of a generation %s = %v, want StatusBadRequest", tc.name, err)
			case !tc.refused && err != nil:
				t.Fatalf("Clear of a generation %s = %v, want it accepted", tc.name, err)
			}
			if tc.refused {
				caches[victim].Get(ctx, k)
				if n := log.total.Load(); n != 1 {
					t.Fatalf("loads after a refused Clear = %d, want 1: it cleared", n)
				}
			}
			caches[victim].Get(ctx, k) // loaded again if the accepted Clear emptied it
			before := log.total.Load()
			if err := caches[0].Clear(ctx); err != nil {
				t.Fatalf("legitimate Clear = %v", err)
			}
			caches[victim].Get(ctx, k)
			if n := log.total.Load(); n != before+1 {
				t.Fatalf("loads after a legitimate Clear = %d, want %d: the victim did not clear", n, before+1)
			}
		})
	}
}

// bombLoader counts the loader calls in progress (and their most at once) and the keys it is
// given; every call blocks until gate is closed, ignoring its context.
type bombLoader struct {
	gate          chan struct{}
	running, most atomic.Int64
	mu            sync.Mutex
	keys          map[string]int // guarded by mu
}

func (l *bombLoader) enter(keys ...string) {
	n := l.running.Add(1)
	for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
	}
	l.mu.Lock()
	for _, k := range keys {
		l.keys[k]++
	}
	l.mu.Unlock()
	<-l.gate
	l.running.Add(-1)
}

func (l *bombLoader) Load(_ context.Context, k string) (string, error) {
	l.enter(k)
	return "v" + k, nil
}

// bombBatchLoader is bombLoader with LoadMany: a call counts one, whatever its keys.
type bombBatchLoader struct{ *bombLoader }

func (l bombBatchLoader) LoadMany(_ context.Context, keys []string) ([]groupcache.Loaded[string], error) {
	l.enter(keys...)
	out := make([]groupcache.Loaded[string], len(keys))
	for i, k := range keys {
		out[i].Value = "v" + k
	}
	return out, nil
}

func bombKeys(prefix string, from, to int) []string {
	ks := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		ks = append(ks, prefix+strconv.Itoa(i))
	}
	return ks
}

// TestLoadBombBounded is the load bomb of a hostile peer: a GetMany of 4,096 new keys from a raw
// peer (OpGetMany), at the same time as a local GetMany of 4,096 new keys (half of them the
// peer's) and local Gets. The loader calls in progress never exceed WithMaxLoads, the others wait
// (Stats.LoadWaits), and once they may go on every distinct key is loaded exactly once.
func TestLoadBombBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch bool
		n     int
		waits int64 // contenders beyond n while the loaders are blocked
	}{
		// Load: each GetMany runs min(16, n) loads at once; with the 8 Gets that is 24 contenders.
		{"Load", false, 8, 16},
		// LoadMany: each GetMany runs one LoadMany at a time; with the 8 Gets that is 10.
		{"LoadMany", true, 2, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testcluster.Start(t, 1)
			addr := cl.Addrs[0]
			l := &bombLoader{gate: make(chan struct{}), keys: map[string]int{}}
			var loader groupcache.Loader[string, string] = l
			if tc.batch {
				loader = bombBatchLoader{l}
			}
			c, err := groupcache.New("c", loader, groupcache.WithNode(cl.Nodes[0]), groupcache.WithMaxLoads(tc.n))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			ctx := context.Background()
			local, remote, gets := bombKeys("k", 0, 4096), bombKeys("k", 2048, 6144), bombKeys("g", 0, 8)
			kbs := make([][]byte, len(remote))
			for i, k := range remote {
				kbs[i] = keyBytes(t, k)
			}
			attacker := rawClient(t, addr, peer.WithTimeout(time.Minute))
			var wg sync.WaitGroup
			var localRes []groupcache.Result[string]
			var remoteRes []peer.Result
			var remoteErr error
			wg.Go(func() { localRes = c.GetMany(ctx, local) })
			wg.Go(func() { remoteRes, remoteErr = attacker.GetMany(ctx, addr, "c", kbs) })
			getErrs := make([]error, len(gets))
			for i, k := range gets {
				wg.Go(func() { _, getErrs[i] = c.Get(ctx, k) })
			}
			deadline := time.Now().Add(30 * time.Second)
			for c.Stats().LoadWaits < tc.waits && l.most.Load() <= int64(tc.n) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // polls a state only counters show
			}
			if m := l.most.Load(); m > int64(tc.n) {
				t.Fatalf("%d loader calls in progress at once, over WithMaxLoads(%d)", m, tc.n)
			}
			if w := c.Stats().LoadWaits; w < tc.waits {
				t.Fatalf("LoadWaits = %d after 30 s, want %d", w, tc.waits)
			}
			close(l.gate)
			wg.Wait()
			if m := l.most.Load(); m > int64(tc.n) {
				t.Fatalf("%d loader calls in progress at once, over WithMaxLoads(%d)", m, tc.n)
			}
			if remoteErr != nil {
				t.Fatalf("the peer's GetMany: %v", remoteErr)
			}
			for i, r := range remoteRes {
				if r.Err != nil {
					t.Fatalf("the peer's GetMany, key %s: %v", remote[i], r.Err)
				}
			}
			for i, r := range localRes {
				if r.Err != nil || r.Value != "v"+local[i] {
					t.Fatalf("GetMany, key %s: %q, %v", local[i], r.Value, r.Err)
				}
			}
			for i, err := range getErrs {
				if err != nil {
					t.Fatalf("Get(%s): %v", gets[i], err)
				}
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if want := 6144 + len(gets); len(l.keys) != want {
				t.Fatalf("%d distinct keys loaded, want %d", len(l.keys), want)
			}
			for k, n := range l.keys {
				if n != 1 {
					t.Fatalf("key %s loaded %d times, want once", k, n)
				}
			}
		})
	}
}

// TestClearAcrossClockSkew: a node whose clock is more than a minute behind refuses the Clear of a
// node whose clock is ahead, and Clear reports it with ErrIncomplete; within a minute it clears.
func TestClearAcrossClockSkew(t *testing.T) {
	for _, tc := range []struct {
		skew    time.Duration
		refused bool
	}{{2 * time.Minute, true}, {30 * time.Second, false}} {
		t.Run(tc.skew.String(), func(t *testing.T) {
			cl := testcluster.Start(t, 2)
			ahead := clock.NewFake(time.Now().Add(tc.skew))
			log := newLoadLog()
			var caches []*groupcache.Cache[string, string]
			for i, n := range cl.Nodes {
				opts := []groupcache.Option{groupcache.WithNode(n)}
				if i == 0 {
					opts = append(opts, groupcache.WithClock(ahead.Now))
				}
				c, err := groupcache.New("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
					log.add(n.Self(), k)
					return "value-" + k, nil
				}), opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				caches = append(caches, c)
			}
			ctx := context.Background()
			k := keyOwnedBy(t, cl, 1)
			caches[1].Get(ctx, k)
			err := caches[0].Clear(ctx)
			caches[1].Get(ctx, k)
			cleared := log.total.Load() == 2
			switch {
			case tc.refused && (!errors.Is(err, groupcache.ErrIncomplete) || cleared):
				t.Fatalf("Clear from a clock %v ahead = %v, cleared %v; want ErrIncomplete and nothing cleared", tc.skew, err, cleared)
			case !tc.refused && (err != nil || !cleared):
				t.Fatalf("Clear from a clock %v ahead = %v, cleared %v; want it cleared", tc.skew, err, cleared)
			}
		})
	}
}
