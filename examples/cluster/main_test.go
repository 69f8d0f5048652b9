package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/typedcache/groupcache/status"
)

// TestStatusPages: each node of the demo serves its status page on its own port, and the page
// links every peer to that peer's page.
func TestStatusPages(t *testing.T) {
	members, err := startCluster(3, new(database))
	if err != nil {
		t.Fatal(err)
	}
	defer stopCluster(members)
	pages := map[string]string{}
	for _, m := range members {
		pages[m.node.Self()] = m.statusURL
		m.cache.Get(context.Background(), 1)
	}
	for _, m := range members {
		resp, err := http.Get(m.statusURL + "?format=json")
		if err != nil {
			t.Fatal(err)
		}
		var rep status.Report
		err = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if err != nil || rep.Self != m.node.Self() || rep.Node.Caches["products"].Gets != 1 {
			t.Fatalf("%s: %v, self %q, %+v", m.statusURL, err, rep.Self, rep.Node.Caches)
		}
		for _, p := range rep.Peers {
			if p.URL != pages[p.Addr] {
				t.Errorf("%s links %s to %q, want %q", m.statusURL, p.Addr, p.URL, pages[p.Addr])
			}
		}
		if len(rep.Peers) != len(members) {
			t.Errorf("%s lists %d peers", m.statusURL, len(rep.Peers))
		}
	}
}
