package memberlist_test

import (
	"testing"
	"time"

	gcmemberlist "github.com/typedcache/groupcache/discovery/memberlist"
	"github.com/typedcache/groupcache/internal/discoverytest"
)

// gcMember is a member (see discoverytest.Member) fed its peer set by a memberlist source.
type gcMember struct {
	*discoverytest.Member
	src *gcmemberlist.Source
}

// startMember starts a member whose source joins seeds; Stop shuts the source down.
func startMember(t *testing.T, loads *discoverytest.LoadCount, seeds ...string) *gcMember {
	t.Helper()
	m := discoverytest.NewMember(t, loads)
	src, err := gcmemberlist.New(gcmemberlist.Config{
		PeerAddr:         m.Node.Self(), // the groupcache address, not the gossip one
		BindAddr:         "127.0.0.1",
		Join:             seeds,
		MemberlistConfig: fastConfig(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Run(src, func() { src.Shutdown() })
	return &gcMember{Member: m, src: src}
}

// Three groupcache nodes find each other through memberlist and discovery.Run alone (no static
// peer list): every key is then loaded exactly once in the whole cluster, by its owner, whichever
// node asks. After a member leaves, the other two re-shard between themselves.
func TestFeedsGroupcacheNodes(t *testing.T) {
	t.Parallel()
	loads := new(discoverytest.LoadCount)
	start := time.Now()
	ms := []*gcMember{startMember(t, loads)}
	seed := ms[0].src.GossipAddr()
	ms = append(ms, startMember(t, loads, seed), startMember(t, loads, seed))
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.Node.Self())
	}
	for _, m := range ms {
		m.Member.WaitPeers(t, addrs, 10*time.Second)
	}
	t.Logf("3 groupcache nodes have the full peer set %v after start", time.Since(start).Round(time.Millisecond))

	const keys = 60
	for _, m := range ms {
		m.GetKeys(t, "k", keys)
	}
	loads.CheckSpread(t, keys, 3)

	// Member 2 leaves gracefully; the two others shard between themselves.
	start = time.Now()
	if err := ms[2].src.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ms[2].Stop()
	ms[0].Member.WaitPeers(t, addrs[:2], 10*time.Second)
	ms[1].Member.WaitPeers(t, addrs[:2], 10*time.Second)
	t.Logf("after a Leave, the others apply the 2-node set in %v", time.Since(start).Round(time.Millisecond))
	for _, m := range ms[:2] {
		m.GetKeys(t, "new", keys)
	}
	loads.CheckOnce(t, "new", keys, "after the leave")
}
