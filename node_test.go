package groupcache

import (
	"errors"
	"testing"
	"time"
)

// TestSetPeersResetsBackoff: a peer that leaves the peer set and joins it again is asked at once,
// whatever its back-off; a peer set unchanged for it keeps its back-off.
func TestSetPeersResetsBackoff(t *testing.T) {
	const self, other = "127.0.0.1:1", "127.0.0.1:2"
	n, err := NewNode(self, WithPeers(other), WithPeerBackoff(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.markDown(other, errors.New("test"))
	steps := []struct {
		peers   []string
		healthy bool
	}{
		{[]string{self, other}, false}, // no change for it
		{[]string{self, other, "127.0.0.1:3"}, false},
		{[]string{self}, true},
		{[]string{self, other}, true},
	}
	for i, s := range steps {
		if err := n.SetPeers(s.peers...); err != nil {
			t.Fatal(err)
		}
		if got := n.healthy(other); got != s.healthy {
			t.Fatalf("step %d, peers %v: healthy = %v, want %v", i, s.peers, got, s.healthy)
		}
	}
}
