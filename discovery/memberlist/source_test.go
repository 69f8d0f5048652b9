package memberlist_test

import (
	"bytes"
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gcmemberlist "github.com/typedcache/groupcache/discovery/memberlist"
)

// Four real memberlist instances on 127.0.0.1: every one reports every peer address; after a
// graceful Leave the others drop the leaver at once; after a crash (Shutdown without Leave) they
// drop it once failure detection declares it dead.
func TestClusterJoinLeaveCrash(t *testing.T) {
	t.Parallel()
	const n = 4
	start := time.Now()
	srcs := []*gcmemberlist.Source{newSource(t, 0)}
	seed := srcs[0].GossipAddr()
	for i := 1; i < n; i++ {
		srcs = append(srcs, newSource(t, i, seed))
	}
	var all []string
	ws := make([]*watcher, n)
	for i, s := range srcs {
		all = append(all, peerAddr(i))
		ws[i] = watch(t, s.Memberlist().LocalNode().Name, s)
		if s.GossipAddr() == s.PeerAddr() {
			t.Fatalf("gossip and peer addresses are both %s", s.PeerAddr())
		}
	}
	for _, w := range ws {
		w.waitFor(all, 10*time.Second)
	}
	t.Logf("%d members report all %d peer addresses %v after start", n, n, time.Since(start).Round(time.Millisecond))
	for i, s := range srcs {
		if got := s.Members(); !slices.Equal(got, all) {
			t.Fatalf("member %d: Members() = %v, want %v", i, got, all)
		}
	}

	// Graceful leave of member 3.
	start = time.Now()
	if err := srcs[3].Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, w := range ws[:3] {
		w.waitFor(all[:3], 10*time.Second)
	}
	t.Logf("after a graceful Leave, the others drop it in %v", time.Since(start).Round(time.Millisecond))
	if err := srcs[3].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ws[3].stop(); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("Watch of a shut-down source returned %v, want ErrClosed", err)
	}

	// Crash of member 2: no Leave, so only failure detection removes it.
	start = time.Now()
	if err := srcs[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, w := range ws[:2] {
		w.waitFor(all[:2], 30*time.Second)
	}
	t.Logf("after a crash, failure detection drops it in %v", time.Since(start).Round(time.Millisecond))

	// A new member joins through a member other than the first seed.
	start = time.Now()
	srcs = append(srcs, newSource(t, 4, srcs[1].GossipAddr()))
	want := []string{peerAddr(0), peerAddr(1), peerAddr(4)}
	for _, w := range ws[:2] {
		w.waitFor(want, 10*time.Second)
	}
	watch(t, "node-4", srcs[4]).waitFor(want, 10*time.Second)
	t.Logf("a fifth member is reported by all in %v", time.Since(start).Round(time.Millisecond))
}

func TestWatchReturnsWhenContextEnds(t *testing.T) {
	t.Parallel()
	s := newSource(t, 0)

	// Blocked on a send nobody receives.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, make(chan discovery.Update)) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch blocked on a send after its context ended")
	}

	// Waiting for changes after the first set.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	updates := make(chan discovery.Update, 1)
	begin := time.Now()
	err := s.Watch(ctx, updates)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Watch returned %v after its deadline", d)
	}
	if u := <-updates; !slices.Equal(u.Peers, []string{peerAddr(0)}) || u.Err != nil {
		t.Fatalf("first update = %+v, want only this member", u)
	}

	// Already ended: returns at once, sends nothing.
	if err := s.Watch(ctx, updates); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch(ended ctx) = %v", err)
	}
	if len(updates) != 0 {
		t.Fatal("Watch with an ended context sent an update")
	}
}

func TestShutdownEndsWatchAndLaterCalls(t *testing.T) {
	t.Parallel()
	s := newSource(t, 0)
	w := watch(t, "node-0", s)
	w.waitFor([]string{peerAddr(0)}, 5*time.Second)
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
		if !errors.Is(w.err, groupcache.ErrClosed) {
			t.Fatalf("Watch = %v, want ErrClosed", w.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still running after Shutdown")
	}
	if err := s.Watch(context.Background(), make(chan discovery.Update)); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("Watch after Shutdown = %v", err)
	}
	if err := s.Leave(time.Second); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("Leave after Shutdown = %v", err)
	}
	if _, err := s.Join("127.0.0.1:1"); !errors.Is(err, groupcache.ErrClosed) {
		t.Fatalf("Join after Shutdown = %v", err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	ok := gcmemberlist.Config{PeerAddr: "127.0.0.1:8080", BindAddr: "127.0.0.1"}
	for name, mod := range map[string]func(*gcmemberlist.Config){
		"no PeerAddr":        func(c *gcmemberlist.Config) { c.PeerAddr = "" },
		"PeerAddr no port":   func(c *gcmemberlist.Config) { c.PeerAddr = "127.0.0.1" },
		"PeerAddr no host":   func(c *gcmemberlist.Config) { c.PeerAddr = ":8080" },
		"PeerAddr port 0":    func(c *gcmemberlist.Config) { c.PeerAddr = "h:0" },
		"PeerAddr port big":  func(c *gcmemberlist.Config) { c.PeerAddr = "h:65536" },
		"PeerAddr port name": func(c *gcmemberlist.Config) { c.PeerAddr = "h:http" },
		"PeerAddr too long":  func(c *gcmemberlist.Config) { c.PeerAddr = strings.Repeat("a", memberlist.MetaMaxSize) + ":80" },
		"BindPort negative":  func(c *gcmemberlist.Config) { c.BindPort = -1 },
		"BindPort big":       func(c *gcmemberlist.Config) { c.BindPort = 65536 },
		"AdvertisePort big":  func(c *gcmemberlist.Config) { c.AdvertisePort = 70000 },
		"AdvertiseAddr name": func(c *gcmemberlist.Config) { c.AdvertiseAddr = "example.invalid" },
		"empty Join":         func(c *gcmemberlist.Config) { c.Join = []string{""} },
		"Logger and LogOutput": func(c *gcmemberlist.Config) {
			mc := fastConfig(t)
			mc.Logger = log.New(&bytes.Buffer{}, "", 0)
			mc.LogOutput = &bytes.Buffer{}
			c.MemberlistConfig = mc
		},
	} {
		cfg := ok
		mod(&cfg)
		s, err := gcmemberlist.New(cfg)
		if !errors.Is(err, groupcache.ErrInvalidOption) {
			t.Errorf("%s: New = %v, want ErrInvalidOption", name, err)
		}
		if s != nil {
			s.Shutdown()
		}
	}

	// memberlist's own checks come through too.
	mc := fastConfig(t)
	mc.ProtocolVersion = memberlist.ProtocolVersionMax + 1
	if s, err := gcmemberlist.New(gcmemberlist.Config{PeerAddr: "127.0.0.1:8080", BindAddr: "127.0.0.1", MemberlistConfig: mc}); err == nil {
		s.Shutdown()
		t.Error("New accepted a bad protocol version")
	}
}

// When no seed answers, New fails and leaves nothing running (goleak checks the latter).
func TestNewJoinFailure(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there any more: connections are refused
	var logs bytes.Buffer
	s, err := gcmemberlist.New(gcmemberlist.Config{
		PeerAddr:         peerAddr(0),
		BindAddr:         "127.0.0.1",
		Join:             []string{dead},
		MemberlistConfig: fastConfig(t),
		Logger:           slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err == nil {
		s.Shutdown()
		t.Fatal("New joined a seed where nothing listens")
	}
	if !strings.Contains(err.Error(), dead) {
		t.Errorf("error %q does not name the seed %s", err, dead)
	}
	// memberlist's own log lines went to the slog logger, at their levels.
	if !strings.Contains(logs.String(), "level=DEBUG") || !strings.Contains(logs.String(), "component=memberlist") {
		t.Errorf("memberlist logs not routed to slog:\n%s", logs.String())
	}

	// A later Join retries.
	a := newSource(t, 0)
	b := newSource(t, 1)
	if n, err := b.Join(dead, a.GossipAddr()); err != nil || n != 1 {
		t.Fatalf("Join = %d, %v; want 1 contacted", n, err)
	}
	watch(t, "node-1", b).waitFor([]string{peerAddr(0), peerAddr(1)}, 10*time.Second)
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// A gossip member that is not a groupcache node (its metadata is no "host:port") is left out.
// The base configuration's Delegate and Events keep working.
func TestForeignMemberAndChainedDelegates(t *testing.T) {
	t.Parallel()
	ev := &countingEvents{joined: make(chan string, 16)}
	mc := fastConfig(t)
	mc.Events = ev
	mc.Delegate = &stateDelegate{state: []byte("hello")}
	s, err := gcmemberlist.New(gcmemberlist.Config{PeerAddr: peerAddr(0), BindAddr: "127.0.0.1", MemberlistConfig: mc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	w := watch(t, "node-0", s)
	w.waitFor([]string{peerAddr(0)}, 5*time.Second)

	fc := fastConfig(t)
	fc.Name = "foreign"
	fc.BindAddr = "127.0.0.1"
	fc.BindPort = 0
	fc.Logger = log.New(&bytes.Buffer{}, "", 0)
	remote := &stateDelegate{meta: []byte("not an address")}
	fc.Delegate = remote
	foreign, err := memberlist.Create(fc)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Shutdown()
	if _, err := foreign.Join([]string{s.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	// The base Events saw the foreign member join; the Source ignored it.
	deadline := time.After(10 * time.Second)
	for name := ""; name != "foreign"; {
		select {
		case name = <-ev.joined:
		case <-deadline:
			t.Fatal("the base EventDelegate did not see the foreign member join")
		}
	}
	if got := s.Members(); !slices.Equal(got, []string{peerAddr(0)}) {
		t.Fatalf("Members() = %v, want only the groupcache member", got)
	}
	// Push/pull on join carried the base Delegate's LocalState to the foreign member.
	if got := remote.merged(); string(got) != "hello" {
		t.Fatalf("the foreign member merged %q, want the base Delegate's local state", got)
	}
	if n := foreign.NumMembers(); n != 2 {
		t.Fatalf("foreign member sees %d members, want 2", n)
	}
}

type countingEvents struct{ joined chan string }

func (e *countingEvents) NotifyJoin(n *memberlist.Node) {
	select {
	case e.joined <- n.Name:
	default:
	}
}
func (e *countingEvents) NotifyLeave(*memberlist.Node)  {}
func (e *countingEvents) NotifyUpdate(*memberlist.Node) {}

// stateDelegate advertises meta and exchanges state on push/pull.
type stateDelegate struct {
	meta  []byte
	state []byte

	mu  sync.Mutex
	got []byte
}

func (d *stateDelegate) NodeMeta(int) []byte             { return d.meta }
func (d *stateDelegate) NotifyMsg([]byte)                {}
func (d *stateDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *stateDelegate) LocalState(bool) []byte          { return d.state }
func (d *stateDelegate) MergeRemoteState(buf []byte, _ bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(buf) > 0 {
		d.got = slices.Clone(buf)
	}
}

func (d *stateDelegate) merged() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got
}
