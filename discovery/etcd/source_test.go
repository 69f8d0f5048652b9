package etcd_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gcetcd "github.com/typedcache/groupcache/discovery/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Three nodes register on a real etcd server, each with its own client, and every one reports
// all three addresses, as does a watch-only source. A node whose Watch ends revokes its lease and
// the others drop it at once; a node that dies (its client closed, nothing revoked) is dropped
// when its lease runs out, within the TTL.
func TestRegisterStopDie(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	const n = 3
	clients := make([]*clientv3.Client, n)
	ws := make([]*watcher, n)
	var all []string
	start := time.Now()
	for i := range n {
		clients[i] = e.client()
		ws[i] = watch(t, peerAddr(i), newSource(t, clients[i], peerAddr(i)))
		all = append(all, peerAddr(i))
	}
	observer := watch(t, "watch-only", newSource(t, e.client(), ""))
	for _, w := range append(slices.Clone(ws), observer) {
		w.waitFor(all, 10*time.Second)
	}
	t.Logf("%d nodes and a watch-only source report all %d addresses %v after start", n, n, time.Since(start).Round(time.Millisecond))

	// Node 2 stops: its lease is revoked before Watch returns.
	start = time.Now()
	if err := ws[2].stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch = %v, want context.Canceled", err)
	}
	for _, w := range []*watcher{ws[0], ws[1], observer} {
		// Well within the 2 s TTL: the key went with the revoked lease.
		if d := w.waitFor(all[:2], 1500*time.Millisecond); d > time.Second {
			t.Errorf("%s dropped the stopped node after %v", w.name, d)
		}
	}
	t.Logf("after a stop, the others drop it in %v", time.Since(start).Round(time.Millisecond))

	// Node 1 dies: its client goes away without revoking anything.
	start = time.Now()
	clients[1].Close()
	select {
	case <-ws[1].done:
		if err := ws[1].err; !errors.Is(err, groupcache.ErrClosed) || !strings.Contains(err.Error(), "etcd client closed") {
			t.Fatalf("Watch on a closed client = %v, want groupcache.ErrClosed saying the client was closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still running after its client was closed")
	}
	for _, w := range []*watcher{ws[0], observer} {
		w.waitFor(all[:1], 2*time.Second+3*time.Second)
	}
	d := time.Since(start)
	t.Logf("after a death, the others drop it in %v (TTL 2s)", d.Round(time.Millisecond))
	if d < time.Second {
		t.Errorf("a dead node was dropped after %v, before its lease could run out", d)
	}
}

// Killing the etcd server: a registering source reports its lost lease once the TTL has passed.
// Once the server is back the sources register again with new leases (the keys outlive the old
// ones) and the watches resume: a node that joins afterwards is reported by all.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	w0 := watch(t, "node-0", newSource(t, e.client(), peerAddr(0)))
	w1 := watch(t, "node-1", newSource(t, e.client(), peerAddr(1)))
	observer := watch(t, "watch-only", newSource(t, e.client(), ""))
	two := []string{peerAddr(0), peerAddr(1)}
	for _, w := range []*watcher{w0, w1, observer} {
		w.waitFor(two, 10*time.Second)
	}

	e.kill()
	start := time.Now()
	err := w0.waitErr(10 * time.Second)
	t.Logf("with etcd down, node-0 reports %q after %v", err, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	e.restart()
	t.Logf("etcd restarted in %v", time.Since(start).Round(time.Millisecond))
	w2 := watch(t, "node-2", newSource(t, e.client(), peerAddr(2)))
	three := append(slices.Clone(two), peerAddr(2))
	for _, w := range []*watcher{w0, w1, observer, w2} {
		w.waitFor(three, 15*time.Second, true)
	}
	t.Logf("after the restart, all report the node that joined in %v", time.Since(start).Round(time.Millisecond))

	// The leases of before the restart run out 2 s after it (etcd renews them when it starts);
	// no key goes with them.
	observer.quiet(3 * time.Second)
	peers, err := newSource(t, e.client(), "").Peers(context.Background())
	if err != nil || !slices.Equal(peers, three) {
		t.Fatalf("Peers = %v, %v; want %v", peers, err, three)
	}
}

// A watch whose revision etcd has compacted is replaced: the source reads the prefix again and
// follows it from there. Values that are not addresses are left out.
func TestCompactedWatchRelists(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	admin := e.client()
	ctx := context.Background()
	for i := range 3 {
		if _, err := admin.Put(ctx, gcetcd.DefaultPrefix+"n"+string(rune('0'+i)), peerAddr(i)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := admin.Put(ctx, gcetcd.DefaultPrefix+"junk", "not an address")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	s, err := gcetcd.New(gcetcd.Config{
		Client: e.client(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var watches atomic.Int32
	gcetcd.SetWatchRevHook(s, func(rev int64) int64 {
		if watches.Add(1) == 1 {
			return 1 // long compacted
		}
		return rev
	})
	w := watch(t, "watch-only", s)
	w.waitFor([]string{peerAddr(0), peerAddr(1), peerAddr(2)}, 10*time.Second)
	if _, err := admin.Delete(ctx, gcetcd.DefaultPrefix+"n1"); err != nil {
		t.Fatal(err)
	}
	w.waitFor([]string{peerAddr(0), peerAddr(2)}, 10*time.Second)
	if n := watches.Load(); n != 2 {
		t.Errorf("%d watches started, want 2 (the compacted one and its replacement)", n)
	}
	for _, want := range []string{"compacted", "not a host:port"} {
		if !logs.contains(want) {
			t.Errorf("no log record with %q", want)
		}
	}
}

// A node's key deleted behind its back (by hand, or by a process that registered the same address
// and left) is put back while the node runs.
func TestDeletedKeyIsRestored(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	s := newSource(t, e.client(), peerAddr(0))
	w := watch(t, "node-0", s)
	w.waitFor([]string{peerAddr(0)}, 10*time.Second)
	admin := e.client()
	ctx := context.Background()
	if _, err := admin.Delete(ctx, s.Key()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := admin.Get(ctx, s.Key())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == peerAddr(0) && resp.Kvs[0].Lease != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s not put back within 5s", s.Key())
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.waitFor([]string{peerAddr(0)}, 5*time.Second) // back to the full set, if it was ever reported without
}

func TestWatchReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	admin := e.client()
	s := newSource(t, e.client(), peerAddr(0))

	// Blocked on a send nobody receives, the node registered: Watch returns and revokes.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, make(chan discovery.Update)) }()
	waitKey(t, admin, s.Key(), true)
	begin := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
		t.Logf("Watch returned %v after its context ended", time.Since(begin).Round(time.Microsecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Watch blocked on a send after its context ended")
	}
	if resp, err := admin.Get(context.Background(), s.Key()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key after Watch returned: %v, %v; want it deleted with the revoked lease", resp, err)
	}

	// A deadline while waiting for changes after the first set.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	updates := make(chan discovery.Update, 1)
	if err := s.Watch(ctx, updates); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch = %v, want context.DeadlineExceeded", err)
	}
	if u := <-updates; !slices.Equal(u.Peers, []string{peerAddr(0)}) || u.Err != nil {
		t.Fatalf("first update = %+v, want this node", u)
	}

	// Already ended: returns at once, sends nothing.
	if err := s.Watch(ctx, updates); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch(ended ctx) = %v", err)
	}
	if len(updates) != 0 {
		t.Fatal("Watch with an ended context sent an update")
	}

	// Close ends a running Watch with groupcache.ErrClosed, after revoking, and later ones at once.
	w := watch(t, "node-0", s)
	w.waitFor([]string{peerAddr(0)}, 10*time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for Watch to revoke its lease.
	if resp, err := admin.Get(context.Background(), s.Key()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key after Close: %v, %v; want it deleted with the revoked lease", resp, err)
	}
	select {
	case <-w.done:
		if err := w.err; !errors.Is(err, groupcache.ErrClosed) || !strings.Contains(err.Error(), "source closed") {
			t.Fatalf("Watch = %v, want groupcache.ErrClosed saying the source was closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still running after Close")
	}
	if err := s.Watch(context.Background(), updates); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("Watch after Close = %v, want groupcache.ErrClosed", err)
	}
}

// waitKey waits until key exists (or not).
func waitKey(t *testing.T, cli *clientv3.Client, key string, exists bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := cli.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if (len(resp.Kvs) == 1) == exists {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s: exists %v after 5s, want %v", key, !exists, exists)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With no etcd server at the endpoint, the failed requests are reported as errors, and Watch
// still returns promptly when its context ends. Needs no etcd binary.
func TestUnreachableReportsErrors(t *testing.T) {
	t.Parallel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{freeAddr(t)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := gcetcd.New(gcetcd.Config{Client: cli, PeerAddr: peerAddr(0), RequestTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := watch(t, "node-0", s)
	for range 2 {
		if err := w.waitErr(5 * time.Second); err == nil {
			t.Fatal("nil error")
		}
	}
	begin := time.Now()
	if err := w.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch = %v, want context.Canceled", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Watch returned %v after its context ended", d)
	}
	if w.n != 0 {
		t.Errorf("%d sets reported with no server", w.n)
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, tt := range []struct {
		name string
		cfg  gcetcd.Config
	}{
		{"nil client", gcetcd.Config{PeerAddr: peerAddr(0)}},
		{"no port", gcetcd.Config{Client: cli, PeerAddr: "127.0.0.1"}},
		{"port 0", gcetcd.Config{Client: cli, PeerAddr: "127.0.0.1:0"}},
		{"empty host", gcetcd.Config{Client: cli, PeerAddr: ":8080"}},
		{"space in host", gcetcd.Config{Client: cli, PeerAddr: "a b:8080"}},
		{"TTL under 1s", gcetcd.Config{Client: cli, TTL: 500 * time.Millisecond}},
		{"negative TTL", gcetcd.Config{Client: cli, TTL: -time.Second}},
		{"huge TTL", gcetcd.Config{Client: cli, TTL: math.MaxInt64}},
		{"negative RequestTimeout", gcetcd.Config{Client: cli, RequestTimeout: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if s, err := gcetcd.New(tt.cfg); !errors.Is(err, groupcache.ErrInvalidOption) {
				t.Fatalf("New = %v, %v; want an error wrapping groupcache.ErrInvalidOption", s, err)
			}
		})
	}

	s, err := gcetcd.New(gcetcd.Config{Client: cli, PeerAddr: "[::1]:8080", TTL: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Prefix() != gcetcd.DefaultPrefix || s.Key() != gcetcd.DefaultPrefix+"[::1]:8080" || s.PeerAddr() != "[::1]:8080" {
		t.Errorf("Prefix %q, Key %q, PeerAddr %q", s.Prefix(), s.Key(), s.PeerAddr())
	}
	if got := s.String(); got != "etcd "+gcetcd.DefaultPrefix {
		t.Errorf("String() = %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	watchOnly, err := gcetcd.New(gcetcd.Config{Client: cli, Prefix: "/other/"})
	if err != nil {
		t.Fatal(err)
	}
	if watchOnly.Key() != "" || watchOnly.Prefix() != "/other/" {
		t.Errorf("watch-only: Key %q, Prefix %q", watchOnly.Key(), watchOnly.Prefix())
	}
}
