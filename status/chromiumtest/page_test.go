package chromiumtest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/statustest"
)

// chromium returns the path of Chromium, or skips the test.
func chromium(t testing.TB) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not found: the status page's browser tests are SKIPPED (install Debian's chromium package; test.sh does when it runs as root)")
	return ""
}

// browser starts headless Chromium with a fresh profile and returns the context of its tab; the
// browser stops when the test ends.
func browser(t testing.TB) context.Context {
	t.Helper()
	path := chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1500, 1000),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// do runs steps in the tab, failing the test on an error or after 30 s.
func do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// run runs a in the tab and returns its value, failing the test on an error or after 30 s.
func run[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// cell is a table cell of the page as the browser shows it.
type cell struct {
	Text  string `json:"text"`
	Title string `json:"title"`
	Href  string `json:"href"` // of the link in the cell, resolved
}

// shown is what the browser shows of the page: its tables as rows (by their data-cache, data-peer
// or data-side attribute) of cells (by class), and how many resources the page loaded.
type shown struct {
	Self      string                     `json:"self"`
	Peers     map[string]map[string]cell `json:"peers"`
	Reads     map[string]map[string]cell `json:"reads"`
	Memory    map[string]map[string]cell `json:"memory"`
	Transport map[string]map[string]cell `json:"transport"`
	Latency   map[string]map[string]cell `json:"latency"`
	HotKeys   map[string]map[string]cell `json:"hotKeys"`
	Failures  []string                   `json:"failures"` // each row's cells' text, joined by "|"
	Resources int                        `json:"resources"`
}

const readPage = `(() => {
	const rows = sel => Object.fromEntries([...document.querySelectorAll(sel)].map(tr => [
		tr.dataset.cache || tr.dataset.peer || tr.dataset.side,
		Object.fromEntries([...tr.cells].filter(td => td.className).map(td => [td.className, {
			text: td.textContent, title: td.title, href: (td.querySelector('a') || {}).href || ''}]))]));
	return {
		self: document.getElementById('self').textContent,
		peers: rows('#peers tr[data-peer]'),
		reads: rows('#reads tr[data-cache]'),
		memory: rows('#memory tr[data-cache]'),
		transport: rows('#transport tr[data-side]'),
		latency: rows('#latency tr[data-cache]'),
		hotKeys: rows('#hot-keys tr[data-cache]'),
		failures: [...document.querySelectorAll('#failures tr')].slice(1).map(tr => [...tr.cells].map(td => td.textContent).join('|')),
		resources: performance.getEntriesByType('resource').length,
	};
})()`

// show navigates to url and returns what the browser shows.
func show(t testing.TB, ctx context.Context, url string) shown {
	t.Helper()
	do(t, ctx, chromedp.Navigate(url))
	return run(t, ctx, chromedp.Evaluate[shown](readPage))
}

// checkCell fails the test unless the cell's text (or title, for byte counts) is want.
func checkCell(t *testing.T, where string, row map[string]cell, class string, want int64) {
	t.Helper()
	c, ok := row[class]
	got := c.Text
	if c.Title != "" {
		got = c.Title
	}
	if !ok || got != strconv.FormatInt(want, 10) {
		t.Errorf("%s: %s shows %q, Stats has %d", where, class, got, want)
	}
}

// checkCaches fails the test unless the page shows each cache's Stats.
func checkCaches(t *testing.T, n statustest.Node, page shown) {
	t.Helper()
	for name, c := range n.Caches {
		st := c.Stats()
		where := n.Node.Self() + " " + name
		reads, memory := page.Reads[name], page.Memory[name]
		for class, want := range map[string]int64{
			"gets": st.Gets, "hits": st.Hits, "hot-hits": st.HotHits, "misses": st.Misses, "loads": st.Loads,
			"load-errors": st.LoadErrors, "remote-gets": st.RemoteGets, "remote-errors": st.RemoteErrors,
			"peer-requests": st.PeerRequests,
		} {
			checkCell(t, where, reads, class, want)
		}
		for class, want := range map[string]int64{
			"items": st.Items, "bytes": st.Bytes, "max-bytes": st.MaxBytes, "hot-items": st.HotItems,
			"hot-bytes": st.HotBytes, "evictions": st.Evictions, "expirations": st.Expirations,
			"too-large": st.TooLarge, "sent": st.BytesSent, "received": st.BytesReceived,
		} {
			checkCell(t, where, memory, class, want)
		}
	}
	if len(page.Reads) != len(n.Caches) || len(page.Memory) != len(n.Caches) {
		t.Errorf("%s: %d and %d cache rows, want %d", n.Node.Self(), len(page.Reads), len(page.Memory), len(n.Caches))
	}
}

// checkNode fails the test unless the page shows what the node knows of its peers (state, ring
// share, errors), its caches' hottest keys and its last failures.
func checkNode(t *testing.T, n statustest.Node, page shown) {
	t.Helper()
	st := n.Node.Stats()
	for addr, ps := range st.Peers {
		row := page.Peers[addr]
		state := "up"
		if addr == n.Node.Self() {
			state = "this node"
		}
		if got, want := row["state"].Text+" "+row["share"].Text, fmt.Sprintf("%s %.1f%%", state, 100*ps.RingShare); got != want {
			t.Errorf("%s: peer %s shows %q, want %q", n.Node.Self(), addr, got, want)
		}
		checkCell(t, n.Node.Self()+" peer "+addr, row, "errors", ps.Errors)
	}
	for name, cs := range st.Caches {
		keys := page.HotKeys[name]["keys"].Text
		for _, k := range cs.HotKeys {
			if !strings.Contains(keys, k.Key+"\u00a0×"+strconv.FormatInt(k.Count, 10)) {
				t.Errorf("%s %s: hot key %q ×%d not in %q", n.Node.Self(), name, k.Key, k.Count, keys)
			}
		}
	}
	if len(page.Failures) != len(st.Failures) {
		t.Fatalf("%s: %d failures shown, %d in NodeStats", n.Node.Self(), len(page.Failures), len(st.Failures))
	}
	for i, f := range st.Failures {
		if want := fmt.Sprintf("|%s|%s|%d|%s", f.Cache, f.Peer, f.Count, f.Msg); !strings.HasSuffix(page.Failures[i], want) {
			t.Errorf("%s: failure %d shows %q, want %q", n.Node.Self(), i, page.Failures[i], want)
		}
	}
}

// TestPageInChromium: on a 3-node cluster after traffic, each node's page, as Chromium shows it,
// names the node, holds the numbers of its caches' Stats and of its transport, its peers' state
// and ring share with links to their pages, its caches' hottest keys and its last failures, and
// loads nothing but itself; following each link shows that peer's page.
func TestPageInChromium(t *testing.T) {
	ctx := browser(t)
	nodes := statustest.Start(t, 3, []string{"orders", "users"})
	statustest.Traffic(t, nodes, 30)
	for _, n := range nodes {
		page := show(t, ctx, n.URL)
		if page.Self != n.Node.Self() {
			t.Errorf("page of %s names %q", n.Node.Self(), page.Self)
		}
		if page.Resources != 0 {
			t.Errorf("page of %s loaded %d resources, want none", n.Node.Self(), page.Resources)
		}
		checkCaches(t, n, page)
		checkNode(t, n, page)
		st := n.Node.Stats()
		checkCell(t, n.Node.Self(), page.Transport["client"], "requests", st.Client.Requests)
		checkCell(t, n.Node.Self(), page.Transport["server"], "requests", st.Server.Requests)
		for _, p := range nodes {
			if href := page.Peers[p.Node.Self()]["addr"].Href; href != p.URL {
				t.Errorf("page of %s links peer %s to %q, want %q", n.Node.Self(), p.Node.Self(), href, p.URL)
			}
		}
		if len(page.Peers) != len(nodes) {
			t.Errorf("page of %s lists %d peers, want %d", n.Node.Self(), len(page.Peers), len(nodes))
		}
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if to.URL == from.URL {
				continue
			}
			do(t, ctx, chromedp.Navigate(from.URL))
			link := chromedp.CSS(fmt.Sprintf(`tr[data-peer=%q] td.addr a`, to.Node.Self()))
			run(t, ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(link)))
			if at := run(t, ctx, chromedp.Location()); at != to.URL {
				t.Errorf("the link to %s on %s's page led to %s", to.Node.Self(), from.Node.Self(), at)
			}
			if self := run(t, ctx, chromedp.Text(chromedp.CSS("#self"))); self != to.Node.Self() {
				t.Errorf("the link to %s on %s's page shows the page of %q", to.Node.Self(), from.Node.Self(), self)
			}
		}
	}
}

// largeNode starts 50 nodes with 20 caches each, reads some keys of every cache on the first
// node, and returns the nodes.
func largeNode(t testing.TB) []statustest.Node {
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("cache-%02d", i))
	}
	nodes := statustest.Start(t, 50, names, groupcache.WithHandoffWindow(0))
	statustest.Traffic(t, nodes[:1], 10)
	return nodes
}

// TestLargeNode: the page of a node with 20 caches and 50 peers lists them all, with the numbers
// of the caches' Stats. BenchmarkLargeNode measures how long Chromium takes to show it.
func TestLargeNode(t *testing.T) {
	ctx := browser(t)
	nodes := largeNode(t)
	page := show(t, ctx, nodes[0].URL)
	if len(page.Peers) != 50 {
		t.Errorf("%d peers shown, want 50", len(page.Peers))
	}
	checkCaches(t, nodes[0], page)
}

// BenchmarkLargeNode: Chromium loads and shows the page of a node with 20 caches and 50 peers. An
// op is a navigation to the page until its load event, and a read of its DOM; ms/load is the
// browser's own measure, from the navigation's start to the end of the load event.
func BenchmarkLargeNode(b *testing.B) {
	ctx := browser(b)
	nodes := largeNode(b)
	var loadMs float64
	b.ResetTimer()
	for b.Loop() {
		do(b, ctx, chromedp.Navigate(nodes[0].URL))
		if rows := run(b, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#reads tr[data-cache], #peers tr[data-peer]').length`)); rows != 20+50 {
			b.Fatalf("%d rows", rows)
		}
		loadMs += run(b, ctx, chromedp.Evaluate[float64](`performance.getEntriesByType('navigation')[0].loadEventEnd`))
	}
	b.ReportMetric(loadMs/float64(b.N), "ms/load")
}
