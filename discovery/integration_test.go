package discovery_test

import (
	"slices"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
)

// TestRunDrivesNode runs discovery.Run against a real groupcache.Node and checks that the node's
// peer set (Node.Peers) converges to what the source reports. The node does not serve and no Get
// runs, so the peer addresses are only data: nothing dials them.
func TestRunDrivesNode(t *testing.T) {
	t.Parallel()
	t.Run("Static", func(t *testing.T) {
		t.Parallel()
		node := newNode(t, "127.0.0.1:9001")
		src := discovery.Static("127.0.0.1:9003", "not-an-address", "127.0.0.1:9002", "127.0.0.1:9003")
		r, applied := running(t, node, src)
		want := []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}
		nextApplied(t, applied)
		if got := node.Peers(); !slices.Equal(got, want) {
			t.Errorf("node.Peers() = %q, want %q", got, want)
		}
		if st := r.Stats(); st.Applied != 1 || st.Dropped != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("DNS", func(t *testing.T) {
		t.Parallel()
		const name = "peers.cache.test."
		srv := startDNSServer(t)
		srv.set(name, recA("192.0.2.3"), recA("192.0.2.2")) // without the node itself
		node := newNode(t, "192.0.2.1:9001")
		src := discovery.DNS(name, 9001, discovery.WithResolver(srv.resolver(false)), discovery.WithInterval(poll))
		r, applied := running(t, node, src)

		converge := func(want ...string) {
			t.Helper()
			waitFor(t, "the node's peers", func() bool {
				select {
				case <-applied:
				default:
				}
				return slices.Equal(node.Peers(), want)
			})
		}
		converge("192.0.2.1:9001", "192.0.2.2:9001", "192.0.2.3:9001")
		srv.set(name, recA("192.0.2.1"), recA("192.0.2.4"), recAAAA("2001:db8::5"))
		converge("192.0.2.1:9001", "192.0.2.4:9001", "[2001:db8::5]:9001")
		srv.fail(rcodeServFail)
		rejected := r.Stats().Rejected
		waitFor(t, "two failed lookups", func() bool { return r.Stats().Rejected >= rejected+2 })
		if got, want := node.Peers(), []string{"192.0.2.1:9001", "192.0.2.4:9001", "[2001:db8::5]:9001"}; !slices.Equal(got, want) {
			t.Errorf("after failed lookups node.Peers() = %q, want %q", got, want)
		}
	})
}

func newNode(t *testing.T, self string) *groupcache.Node {
	t.Helper()
	node, err := groupcache.NewNode(self, groupcache.WithNodeLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}
