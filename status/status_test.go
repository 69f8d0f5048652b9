package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/testcluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a node of a test cluster with its caches, and its status page served on a port of its
// own.
type node struct {
	node   *groupcache.Node
	caches map[string]*groupcache.Cache[string, string]
	srv    *httptest.Server
}

// cluster starts n nodes on 127.0.0.1, each with the caches named, and each node's status page
// on a server of its own, linked to its peers' pages.
func cluster(t *testing.T, n int, names ...string) []node {
	t.Helper()
	cl := testcluster.Start(t, n)
	urls := map[string]string{}
	nodes := make([]node, n)
	for i, gn := range cl.Nodes {
		nodes[i] = node{node: gn, caches: map[string]*groupcache.Cache[string, string]{}}
		for _, name := range names {
			c := groupcache.MustNew[string, string](name, groupcache.LoaderFunc[string, string](
				func(_ context.Context, k string) (string, error) {
					if strings.HasPrefix(k, "missing") {
						return "", groupcache.ErrNotFound
					}
					return name + ":" + k, nil
				}), groupcache.WithNode(gn), groupcache.WithMaxBytes(1<<20))
			t.Cleanup(func() { c.Close() })
			nodes[i].caches[name] = c
		}
		mux := http.NewServeMux()
		mux.Handle(DefaultPath, Handler(gn, WithPeerURL(func(p string) string { return urls[p] })))
		nodes[i].srv = httptest.NewServer(mux)
		t.Cleanup(nodes[i].srv.Close)
		urls[gn.Self()] = nodes[i].srv.URL + DefaultPath
	}
	return nodes
}

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
	nodes := cluster(t, 3, "users", "orders")
	ctx := context.Background()
	for i, n := range nodes {
		for k := range 40 {
			n.caches["users"].Get(ctx, fmt.Sprint("u", k))
			n.caches["orders"].Get(ctx, fmt.Sprint("missing", k%(i+2)))
		}
	}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.node.Self())
	}
	slices.Sort(addrs)
	for _, n := range nodes {
		body, hdr := get(t, n.srv.URL+DefaultPath+"?format=json")
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Self != n.node.Self() || rep.UptimeSeconds <= 0 || rep.Node.Started.IsZero() {
			t.Fatalf("self %q, uptime %v, started %v", rep.Self, rep.UptimeSeconds, rep.Node.Started)
		}
		for name, c := range n.caches {
			if got, want := rep.Node.Caches[name], c.Stats(); got != want {
				t.Errorf("%s %s: report\n%+v\nStats\n%+v", n.node.Self(), name, got, want)
			}
		}
		if got := rep.Node.Caches["users"].Gets; got != 40 {
			t.Errorf("users gets %d, want 40", got)
		}
		var got []string
		for _, p := range rep.Peers {
			got = append(got, p.Addr)
			if p.Self != (p.Addr == n.node.Self()) || p.URL == "" {
				t.Errorf("peer %+v", p)
			}
		}
		if !slices.Equal(got, addrs) {
			t.Errorf("peers %v, want %v", got, addrs)
		}
		if st := n.node.Stats(); rep.Node.Client.Requests != st.Client.Requests || rep.Node.Server.Requests != st.Server.Requests {
			t.Errorf("transport: report %+v %+v, node %+v %+v", rep.Node.Client, rep.Node.Server, st.Client, st.Server)
		}
	}
}

// TestFormats: a browser gets HTML, a client asking for JSON (by query or Accept) gets JSON;
// other methods are refused.
func TestFormats(t *testing.T) {
	nodes := cluster(t, 1, "users")
	url := nodes[0].srv.URL + DefaultPath
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
	nodes := cluster(t, 2, "users")
	body, hdr := get(t, nodes[0].srv.URL+DefaultPath)
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
		if href != "?format=json" && href != nodes[0].srv.URL+DefaultPath && href != nodes[1].srv.URL+DefaultPath {
			t.Errorf("link to %q", href)
		}
	}
}

// TestPageEscapes: a cache name is text on the page, never markup.
func TestPageEscapes(t *testing.T) {
	nodes := cluster(t, 1, `<b id="x">bold</b>`)
	body, _ := get(t, nodes[0].srv.URL+DefaultPath)
	if strings.Contains(body, `<b id="x">`) || !strings.Contains(body, "&lt;b id=&#34;x&#34;&gt;bold&lt;/b&gt;") {
		t.Fatalf("the cache name is not escaped:\n%s", body)
	}
}

// TestRates: rates are counted since the node started until a sample is old enough, then over
// the span since the oldest sample kept, which is at most 70 s old.
func TestRates(t *testing.T) {
	nodes := cluster(t, 1, "users")
	users := nodes[0].caches["users"]
	started := nodes[0].node.Stats().Started
	now := started.Add(10 * time.Second)
	h := Handler(nodes[0].node).(*handler)
	h.now = func() time.Time { return now }
	gets := func(n int, prefix string) {
		for i := range n {
			users.Get(context.Background(), fmt.Sprint(prefix, i))
		}
	}
	check := func(step string, span float64, r Rates) {
		t.Helper()
		rep := h.report()
		if rep.RateSeconds != span || rep.Rates["users"] != r {
			t.Fatalf("%s: span %v, rates %+v; want %v, %+v", step, rep.RateSeconds, rep.Rates["users"], span, r)
		}
	}
	gets(20, "a") // 20 misses, 20 loads
	check("first view", 10, Rates{Gets: 2, Loads: 2})
	now = now.Add(4 * time.Second)
	gets(14, "a") // 14 hits
	check("4 s later: no sample old enough", 14, Rates{HitRatio: 14.0 / 34, Gets: 34.0 / 14, Loads: 20.0 / 14})
	now = now.Add(6 * time.Second)
	gets(10, "b") // 10 misses
	check("against the first view's sample", 10, Rates{HitRatio: 14.0 / 24, Gets: 2.4, Loads: 1})
	now = now.Add(61 * time.Second)
	check("71 s after the first sample: the next one", 61, Rates{})
}
