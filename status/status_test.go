package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/statustest"
	. "github.com/typedcache/groupcache/status"
)

// get returns the body of url, failing the test on an error or a status other than 200.
func get(t *testing.T, url string, header ...string) (string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v: %s", url, resp.Status, err, b)
	}
	return string(b), resp.Header
}

// TestReportMatchesStats: on a 3-node cluster after some traffic, each node's JSON report holds
// its caches' Stats as Cache.Stats gives them, its peer set with each peer's page, and its
// transport counters.
func TestReportMatchesStats(t *testing.T) {
	nodes := statustest.Start(t, 3, []string{"users", "orders"})
	statustest.Traffic(t, nodes, 20)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Node.Self())
	}
	slices.Sort(addrs)
	var loadErrors int64
	for _, n := range nodes {
		body, hdr := get(t, n.URL+"?format=json")
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Self != n.Node.Self() || rep.UptimeSeconds <= 0 || rep.Node.Started.IsZero() || rep.PID != os.Getpid() {
			t.Fatalf("self %q, uptime %v, started %v, pid %d", rep.Self, rep.UptimeSeconds, rep.Node.Started, rep.PID)
		}
		for name, c := range n.Caches {
			// Compared as JSON: what the report says is what a client reads.
			got, _ := json.Marshal(rep.Node.Caches[name])
			want, _ := json.Marshal(c.Stats())
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: report\n%s\nStats\n%s", n.Node.Self(), name, got, want)
			}
		}
		if got := rep.Node.Caches["users"].Gets; got != 44 {
			t.Errorf("users: %d gets, want 44", got)
		}
		loadErrors += rep.Node.Caches["users"].LoadErrors
		var got []string
		for _, p := range rep.Peers {
			got = append(got, p.Addr)
			if p.Self != (p.Addr == n.Node.Self()) || p.URL == "" {
				t.Errorf("peer %+v", p)
			}
		}
		if !slices.Equal(got, addrs) {
			t.Errorf("peers %v, want %v", got, addrs)
		}
		if st := n.Node.Stats(); rep.Node.Client.Requests != st.Client.Requests || rep.Node.Server.Requests != st.Server.Requests {
			t.Errorf("transport: report %+v %+v, node %+v %+v", rep.Node.Client, rep.Node.Server, st.Client, st.Server)
		}
	}
	// Each node read 2 missing keys and 1 failing key twice, each loaded by its owner.
	if loadErrors != 3*4 {
		t.Errorf("load errors of all nodes: %d, want 12", loadErrors)
	}
}

// TestFormats: a browser gets HTML, a client asking for JSON (by query or Accept) gets JSON;
// other methods are refused.
func TestFormats(t *testing.T) {
	nodes := statustest.Start(t, 1, []string{"users"})
	url := nodes[0].URL
	for _, c := range []struct {
		query, accept string
		json          bool
	}{
		{"", "", false},
		{"", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"", "*/*", false},
		{"", "application/json", true},
		{"?format=json", "text/html", true},
		{"?format=html", "application/json", false},
	} {
		body, hdr := get(t, url+c.query, "Accept", c.accept)
		isJSON := json.Valid([]byte(body))
		if isJSON != c.json || strings.HasPrefix(hdr.Get("Content-Type"), "application/json") != c.json {
			t.Errorf("query %q, Accept %q: JSON %v (%s), want %v", c.query, c.accept, isJSON, hdr.Get("Content-Type"), c.json)
		}
	}
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s", resp.Status)
	}
}

// TestPageHasNoExternalAssets: the page loads nothing (no src, no stylesheet link, no script), its
// policy forbids it, and every link is the page's own JSON or a peer's page (itself included).
func TestPageHasNoExternalAssets(t *testing.T) {
	nodes := statustest.Start(t, 2, []string{"users"})
	body, hdr := get(t, nodes[0].URL)
	for _, bad := range []string{"src=", "<script", "<link", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("the page has %q", bad)
		}
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, href := range strings.Split(body, `href="`)[1:] {
		href = href[:strings.IndexByte(href, '"')]
		if href != "?format=json" && href != nodes[0].URL && href != nodes[1].URL {
			t.Errorf("link to %q", href)
		}
	}
}

// TestPageEscapes: a cache name is text on the page, never markup.
func TestPageEscapes(t *testing.T) {
	nodes := statustest.Start(t, 1, []string{`<b id="x">bold</b>`})
	body, _ := get(t, nodes[0].URL)
	if strings.Contains(body, `<b id="x">`) || !strings.Contains(body, "&lt;b id=&#34;x&#34;&gt;bold&lt;/b&gt;") {
		t.Fatalf("the cache name is not escaped:\n%s", body)
	}
}

// BenchmarkPage: the handler renders the page of a node with 20 caches and 50 peers (HTML, and
// JSON), without the network.
func BenchmarkPage(b *testing.B) {
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("cache-%02d", i))
	}
	nodes := statustest.Start(b, 50, names, groupcache.WithHandoffWindow(0))
	statustest.Traffic(b, nodes[:1], 10)
	h := Handler(nodes[0].Node, WithPeerURL(func(p string) string { return "http://" + p + DefaultPath }))
	for _, format := range []string{"html", "json"} {
		b.Run(format, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, DefaultPath+"?format="+format, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// TestDownPeer: a peer that stopped answering is shown skipped, until when, in the report and on
// the page.
func TestDownPeer(t *testing.T) {
	nodes := statustest.Start(t, 3, []string{"users"})
	down := nodes[2].Node.Self()
	nodes[2].Node.Close()
	for k := range 30 { // about a third are owned by the closed node, which are loaded here
		if _, err := nodes[0].Caches["users"].Get(context.Background(), fmt.Sprint("key", k)); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := get(t, nodes[0].URL+"?format=json")
	var rep Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	ps := rep.Node.Peers[down]
	if !ps.Down || !ps.DownUntil.After(rep.Time) || ps.Errors == 0 {
		t.Fatalf("closed peer %s: %+v", down, ps)
	}
	for _, p := range rep.Peers {
		if p.Addr != down && rep.Node.Peers[p.Addr].Down {
			t.Errorf("peer %s is down", p.Addr)
		}
	}
	page, _ := get(t, nodes[0].URL)
	want := fmt.Sprintf(`down until %s`, ps.DownUntil.UTC().Format("15:04:05"))
	row := page[strings.Index(page, `data-peer="`+down+`"`):]
	if row = row[:strings.Index(row, "</tr>")]; !strings.Contains(row, want) {
		t.Fatalf("the page's row of %s has no %q:\n%s", down, want, row)
	}
}
