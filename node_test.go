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

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:80", "127.0.0.1:80"},
		{"localhost:080", "127.0.0.1:80"},
		{"LocalHost.:8080", "127.0.0.1:8080"},
		{"Cache-0.Example.COM.:1", "cache-0.example.com:1"},
		{"[::FFFF:10.0.0.1]:65535", "10.0.0.1:65535"},
		{"[2001:DB8:0::1]:443", "[2001:db8::1]:443"},
		{"[fe80::1%eth0]:7", "[fe80::1%eth0]:7"},
		{"127.0.0.1:0", ""},
		{"127.0.0.1:65536", ""},
		{"127.0.0.1:99999", ""},
		{"127.0.0.1:-1", ""},
		{"127.0.0.1:http", ""},
		{":80", ""},
		{".:80", ""},
		{"a b:80", ""},
		{"127.0.0.1", ""},
	} {
		got, err := canonical(c.in)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("canonical(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
