package discovery_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
)

// The DNS sources are tested against a real DNS server on 127.0.0.1 (dnsserver_test.go), asked by
// the Go resolver over UDP and over TCP. Waits are bounded by testTimeout and end on observed
// events: updates received, queries counted by the server.

const (
	testTimeout = 10 * time.Second
	poll        = 20 * time.Millisecond // the sources' interval in these tests
)

// watching runs src.Watch until the test ends and returns its (unbuffered) updates channel.
func watching(t *testing.T, src discovery.Source) <-chan discovery.Update {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan discovery.Update)
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, updates) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	return updates
}

// next returns the next update.
func next(t *testing.T, updates <-chan discovery.Update) discovery.Update {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(testTimeout):
		t.Fatalf("no update in %v", testTimeout)
		return discovery.Update{}
	}
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

var transports = []struct {
	name string
	tcp  bool
}{{"udp", false}, {"tcp", true}}

func TestDNS(t *testing.T) {
	t.Parallel()
	const name = "peers.cache.test."
	tests := []struct {
		name    string
		records []dnsRecord
		want    []string
	}{
		{"A", []dnsRecord{recA("192.0.2.2"), recA("192.0.2.1")}, []string{"192.0.2.1:7946", "192.0.2.2:7946"}},
		{"AAAA", []dnsRecord{recAAAA("2001:db8::1")}, []string{"[2001:db8::1]:7946"}},
		{"A and AAAA", []dnsRecord{recAAAA("2001:db8::2"), recA("192.0.2.1"), recAAAA("2001:db8::1")},
			[]string{"192.0.2.1:7946", "[2001:db8::1]:7946", "[2001:db8::2]:7946"}},
		{"duplicates and v4-mapped", []dnsRecord{recA("192.0.2.1"), recA("192.0.2.1"), recAAAA("::ffff:192.0.2.1")},
			[]string{"192.0.2.1:7946"}},
		{"other types ignored", []dnsRecord{recSRV("x.test.", 1), recA("192.0.2.1")}, []string{"192.0.2.1:7946"}},
	}
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				srv := startDNSServer(t)
				srv.set(name, tt.records...)
				updates := watching(t, discovery.DNS(name, 7946, discovery.WithResolver(srv.resolver(tr.tcp)), discovery.WithInterval(poll)))
				if u := next(t, updates); u.Err != nil || !slices.Equal(u.Peers, tt.want) {
					t.Errorf("update %+v, want peers %q", u, tt.want)
				}
			})
		}
	}
}

func TestDNSLiteral(t *testing.T) {
	t.Parallel()
	for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
		updates := watching(t, discovery.DNS(ip, 7946, discovery.WithInterval(poll)))
		if u, want := next(t, updates), net.JoinHostPort(ip, "7946"); u.Err != nil || !slices.Equal(u.Peers, []string{want}) {
			t.Errorf("DNS(%q): %+v, want [%s]", ip, u, want)
		}
	}
}

func TestSRV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		service, proto, host string
		query                string // the name the server is asked
		records              []dnsRecord
		want                 []string
	}{
		{
			name: "service", service: "cache", proto: "tcp", host: "cache.test.", query: "_cache._tcp.cache.test.",
			records: []dnsRecord{recSRV("node-2.cache.test.", 8002), recSRV("node-1.cache.test.", 8001), recSRV("node-1.cache.test.", 8003)},
			want:    []string{"node-1.cache.test:8001", "node-1.cache.test:8003", "node-2.cache.test:8002"},
		},
		{
			name: "name only", host: "_peers._tcp.cache.test.", query: "_peers._tcp.cache.test.",
			records: []dnsRecord{recSRV("node-1.cache.test.", 8001), recA("192.0.2.1")},
			want:    []string{"node-1.cache.test:8001"},
		},
		{
			name: "unavailable targets and port 0 skipped", service: "cache", proto: "tcp", host: "cache.test.", query: "_cache._tcp.cache.test.",
			records: []dnsRecord{recSRV(".", 8001), recSRV("node-2.cache.test.", 0), recSRV("node-3.cache.test.", 8003)},
			want:    []string{"node-3.cache.test:8003"},
		},
	}
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				srv := startDNSServer(t)
				srv.set(tt.query, tt.records...)
				src := discovery.SRV(tt.service, tt.proto, tt.host, discovery.WithResolver(srv.resolver(tr.tcp)), discovery.WithInterval(poll))
				updates := watching(t, src)
				if u := next(t, updates); u.Err != nil || !slices.Equal(u.Peers, tt.want) {
					t.Errorf("update %+v, want peers %q", u, tt.want)
				}
			})
		}
	}
}

// TestDNSPolls checks that a change of the records is reported at the next poll, and that polls
// finding the same set send nothing.
func TestDNSPolls(t *testing.T) {
	t.Parallel()
	const name = "_cache._tcp.cache.test."
	srv := startDNSServer(t)
	srv.set(name, recSRV("node-1.cache.test.", 8001))
	updates := watching(t, discovery.SRV("cache", "tcp", "cache.test.", discovery.WithResolver(srv.resolver(false)), discovery.WithInterval(poll)))
	if u := next(t, updates); !slices.Equal(u.Peers, []string{"node-1.cache.test:8001"}) {
		t.Fatalf("first update %+v", u)
	}

	// Unchanged records: polls go on and send nothing. Nobody reads updates, so a send would block
	// the source before its next poll: three more questions prove two polls sent nothing.
	quietPolls := func() {
		t.Helper()
		q := srv.queries.Load()
		// (A failed lookup would block the source the same way: its Update with Err is unread.)
		waitFor(t, "three more polls", func() bool { return srv.queries.Load() >= q+3 })
		select {
		case u := <-updates:
			t.Fatalf("update %+v for an unchanged set", u)
		default:
		}
	}
	quietPolls()

	srv.set(name, recSRV("node-1.cache.test.", 8001), recSRV("node-2.cache.test.", 8002))
	if u := next(t, updates); !slices.Equal(u.Peers, []string{"node-1.cache.test:8001", "node-2.cache.test:8002"}) {
		t.Fatalf("after a change: %+v", u)
	}
	// The same records in another order are the same set.
	srv.set(name, recSRV("node-2.cache.test.", 8002), recSRV("node-1.cache.test.", 8001))
	quietPolls()
}

func TestDNSErrors(t *testing.T) {
	t.Parallel()
	const name = "peers.cache.test."
	want := []string{"192.0.2.1:7946"}
	tests := []struct {
		name  string
		spoil func(s *dnsServer) // makes lookups fail
		mend  func(s *dnsServer)
	}{
		{"SERVFAIL", func(s *dnsServer) { s.fail(rcodeServFail) }, func(s *dnsServer) { s.fail(0) }},
		// The A lookup alone would find the set: a failed AAAA lookup still fails the poll.
		{"AAAA SERVFAIL", func(s *dnsServer) { s.failType(typeAAAA, rcodeServFail) }, func(s *dnsServer) { s.fail(0) }},
		{"NXDOMAIN", func(s *dnsServer) { s.set(name) }, func(s *dnsServer) { s.set(name, recA("192.0.2.1")) }},
		{"no answer", func(s *dnsServer) { s.set(name, recSRV("x.test.", 1)) }, func(s *dnsServer) { s.set(name, recA("192.0.2.1")) }},
	}
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				srv := startDNSServer(t)
				srv.set(name, recA("192.0.2.1"))
				updates := watching(t, discovery.DNS(name, 7946, discovery.WithResolver(srv.resolver(tr.tcp)), discovery.WithInterval(poll)))
				if u := next(t, updates); !slices.Equal(u.Peers, want) {
					t.Fatalf("first update %+v", u)
				}
				tt.spoil(srv)
				// Each failed poll is reported, and the source keeps polling.
				for range 2 {
					if u := next(t, updates); u.Err == nil || u.Peers != nil {
						t.Fatalf("update %+v, want an error", u)
					} else {
						var dnsErr *net.DNSError
						if !errors.As(u.Err, &dnsErr) {
							t.Errorf("error %v is not a *net.DNSError", u.Err)
						}
					}
				}
				tt.mend(srv)
				// The set found after a failure is sent, unchanged as it is.
				for {
					u := next(t, updates)
					if u.Err != nil {
						continue // a poll that started before the mend
					}
					if !slices.Equal(u.Peers, want) {
						t.Fatalf("after recovery: %+v", u)
					}
					break
				}
			})
		}
	}
}

// recordingNode is a discovery.Node that keeps its peer set.
type recordingNode struct {
	self  string
	mu    sync.Mutex
	peers []string
	calls int
}

func (n *recordingNode) Self() string { return n.self }

func (n *recordingNode) SetPeers(peers ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.peers, n.calls = slices.Clone(peers), n.calls+1
	return nil
}

func (n *recordingNode) state() ([]string, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.peers), n.calls
}

var discard = slog.New(slog.DiscardHandler)

// running starts Run until the test ends; applied receives every set it applies.
func running(t *testing.T, node discovery.Node, src discovery.Source, opts ...discovery.Option) (r *discovery.Runner, applied <-chan []string) {
	t.Helper()
	ch := make(chan []string, 100)
	opts = append([]discovery.Option{
		discovery.WithLogger(discard),
		discovery.WithDebounce(poll / 2),
		discovery.WithOnApply(func(peers []string, err error) {
			if err != nil {
				t.Errorf("SetPeers(%q): %v", peers, err)
			}
			ch <- peers
		}),
	}, opts...)
	r, err := discovery.NewRunner(node, src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return r, ch
}

func nextApplied(t *testing.T, applied <-chan []string) []string {
	t.Helper()
	select {
	case p := <-applied:
		return p
	case <-time.After(testTimeout):
		t.Fatalf("no set applied in %v", testTimeout)
		return nil
	}
}

// TestRunDNSKeepsLastGoodSet runs a DNS source through Run: a failing server leaves the node with
// the last set it got, and a change after the failure is applied.
func TestRunDNSKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	const name = "peers.cache.test."
	srv := startDNSServer(t)
	srv.set(name, recA("192.0.2.1"), recA("192.0.2.2"))
	node := &recordingNode{self: "192.0.2.1:7946"}
	src := discovery.DNS(name, 7946, discovery.WithResolver(srv.resolver(false)), discovery.WithInterval(poll))
	r, applied := running(t, node, src)
	first := []string{"192.0.2.1:7946", "192.0.2.2:7946"}
	if got := nextApplied(t, applied); !slices.Equal(got, first) {
		t.Fatalf("applied %q, want %q", got, first)
	}

	srv.fail(rcodeServFail)
	waitFor(t, "two failed lookups", func() bool { return r.Stats().Rejected >= 2 })
	if peers, calls := node.state(); !slices.Equal(peers, first) || calls != 1 {
		t.Fatalf("after failures the node has %q after %d calls", peers, calls)
	}

	srv.set(name, recA("192.0.2.3"), recA("192.0.2.1"))
	srv.fail(0)
	second := []string{"192.0.2.1:7946", "192.0.2.3:7946"}
	if got := nextApplied(t, applied); !slices.Equal(got, second) {
		t.Fatalf("applied %q, want %q", got, second)
	}
	if st := r.Stats(); st.Applied != 2 || st.Rejected < 2 || st.Restarts != 0 || st.SetPeersErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}
