package kubernetes_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	"github.com/typedcache/groupcache/internal/discoverytest"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// gcMember is one "pod" of the test: a member (see discoverytest.Member) fed its peer set by a
// Source watching the fake clientset's EndpointSlices through discovery.Run.
type gcMember struct {
	*discoverytest.Member
	host string
	port int32
}

func startMember(t *testing.T, c *fake.Clientset, loads *discoverytest.LoadCount) *gcMember {
	t.Helper()
	m := discoverytest.NewMember(t, loads)
	host, p, _ := net.SplitHostPort(m.Node.Self())
	pn, _ := strconv.Atoi(p)
	src, err := gck8s.New(gck8s.Config{Client: c, Namespace: ns, Service: svc, PortName: "groupcache"})
	if err != nil {
		t.Fatal(err)
	}
	m.Run(src, nil, discovery.WithDebounce(10*time.Millisecond))
	return &gcMember{Member: m, host: host, port: int32(pn)}
}

// podSlice is the EndpointSlice of one member: its 127.0.0.1 address and its own port, named
// "groupcache". (In a cluster every pod has its own IP and the same port; here all share
// 127.0.0.1, so each needs its own port, and a slice lists a single set of ports.)
func (m *gcMember) podSlice(ready bool) *discoveryv1.EndpointSlice {
	e := ep(m.host)
	e.Conditions.Ready = &ready
	return slice("gc-"+strconv.Itoa(int(m.port)), svc, []discoveryv1.EndpointPort{port("groupcache", m.port)}, e)
}

// Three groupcache nodes get their peer sets from the Service's EndpointSlices alone (no static
// list): every key is then loaded exactly once in the whole cluster, whichever node asks. When
// one pod turns not ready, the other two drop it and reshard between themselves.
func TestFeedsGroupcacheNodes(t *testing.T) {
	t.Parallel()
	c := client(t)
	loads := new(discoverytest.LoadCount)
	var ms []*gcMember
	var addrs []string
	for range 3 {
		m := startMember(t, c, loads)
		ms = append(ms, m)
		addrs = append(addrs, m.Node.Self())
	}
	for _, m := range ms {
		create(t, c, m.podSlice(true))
	}
	for _, m := range ms {
		m.Member.WaitPeers(t, addrs, wait)
	}

	const keys = 60
	for _, m := range ms {
		m.GetKeys(t, "k", keys)
	}
	loads.CheckSpread(t, keys, 3)

	// The third pod fails its readiness probe: the two others drop it. (It keeps itself in its
	// own set: discovery.Run always adds the node itself.)
	update(t, c, ms[2].podSlice(false))
	ms[0].Member.WaitPeers(t, addrs[:2], wait)
	ms[1].Member.WaitPeers(t, addrs[:2], wait)
	for _, m := range ms[:2] {
		m.GetKeys(t, "new", keys)
	}
	loads.CheckOnce(t, "new", keys, "after the pod turned not ready")
}
