package etcd_test

import (
	"testing"
	"time"

	gcetcd "github.com/typedcache/groupcache/discovery/etcd"
	"github.com/typedcache/groupcache/internal/discoverytest"
)

// startMember starts a member (see discoverytest.Member) fed its peer set by an etcd source with
// a client of its own; Stop closes the source.
func startMember(t *testing.T, e *etcdServer, loads *discoverytest.LoadCount) *discoverytest.Member {
	t.Helper()
	m := discoverytest.NewMember(t, loads)
	src, err := gcetcd.New(gcetcd.Config{
		Client:   e.client(),
		Prefix:   "/test/groupcache/",
		PeerAddr: m.Node.Self(),
		TTL:      2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Run(src, func() { src.Close() })
	return m
}

// Three groupcache nodes find each other through etcd and discovery.Run alone (no static peer
// list): every key is then loaded exactly once in the whole cluster, by its owner, whichever node
// asks. After a node stops, the other two re-shard between themselves.
func TestFeedsGroupcacheNodes(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	loads := new(discoverytest.LoadCount)
	start := time.Now()
	var ms []*discoverytest.Member
	for range 3 {
		ms = append(ms, startMember(t, e, loads))
	}
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.Node.Self())
	}
	for _, m := range ms {
		m.WaitPeers(t, addrs, 10*time.Second)
	}
	t.Logf("3 groupcache nodes have the full peer set %v after start", time.Since(start).Round(time.Millisecond))

	const keys = 60
	for _, m := range ms {
		m.GetKeys(t, "k", keys)
	}
	loads.CheckSpread(t, keys, 3)

	// Node 2 stops (its lease revoked as its Run ends); the two others shard between themselves.
	start = time.Now()
	ms[2].Stop()
	ms[0].WaitPeers(t, addrs[:2], 10*time.Second)
	ms[1].WaitPeers(t, addrs[:2], 10*time.Second)
	t.Logf("after a stop, the others apply the 2-node set in %v", time.Since(start).Round(time.Millisecond))
	for _, m := range ms[:2] {
		m.GetKeys(t, "new", keys)
	}
	loads.CheckOnce(t, "new", keys, "after the stop")
}
