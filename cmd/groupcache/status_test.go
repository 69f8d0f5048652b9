package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/typedcache/groupcache/internal/statustest"
)

// table runs the command line args and returns its output's rows, split into fields, without the
// header.
func table(t *testing.T, args ...string) [][]string {
	t.Helper()
	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

// TestStats: stats prints, for each node and cache, the counters of the cache's Stats, and a row
// per cache that sums them over the cluster; with -all, one node's page is enough.
func TestStats(t *testing.T) {
	nodes := statustest.Start(t, 3, []string{"orders", "users"})
	statustest.Traffic(t, nodes, 25)
	want := map[string][]string{} // "node cache" -> gets, loads, load errors, items
	var sums [4]int64
	for _, n := range nodes {
		for name, c := range n.Caches {
			st := c.Stats()
			want[n.Node.Self()+" "+name] = []string{fmt.Sprint(st.Gets), fmt.Sprint(st.Loads), fmt.Sprint(st.LoadErrors), fmt.Sprint(st.Items)}
			if name == "users" {
				for i, v := range []int64{st.Gets, st.Loads, st.LoadErrors, st.Items} {
					sums[i] += v
				}
			}
		}
	}
	want["all 3 users"] = []string{fmt.Sprint(sums[0]), fmt.Sprint(sums[1]), fmt.Sprint(sums[2]), fmt.Sprint(sums[3])}
	for _, args := range [][]string{
		{"stats", nodes[0].Addr, nodes[1].URL, nodes[2].Addr},
		{"stats", "-all", nodes[1].Addr},
	} {
		got := map[string][]string{}
		for _, f := range table(t, args...) {
			if f[0] == "all" { // "all 3 cache"
				f = append([]string{f[0] + " " + f[1]}, f[2:]...)
			}
			// node cache gets hit% gets/s loads loads/s load-errors peer-errors items ...
			got[f[0]+" "+f[1]] = []string{f[2], f[5], f[7], f[9]}
		}
		if len(got) != 3*2+2 {
			t.Errorf("%v: %d rows, want 8: %v", args, len(got), got)
		}
		for k, w := range want {
			if strings.Join(got[k], " ") != strings.Join(w, " ") {
				t.Errorf("%v: %s: gets, loads, load errors, items %v; want %v", args, k, got[k], w)
			}
		}
	}
}

// TestPeers: peers prints a node's peer set with each peer's state, share of the ring, errors and
// status page, as the node's Stats have them.
func TestPeers(t *testing.T) {
	nodes := statustest.Start(t, 3, []string{"users"})
	statustest.Traffic(t, nodes, 10)
	rows := table(t, "peers", nodes[2].Addr)
	st := nodes[2].Node.Stats()
	want := map[string]string{}
	for _, n := range nodes {
		ps, state := st.Peers[n.Node.Self()], "up"
		if n.Node.Self() == nodes[2].Node.Self() {
			state = "self"
		}
		want[n.Node.Self()] = fmt.Sprintf("%s %.1f%% %d %s", state, 100*ps.RingShare, ps.Errors, n.URL)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows: %v", len(rows), rows)
	}
	for _, r := range rows {
		// peer state share fetches p50 p99 errors page
		if got := strings.Join([]string{r[1], r[2], r[6], r[7]}, " "); got != want[r[0]] {
			t.Errorf("peer %s: %q, want %q", r[0], got, want[r[0]])
		}
	}
}

// TestOwnerFromNode: owner -node names the peer that the node's ring gives the key: a Get on
// another node makes that peer load it.
func TestOwnerFromNode(t *testing.T) {
	nodes := statustest.Start(t, 3, []string{"users"})
	byPeer := map[string]statustest.Node{}
	for _, n := range nodes {
		byPeer[n.Node.Self()] = n
	}
	for k := range 12 {
		key := "user-" + strconv.Itoa(k)
		var out bytes.Buffer
		if err := run([]string{"owner", "-node", nodes[k%3].Addr, key}, &out); err != nil {
			t.Fatal(err)
		}
		owner, ok := byPeer[strings.TrimSpace(out.String())]
		if !ok {
			t.Fatalf("owner of %q: %q is no node", key, out.String())
		}
		other := nodes[0]
		if other.Node.Self() == owner.Node.Self() {
			other = nodes[1]
		}
		before := owner.Caches["users"].Stats().Loads
		if _, err := other.Caches["users"].Get(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		if owner.Caches["users"].Stats().Loads != before+1 {
			t.Fatalf("owner says %s owns %q; it did not load it", owner.Node.Self(), key)
		}
	}
	for _, args := range [][]string{
		{"owner", "-node", nodes[0].Addr, "-peers", "127.0.0.1:1", "k"},
		{"owner", "-node", "127.0.0.1:1", "k"}, // nothing listens there
		{"stats", "ftp://" + nodes[0].Addr},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v did not fail", args)
		}
	}
}
