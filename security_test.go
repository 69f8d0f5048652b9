package groupcache_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/internal/testpki"
	"github.com/typedcache/groupcache/peer"
)

var (
	secretA = []byte("0123456789abcdef-the cluster's")
	secretB = []byte("0123456789abcdef-somebody else's")
)

// strangerClient is a peer.Client of a process that is not a node, closed at the end of the test.
func strangerClient(t *testing.T, opts ...peer.ClientOption) *peer.Client {
	t.Helper()
	c, err := peer.NewClient(append([]peer.ClientOption{peer.WithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantStatus fails unless err carries the peer status want.
func wantStatus(t *testing.T, what string, err error, want peer.Status) {
	t.Helper()
	if st := peer.StatusOf(err); st != want {
		t.Errorf("%s: status %v, want %v (err %v)", what, st, want, err)
	}
}

// TestNodeWritesOnlyFromMembers: by default a node serves reads to any peer it authenticates
// (here: loopback ones, as it has neither TLS nor a secret) and writes only to peers that claim an
// address of its peer set.
func TestNodeWritesOnlyFromMembers(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	caches := stringCaches(t, cl, "c", newLoadLog(), nil)
	ctx := context.Background()
	k := keyOwnedBy(t, cl, 0)
	v := peer.Value{Data: []byte{0x66, 'p', 'l', 'a', 'n', 't', 'e', 'd'}}

	for name, c := range map[string]*peer.Client{
		"no claim":   strangerClient(t),
		"non-member": strangerClient(t, peer.WithSelf("127.0.0.1:1")),
	} {
		if _, err := c.Get(ctx, cl.Addrs[0], "c", keyBytes(t, k)); err != nil {
			t.Fatalf("%s: a read was refused: %v", name, err)
		}
		wantStatus(t, name+": Set", c.Set(ctx, cl.Addrs[0], "c", keyBytes(t, k), v), peer.StatusForbidden)
		wantStatus(t, name+": Remove", c.Remove(ctx, cl.Addrs[0], "c", [][]byte{keyBytes(t, k)}), peer.StatusForbidden)
		wantStatus(t, name+": Clear", c.Clear(ctx, cl.Addrs[0], "c", uint64(time.Now().UnixNano())), peer.StatusForbidden)
	}
	if got, err := caches[0].Get(ctx, k); err != nil || got != "value-"+k {
		t.Fatalf("after refused writes, Get = %q, %v", got, err)
	}
	// A member's write is served: the other node's Set reaches the owner.
	if err := caches[1].Set(ctx, k, "from a member"); err != nil {
		t.Fatal(err)
	}
	if got, _ := caches[0].Get(ctx, k); got != "from a member" {
		t.Fatalf("owner has %q after a member's Set", got)
	}
}

// startNode serves a node at a fresh loopback address with opts until the end of the test.
func startNode(t *testing.T, peers []string, opts ...groupcache.NodeOption) (*groupcache.Node, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	n, err := groupcache.NewNode(addr, append([]groupcache.NodeOption{groupcache.WithPeers(append(peers, addr)...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { n.Serve(l) })
	t.Cleanup(func() { n.Close(); wg.Wait() })
	return n, addr
}

// TestNodeSharedSecret: nodes that share a secret serve each other; a node with another secret
// is refused, and its Gets load locally instead of failing.
func TestNodeSharedSecret(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2, groupcache.WithPeerOptions(peer.WithSecret(secretA)))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	ctx := context.Background()
	k := keyOwnedBy(t, cl, 0)
	if got, err := caches[1].Get(ctx, k); err != nil || got != "value-"+k {
		t.Fatalf("remote Get = %q, %v", got, err)
	}
	if st := caches[1].Stats(); st.RemoteGets != 1 || st.RemoteErrors != 0 {
		t.Fatalf("the remote Get did not go to the owner: %+v", st)
	}

	stranger, _ := startNode(t, cl.Addrs, groupcache.WithPeerOptions(peer.WithSecret(secretB)))
	sc, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
		return "stranger-" + k, nil
	}), groupcache.WithNode(stranger))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	k2 := keysOwnedIn(t, stranger.Peers(), cl.Addrs[0], 2)[0] // in the stranger's ring of three
	if k2 == k {
		k2 = keysOwnedIn(t, stranger.Peers(), cl.Addrs[0], 2)[1]
	}
	if got, err := sc.Get(ctx, k2); err != nil || got != "stranger-"+k2 {
		t.Fatalf("stranger's Get = %q, %v; want its own load", got, err)
	}
	if st := sc.Stats(); st.FallbackLoads != 1 {
		t.Fatalf("stranger's Get did not fall back: %+v", st)
	}
	if st := cl.Nodes[0].Stats(); st.Server.Refused == 0 {
		t.Fatalf("the owner did not count the refusal: %+v", st.Server)
	}
	_, err = strangerClient(t).Get(ctx, cl.Addrs[0], "c", keyBytes(t, k))
	wantStatus(t, "a client without the secret", err, peer.StatusForbidden)
	if log.total.Load() != 1 {
		t.Fatalf("%d loads in the cluster, want 1", log.total.Load())
	}
}

// TestNodeMutualTLS: nodes with certificates of the cluster's CA serve each other over TLS
// (Serve serves TLS by itself); a client with no certificate, or one of another CA, is refused.
func TestNodeMutualTLS(t *testing.T) {
	t.Parallel()
	ca, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Node("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cl := testcluster.Start(t, 3, groupcache.WithPeerOptions(peer.WithTLS(ca.Config(cert))))
	log := newLoadLog()
	caches := stringCaches(t, cl, "c", log, nil)
	ctx := context.Background()
	k := keyOwnedBy(t, cl, 2)
	for i := range 2 {
		if got, err := caches[i].Get(ctx, k); err != nil || got != "value-"+k {
			t.Fatalf("node %d: Get = %q, %v", i, got, err)
		}
	}
	if log.total.Load() != 1 || log.byNode[cl.Addrs[2]] != 1 {
		t.Fatalf("loads %v, want one on the owner", log.byNode)
	}
	if err := caches[0].Set(ctx, k, "over TLS"); err != nil {
		t.Fatal(err)
	}
	if got, _ := caches[2].Get(ctx, k); got != "over TLS" {
		t.Fatalf("owner has %q after a Set over TLS", got)
	}

	if _, err := strangerClient(t).Get(ctx, cl.Addrs[0], "c", keyBytes(t, k)); err == nil {
		t.Fatal("a plaintext client was served by a TLS node")
	}
	other, _ := testpki.New()
	otherCert, _ := other.Node("127.0.0.1")
	_, err = strangerClient(t, peer.WithTLS(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{otherCert}})).
		Get(ctx, cl.Addrs[0], "c", keyBytes(t, k))
	wantStatus(t, "a client of another CA", err, peer.StatusForbidden)
}

// TestNodeServeClosesSlowHeaders: connections to Node.Serve that never finish their request
// headers (slowloris) are closed by the header timeout, while a peer is served meanwhile.
func TestNodeServeClosesSlowHeaders(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	caches := stringCaches(t, cl, "c", newLoadLog(), nil)
	const slow = 200
	conns := make([]net.Conn, 0, slow)
	for range slow {
		nc, err := net.Dial("tcp", cl.Addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		io.WriteString(nc, "GET "+peer.DefaultBasePath+" HTTP/1.1\r\nHost: x\r\n") // and never the end
		conns = append(conns, nc)
	}
	k := keyOwnedBy(t, cl, 0)
	if got, err := caches[1].Get(context.Background(), k); err != nil || got != "value-"+k {
		t.Fatalf("a peer's Get during the attack = %q, %v", got, err)
	}
	// Each connection must be closed by the server within its header timeout (10 s) and some slack.
	deadline := time.Now().Add(30 * time.Second)
	for i, nc := range conns {
		nc.SetReadDeadline(deadline)
		_, err := bufio.NewReader(nc).ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("slow connection %d still open after 30 s", i)
		}
	}
}

// BenchmarkRemoteHitSecurity measures a remote hit of a 1 KiB value, one caller and 16, on an
// in-process cluster of 2 nodes in each mode: plaintext (loopback only), a shared secret, mutual
// TLS. Authentication happens once per connection; TLS also encrypts each request. Compare the
// modes within one run:
//
//	go test -run '^$' -bench RemoteHitSecurity -count 10 . | benchstat -col /mode -
func BenchmarkRemoteHitSecurity(b *testing.B) {
	ca, err := testpki.New()
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Node("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name string
		opts []peer.Option
	}{
		{"plaintext", nil},
		{"secret", []peer.Option{peer.WithSecret(secretA)}},
		{"tls", []peer.Option{peer.WithTLS(ca.Config(cert))}},
	} {
		b.Run("mode="+m.name, func(b *testing.B) {
			cl := testcluster.Start(b, 2, groupcache.WithPeerOptions(m.opts...))
			caches := benchCaches(b, cl)
			var keys []string
			for i := 0; len(keys) < 256; i++ {
				if k := strconv.Itoa(i); ownerOf(b, cl, k) == 1 {
					keys = append(keys, k)
					caches[0].Get(context.Background(), k)
				}
			}
			get := func(b *testing.B, i int) {
				if _, err := caches[0].Get(context.Background(), keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("callers=1", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					get(b, i)
				}
			})
			b.Run("callers=16", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						get(b, i)
					}
				})
			})
		})
	}
}
