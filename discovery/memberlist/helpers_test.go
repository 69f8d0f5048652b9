package memberlist_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/typedcache/groupcache/discovery"
	gcmemberlist "github.com/typedcache/groupcache/discovery/memberlist"
	"github.com/typedcache/groupcache/internal/discoverytest"
)

// fastConfig is memberlist's local-network configuration with intervals short enough for a
// failed member to be declared dead within a few seconds, yet long enough not to suspect live
// members on a loaded machine under the race detector. Its label is the test's name: members of
// tests running at the same time ignore each other's packets, even when one of them binds a port
// that a member of another test (shut down, but still probed by its former peers) had.
func fastConfig(t testing.TB) *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.Label = t.Name()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3 // suspicion timeout 600 ms (up to x6 without confirmations)
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = time.Second
	c.GossipToTheDeadTime = 2 * time.Second
	c.TCPTimeout = time.Second
	return c
}

// peerAddr is the groupcache address advertised by test member i: on purpose unlike any gossip
// address (those get ephemeral ports).
func peerAddr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 10001+i) }

// newSource starts a member on 127.0.0.1 with a free gossip port, joining seeds.
func newSource(t *testing.T, i int, seeds ...string) *gcmemberlist.Source {
	t.Helper()
	s, err := gcmemberlist.New(gcmemberlist.Config{
		Name:             fmt.Sprintf("node-%d", i),
		PeerAddr:         peerAddr(i),
		BindAddr:         "127.0.0.1",
		Join:             seeds,
		MemberlistConfig: fastConfig(t),
	})
	if err != nil {
		t.Fatalf("New(member %d): %v", i, err)
	}
	t.Cleanup(func() { s.Shutdown() })
	return s
}

// watcher runs Watch on a source in the background (discoverytest.Watch) and checks what it
// sends.
type watcher struct {
	t       *testing.T
	name    string
	updates chan discovery.Update
	done    chan struct{} // closed when Watch returned, with its error in err
	err     error
	stop    func() error // cancels the Watch and waits for it to return; it returns Watch's error
	last    []string
	n       int // updates received
}

func watch(t *testing.T, name string, s *gcmemberlist.Source) *watcher {
	t.Helper()
	w := &watcher{t: t, name: name}
	w.updates, w.done, w.stop = discoverytest.Watch(t, name, s, &w.err)
	return w
}

// waitFor reads updates until one carries exactly want (in any order) and returns how long it took.
// Every update must differ from the previous one and carry no error.
func (w *watcher) waitFor(want []string, timeout time.Duration) time.Duration {
	w.t.Helper()
	want = slices.Sorted(slices.Values(want))
	start := time.Now()
	if w.n > 0 && slices.Equal(w.last, want) {
		return 0
	}
	deadline := time.After(timeout)
	for {
		select {
		case u := <-w.updates:
			if u.Err != nil {
				w.t.Fatalf("%s: update with error %v", w.name, u.Err)
			}
			got := slices.Sorted(slices.Values(u.Peers))
			if w.n > 0 && slices.Equal(got, w.last) {
				w.t.Errorf("%s: the same set twice in a row: %v", w.name, got)
			}
			w.last = got
			w.n++
			if slices.Equal(got, want) {
				return time.Since(start)
			}
		case <-w.done:
			w.t.Fatalf("%s: Watch returned %v while waiting for %v (last %v)", w.name, w.err, want, w.last)
		case <-deadline:
			w.t.Fatalf("%s: no update with %v within %v; last %v after %d updates", w.name, want, timeout, w.last, w.n)
		}
	}
}
