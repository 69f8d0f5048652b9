package groupcache_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
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

// year2100 is an expiry no cache of these tests allows.
var year2100 = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// rawClient returns a peer client that claims to be the node at self (a member of the peer set,
// as a compromised node would be), closed at the end of the test.
func rawClient(t *testing.T, self string) *peer.Client {
	t.Helper()
	c, err := peer.NewClient(peer.WithSelf(self))
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

// TestHostileSetExpiryBoundedByTTL: a peer's Set with an expiry in the year 2100 (or none) keeps
// the value no longer than the cache's TTL from its arrival.
func TestHostileSetExpiryBoundedByTTL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires int64
	}{{"year 2100", year2100}, {"never", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testcluster.Start(t, 1)
			clk := clock.NewFake(hostileEpoch)
			log := newLoadLog()
			c := stringCaches(t, cl, "c", log, nil, groupcache.WithTTL(time.Minute), groupcache.WithClock(clk.Now))[0]
			attacker := rawClient(t, cl.Addrs[0])
			ctx := context.Background()
			err := attacker.Set(ctx, cl.Addrs[0], "c", keyBytes(t, "k"), peer.Value{Data: valueBytes(t, "planted"), Expires: tc.expires})
			if err != nil {
				t.Fatalf("Set from the peer: %v", err)
			}
			clk.Advance(time.Minute - time.Second)
			if v, err := c.Get(ctx, "k"); err != nil || v != "planted" {
				t.Fatalf("Get within the TTL = %q, %v; want the value the peer set", v, err)
			}
			clk.Advance(2 * time.Second)
			if v, err := c.Get(ctx, "k"); err != nil || v != "value-k" {
				t.Fatalf("Get past the TTL = %q, %v; want the loader's value (the peer's expiry must not outlive the TTL)", v, err)
			}
		})
	}
}

// TestPeerExpiryKeptWithoutTTL: a cache without a TTL keeps its entries until evicted, and keeps
// a peer's expiry as sent (it gives the value no longer a life than a local Set would).
func TestPeerExpiryKeptWithoutTTL(t *testing.T) {
	cl := testcluster.Start(t, 1)
	clk := clock.NewFake(hostileEpoch)
	c := stringCaches(t, cl, "c", newLoadLog(), nil, groupcache.WithClock(clk.Now))[0]
	ctx := context.Background()
	expires := hostileEpoch.Add(10 * time.Second).UnixNano()
	err := rawClient(t, cl.Addrs[0]).Set(ctx, cl.Addrs[0], "c", keyBytes(t, "k"), peer.Value{Data: valueBytes(t, "planted"), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "k"); v != "planted" {
		t.Fatalf("Get before the peer's expiry = %q", v)
	}
	clk.Advance(11 * time.Second)
	if v, _ := c.Get(ctx, "k"); v != "value-k" {
		t.Fatalf("Get after the peer's expiry = %q, want a reload", v)
	}
}

// hostileOwner is a fake node that answers every Get, GetMany, Peek and PeekMany with one value
// that claims to expire in the year 2100, and counts the requests.
type hostileOwner struct {
	value                 []byte
	gets, getManys, peeks atomic.Int64
	unexpectedWrite       atomic.Bool
}

func (h *hostileOwner) val() peer.Value { return peer.Value{Data: h.value, Expires: year2100} }

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
// peek) with an expiry in the year 2100 are kept no longer than the receiving cache's TTL, even
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
				t.Fatalf("requests to the owner after the TTL = %d, want 2: the owner's expiry in 2100 outlived the TTL", n)
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
