package groupcache

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache/peer"
)

// offerCache is a cache on node "127.0.0.1:1" of the peers 1, 2 and 3 (never dialled: offers are
// handed to the cache directly), with a clock the test moves.
func offerCache(t *testing.T) (*Cache[string, string], *atomic.Int64, *atomic.Int64) {
	t.Helper()
	n, err := NewNode("127.0.0.1:1", WithPeers("127.0.0.1:2", "127.0.0.1:3"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	var now, loads atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c, err := New[string, string]("c", LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		loads.Add(1)
		return "loaded-" + k, nil
	}), WithNode(n), WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
	if err != nil {
		t.Fatal(err)
	}
	return c, &now, &loads
}

// keyWhere returns a key for which pick, given the key, its owner and the owner once that one is
// gone, holds.
func keyWhere(t *testing.T, n *Node, pick func(k, owner, next string) bool) string {
	t.Helper()
	r := n.ring.Load()
	for i := range 10_000 {
		k := "key" + strconv.Itoa(i)
		owner, _ := r.OwnerString(k)
		next, _ := r.OwnerWithout([]byte(k), owner)
		if pick(k, owner, next) {
			return k
		}
	}
	t.Fatal("no such key")
	return ""
}

// TestOfferRules: a value handed over is stored only when this node owns its key or will once the
// owner is gone, holds nothing for it, has not seen it written within the hand-off window, and the
// value has time to live; the answer is nil either way.
func TestOfferRules(t *testing.T) {
	t.Parallel()
	c, now, loads := offerCache(t)
	n := c.node
	self := n.self
	offered := func(k string, v peer.Value) bool {
		t.Helper()
		if err := c.offerFromPeer([]byte(k), v); err != nil {
			t.Fatalf("offer of %s: %v", k, err)
		}
		_, ok := c.liveItem(k)
		return ok
	}
	val := func(s string) peer.Value {
		b, err := c.values.Append(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		return peer.Value{Data: b, TTL: time.Hour}
	}

	mine := keyWhere(t, n, func(_, owner, _ string) bool { return owner == self })
	next := keyWhere(t, n, func(_, owner, next string) bool { return owner != self && next == self })
	other := keyWhere(t, n, func(_, owner, next string) bool { return owner != self && next != self })
	if !offered(mine, val("a")) || !offered(next, val("b")) {
		t.Fatal("a value of a key this node owns, or would own once the owner is gone, was declined")
	}
	if offered(other, val("c")) {
		t.Fatal("a value of a key this node would not own was stored")
	}
	if got, err := c.Get(context.Background(), mine); err != nil || got != "a" || loads.Load() != 0 {
		t.Fatalf("Get of a key handed over = %q, %v after %d loads", got, err, loads.Load())
	}
	if offered(mine, val("newer")); mustItem(t, c, mine) != "a" {
		t.Fatal("an offer replaced a value held")
	}

	// A key written here lately is declined for the hand-off window, then taken again.
	k2 := keyWhere(t, n, func(k, owner, _ string) bool { return owner == self && k != mine })
	if err := c.removeFromPeer([][]byte{[]byte(k2)}); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(n.window) / 2)
	if offered(k2, val("old")) {
		t.Fatal("a value of a key removed half a window ago was stored")
	}
	now.Add(int64(n.window) * 2)
	if !offered(k2, val("later")) {
		t.Fatal("a value of a key removed two windows ago was declined")
	}

	// A Clear declines every offer for the window.
	if err := c.clearFromPeer(uint64(now.Load())); err != nil {
		t.Fatal(err)
	}
	if offered(mine, val("after clear")) {
		t.Fatal("a value offered right after a Clear was stored")
	}
	now.Add(int64(n.window) * 2)
	// An expired value, and any value once the node is leaving, are declined.
	if expired := val("x"); offered(mine, peer.Value{Data: expired.Data, TTL: -1}) {
		t.Fatal("an expired value was stored")
	}
	n.leaving.Store(true)
	if offered(mine, val("leaving")) {
		t.Fatal("a leaving node stored a value handed over")
	}
	n.leaving.Store(false)
	if !offered(mine, val("back")) {
		t.Fatal("a value was declined once the window after the Clear ended")
	}
}

func mustItem(t *testing.T, c *Cache[string, string], k string) string {
	t.Helper()
	it, ok := c.liveItem(k)
	if !ok {
		t.Fatalf("%s is not held", k)
	}
	return it.v
}

// TestRecentWrites: a key written is remembered for at least one period and forgotten after two;
// a Clear marks every key for one period.
func TestRecentWrites(t *testing.T) {
	t.Parallel()
	const period = int64(time.Minute)
	now := int64(1)
	w := newRecentWrites(period, now)
	a, b := []byte("a"), []byte("b")
	if w.wrote(a, now) {
		t.Fatal("a key never written is reported written")
	}
	w.record(a, now+period-1) // just before the first rotation
	for _, at := range []int64{now + period - 1, now + period, now + 2*period - 2} {
		if !w.wrote(a, at) {
			t.Fatalf("a key written at %d is forgotten at %d, within a period", now+period-1, at)
		}
	}
	if w.wrote(b, now+2*period-2) {
		t.Fatal("another key is reported written")
	}
	if w.wrote(a, now+3*period) {
		t.Fatal("a key written two periods ago is still reported")
	}
	w.clear(now + 3*period)
	if !w.wrote(b, now+3*period+1) || w.wrote(b, now+4*period+1) {
		t.Fatal("a Clear is not remembered for exactly a period")
	}
}

// TestOfferAuthorization: by default a node takes offers from its peers and, for the hand-off
// window, from the peers its last peer-set change dropped (a node that left hands its values over
// after the others dropped it); other writes only from its peers.
func TestOfferAuthorization(t *testing.T) {
	t.Parallel()
	c, _, _ := offerCache(t)
	n := c.node
	const gone, stranger = "127.0.0.1:3", "127.0.0.1:9"
	if !n.authorize(gone, peer.OpOffer) || n.authorize(stranger, peer.OpOffer) || n.authorize("", peer.OpOffer) {
		t.Fatal("offers: a peer refused, or a stranger allowed")
	}
	if err := n.SetPeers("127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	if !n.authorize(gone, peer.OpOffer) || n.authorize(gone, peer.OpSet) || n.authorize(gone, peer.OpRemove) {
		t.Fatal("a peer just dropped: its offers must be taken, its other writes refused")
	}
	if !n.authorize(stranger, peer.OpGet) || n.authorize(stranger, peer.OpOffer) {
		t.Fatal("a stranger may read, not offer")
	}
}
