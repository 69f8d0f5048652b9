package prometheus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serveMetrics serves a registry holding col at /metrics on 127.0.0.1 and returns its URL.
func serveMetrics(t *testing.T, col prom.Collector) string {
	t.Helper()
	reg := prom.NewRegistry()
	reg.MustRegister(col)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// scrape gets url over HTTP and parses the exposition, as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return mfs
}

// metric returns the metric of family name whose labels are labels ("name=value" pairs).
func metric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric %s in the exposition", name)
	}
	for _, m := range mf.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") == strings.Join(labels, ",") {
			return m
		}
	}
	t.Fatalf("no metric %s{%s} in the exposition", name, strings.Join(labels, ","))
	return nil
}

// value returns the value of a counter or gauge.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := metric(t, mfs, name, labels...)
	switch mfs[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is a %v", name, mfs[name].GetType())
	return 0
}

// checkHistogram checks that the histogram name{labels} is h.
func checkHistogram(t *testing.T, mfs map[string]*dto.MetricFamily, h observe.Histogram, name string, labels ...string) {
	t.Helper()
	if mfs[name].GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s is a %v, want a histogram", name, mfs[name].GetType())
	}
	ph := metric(t, mfs, name, labels...).GetHistogram()
	if ph.GetSampleCount() != uint64(h.Count()) || math.Abs(ph.GetSampleSum()-h.Sum.Seconds()) > 1e-9 {
		t.Fatalf("%s{%v}: count %d sum %v, want %d and %v", name, labels, ph.GetSampleCount(), ph.GetSampleSum(), h.Count(), h.Sum.Seconds())
	}
	// One bucket per bound, and +Inf, which holds every duration.
	buckets := ph.GetBucket()
	if len(buckets) != observe.Buckets || !math.IsInf(buckets[observe.Buckets-1].GetUpperBound(), 1) ||
		buckets[observe.Buckets-1].GetCumulativeCount() != uint64(h.Count()) {
		t.Fatalf("%s: %d buckets, want %d ending with +Inf", name, len(buckets), observe.Buckets)
	}
	var cum int64
	for i, b := range buckets[:observe.Buckets-1] {
		cum += h.Counts[i]
		if b.GetUpperBound() != observe.Bound(i).Seconds() || b.GetCumulativeCount() != uint64(cum) {
			t.Fatalf("%s bucket %d: le %v count %d, want le %v count %d", name, i, b.GetUpperBound(), b.GetCumulativeCount(), observe.Bound(i).Seconds(), cum)
		}
	}
}

// checkCache checks every metric of the cache named name against its Stats.
func checkCache(t *testing.T, mfs map[string]*dto.MetricFamily, name string, st groupcache.Stats) {
	t.Helper()
	for _, m := range cacheCounters {
		fq := fqName(m.desc)
		if got := value(t, mfs, fq, "cache="+name); got != float64(m.value(&st)) {
			t.Errorf("%s{cache=%q} = %v, want %d", fq, name, got, m.value(&st))
		}
	}
	for _, m := range cacheHistograms {
		checkHistogram(t, mfs, m.value(&st), fqName(m.desc), "cache="+name)
	}
	// A few by name, so that a name given to the wrong field is caught.
	for fq, want := range map[string]int64{"groupcache_gets_total": st.Gets, "groupcache_hits_total": st.Hits,
		"groupcache_loads_total": st.Loads, "groupcache_remote_gets_total": st.RemoteGets, "groupcache_items": st.Items,
		"groupcache_bytes": st.Bytes, "groupcache_evicted_fresh_total": st.EvictedFresh, "groupcache_peer_requests_total": st.PeerRequests} {
		if got := value(t, mfs, fq, "cache="+name); got != float64(want) {
			t.Errorf("%s{cache=%q} = %v, want %d", fq, name, got, want)
		}
	}
	checkHistogram(t, mfs, st.FetchLatency, "groupcache_fetch_duration_seconds", "cache="+name)
	checkHistogram(t, mfs, st.LoadLatency, "groupcache_load_duration_seconds", "cache="+name)
}

// fqName returns the name of a metric described by d.
func fqName(d *prom.Desc) string {
	s := d.String() // Desc{fqName: "groupcache_...", ...}
	s = s[strings.Index(s, `"`)+1:]
	return s[:strings.Index(s, `"`)]
}

// TestScrapeCluster scrapes the metrics of three real nodes over HTTP, each with a cache on the
// node and one alone, and checks them against Stats and NodeStats: before and after a peer dies.
func TestScrapeCluster(t *testing.T) {
	cl := testcluster.Start(t, 3, groupcache.WithNodeLogger(quiet()))
	var users []*groupcache.Cache[string, string]
	var urls []string
	alone, err := groupcache.New[int, string]("alone", groupcache.LoaderFunc[int, string](func(_ context.Context, k int) (string, error) {
		return strconv.Itoa(k), nil
	}), groupcache.WithMaxBytes(4<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alone.Close() })
	for _, n := range cl.Nodes {
		c, err := groupcache.New[string, string]("users", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
			if strings.HasPrefix(k, "bad") {
				return "", errors.New("the database is down")
			}
			time.Sleep(time.Millisecond)
			return "v-" + k, nil
		}), groupcache.WithNode(n), groupcache.WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		users = append(users, c)
		urls = append(urls, serveMetrics(t, New(n, Cache{Name: "alone", Stats: alone.Stats})))
	}
	ctx := context.Background()
	for i := range 60 {
		k := fmt.Sprintf("k%d", i)
		for _, c := range users {
			if _, err := c.Get(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		users[i%3].Get(ctx, "bad"+k)
		alone.Get(ctx, i) // 60 values in 4 KiB: some are evicted
	}
	users[0].GetMany(ctx, []string{"k1", "k2", "m1", "m2", "m3"})

	for i, n := range cl.Nodes {
		mfs := scrape(t, urls[i])
		st := n.Stats()
		checkCache(t, mfs, "users", st.Caches["users"])
		checkCache(t, mfs, "alone", alone.Stats())
		checkNode(t, mfs, cl, st)
	}
	if alone.Stats().EvictedFresh == 0 {
		t.Fatal("no eviction of a fresh entry in the cache alone")
	}

	// Node 2 dies; node 0 finds out with a Get of a key it owns.
	cl.Kill(2)
	before := time.Now()
	k := keyOwnedBy(t, cl.Addrs, cl.Addrs[2])
	if _, err := users[0].Get(ctx, k); err != nil {
		t.Fatal(err)
	}
	mfs := scrape(t, urls[0])
	st := cl.Nodes[0].Stats()
	checkCache(t, mfs, "users", st.Caches["users"])
	p2 := st.Peers[cl.Addrs[2]]
	dead := "peer=" + cl.Addrs[2]
	if !p2.Down || value(t, mfs, "groupcache_peer_down", dead) != 1 || value(t, mfs, "groupcache_peer_errors_total", dead) != float64(p2.Errors) || p2.Errors < 1 {
		t.Fatalf("dead peer: %+v; exposition down %v, errors %v", p2, value(t, mfs, "groupcache_peer_down", dead), value(t, mfs, "groupcache_peer_errors_total", dead))
	}
	if until := value(t, mfs, "groupcache_peer_down_until_timestamp_seconds", dead); until != float64(p2.DownUntil.UnixNano())/1e9 || until < float64(before.Unix()) {
		t.Fatalf("down until %v, want %v", until, p2.DownUntil)
	}
	if value(t, mfs, "groupcache_peer_down", "peer="+cl.Addrs[1]) != 0 {
		t.Fatal("a live peer is reported down")
	}
}

// checkNode checks a node's own metrics against its NodeStats.
func checkNode(t *testing.T, mfs map[string]*dto.MetricFamily, cl *testcluster.Cluster, st groupcache.NodeStats) {
	t.Helper()
	for _, m := range nodeCounters {
		if got := value(t, mfs, fqName(m.desc)); got != float64(m.value(&st)) {
			t.Errorf("%s = %v, want %d", fqName(m.desc), got, m.value(&st))
		}
	}
	if got := value(t, mfs, "groupcache_client_requests_total"); got != float64(st.Client.Requests) || got == 0 {
		t.Errorf("client requests %v, want %d", got, st.Client.Requests)
	}
	checkHistogram(t, mfs, st.ServeLatency, "groupcache_serve_duration_seconds")
	if st.ServeLatency.Count() == 0 {
		t.Error("no request served")
	}
	for op := peer.OpGet; op <= peer.OpPeekMany; op++ {
		if got := value(t, mfs, "groupcache_server_requests_total", "op="+op.String()); got != float64(st.Server.ByOp[op]) {
			t.Errorf("requests %s: %v, want %d", op, got, st.Server.ByOp[op])
		}
	}
	if got := value(t, mfs, "groupcache_server_replies_total", "status=not_found"); got != float64(st.Server.ByStatus[peer.StatusNotFound]) {
		t.Errorf("not-found replies %v, want %d", got, st.Server.ByStatus[peer.StatusNotFound])
	}
	ring, _ := hash.NewRing(cl.Addrs)
	for i, p := range ring.Peers() {
		label := "peer=" + p
		ps := st.Peers[p]
		if got := value(t, mfs, "groupcache_peer_ring_share", label); got != ring.Shares()[i] || got != ps.RingShare {
			t.Errorf("ring share of %s: %v, want %v", p, got, ring.Shares()[i])
		}
		checkHistogram(t, mfs, ps.FetchLatency, "groupcache_peer_fetch_duration_seconds", label)
		if value(t, mfs, "groupcache_peer_down", label) != 0 || value(t, mfs, "groupcache_peer_errors_total", label) != float64(ps.Errors) {
			t.Errorf("peer %s: %+v", p, ps)
		}
	}
}

// keyOwnedBy returns a key that owner owns on the ring of peers.
func keyOwnedBy(t *testing.T, peers []string, owner string) string {
	t.Helper()
	ring, err := hash.NewRing(peers)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		k := "owned" + strconv.Itoa(i)
		kb, _ := codec.String().Append(nil, k)
		if o, _ := ring.Owner(kb); o == owner {
			return k
		}
	}
}

// TestNames: every name follows Prometheus's conventions: the groupcache_ prefix, _total on
// counters and only on them, a unit on histograms.
func TestNames(t *testing.T) {
	c := New(nil, Cache{Name: "c", Stats: func() groupcache.Stats { return groupcache.Stats{} }})
	url := serveMetrics(t, c)
	for name, mf := range scrape(t, url) {
		if !strings.HasPrefix(name, "groupcache_") {
			t.Errorf("%s: no groupcache_ prefix", name)
		}
		isCounter := mf.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %v", name, mf.GetType())
		}
		if mf.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds") {
			t.Errorf("histogram %s has no _seconds", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	// Described metrics match those collected: a registry checks them as it registers.
	if err := prom.NewPedanticRegistry().Register(c); err != nil {
		t.Fatal(err)
	}
}
