// Package status serves a node's status page: an HTML page for people and the same report as
// JSON for machines (the groupcache command reads it). It shows the node's identity and uptime,
// its peers (with a link to each one's own page), and each cache's counters and rates.
//
// The page names keys and caches, so it belongs on the application's own HTTP port, behind
// whatever guards that port, never on the peer port:
//
//	mux.Handle(status.DefaultPath, status.Handler(node, status.WithPeerURL(func(peer string) string {
//		host, _, _ := net.SplitHostPort(peer) // the peer's address on the peer port
//		return "http://" + net.JoinHostPort(host, "8081") + status.DefaultPath
//	})))
//
// A GET answers HTML, or JSON (a Report) with ?format=json or an Accept header that asks for
// application/json and not text/html. The page is rendered on the server and needs nothing but
// itself: no script, no style sheet or font from elsewhere, so it works where nothing else is
// reachable.
package status

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/typedcache/groupcache"
)

// DefaultPath is where the application mounts the page by convention (the examples do); the
// groupcache command asks it of an address given as host:port.
const DefaultPath = "/debug/groupcache/"

// Report is what the page shows; it is the page's JSON form, field names as here.
type Report struct {
	// Self is the node's address on the peer port (Node.Self).
	Self string
	// Time is when the report was taken; UptimeSeconds how long the node had run then.
	Time          time.Time
	UptimeSeconds float64
	// Peers is the node's peer set, sorted, the node itself included.
	Peers []Peer
	// Node is the node's counters (Node.Stats): its transport, and each cache's in Node.Caches.
	Node groupcache.NodeStats
	// Rates holds each cache's rates, by cache name, over the last RateSeconds.
	Rates map[string]Rates
	// RateSeconds is the span the rates cover: about the last minute when the page was asked for
	// then too (the handler keeps what it saw at most every 10 s, for 70 s), or else since the
	// node started.
	RateSeconds float64
}

// Peer is one member of the node's peer set.
type Peer struct {
	// Addr is the peer's address on the peer port.
	Addr string
	// Self is true for the node itself.
	Self bool
	// URL is the peer's status page, as WithPeerURL maps it; empty when unknown.
	URL string
}

// Rates are a cache's counters per second over a span of time, and its hit ratio over it.
type Rates struct {
	// HitRatio is Hits / Gets over the span, 0 without Gets.
	HitRatio float64
	// Gets, Loads, LoadErrors, Evictions, RemoteGets (fetches from owners) and PeerRequests (keys
	// asked by peers) per second.
	Gets, Loads, LoadErrors, Evictions, RemoteGets, PeerRequests float64
}

// Option configures Handler.
type Option func(*handler)

// WithPeerURL sets how a peer's address on the peer port maps to the URL of its status page,
// which the page links to and the Report carries; "" means unknown. Default: no links. The
// page is on each application's own HTTP port, which the node does not know: the application
// says where its peers mount theirs. A nil f means the default.
func WithPeerURL(f func(peer string) string) Option {
	return func(h *handler) { h.peerURL = f }
}

// Handler returns the handler of node's status page. Mount it on the application's own HTTP
// server (see the package doc); it answers GET and HEAD. It keeps what it saw of the node's
// counters over about a minute, to compute rates: one Handler per node, shared by its viewers.
func Handler(node *groupcache.Node, opts ...Option) http.Handler {
	if node == nil {
		panic("status: Handler of a nil node")
	}
	h := &handler{node: node, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o(h)
		}
	}
	return h
}

// handler serves one node's page.
type handler struct {
	node    *groupcache.Node
	peerURL func(string) string
	now     func() time.Time
	rates   history
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "status: GET or HEAD only", http.StatusMethodNotAllowed)
		return
	}
	rep := h.report()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep) //nolint:errcheck // the client went away
		return
	}
	// Nothing is loaded from elsewhere, and nothing runs: the page is its HTML and its style.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	writePage(w, rep)
}

// wantsJSON reports whether r asks for the JSON form.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// report takes the node's report now.
func (h *handler) report() Report {
	now := h.now()
	st := h.node.Stats()
	rep := Report{
		Self:          h.node.Self(),
		Time:          now,
		UptimeSeconds: now.Sub(st.Started).Seconds(),
		Node:          st,
	}
	for _, p := range h.node.Peers() {
		peer := Peer{Addr: p, Self: p == rep.Self}
		if h.peerURL != nil {
			peer.URL = h.peerURL(p)
		}
		rep.Peers = append(rep.Peers, peer)
	}
	rep.Rates, rep.RateSeconds = h.rates.rates(sample{now, st.Caches}, st.Started)
	return rep
}

// sample is what the handler saw of the caches' counters at a time.
type sample struct {
	at     time.Time
	caches map[string]groupcache.Stats
}

// Rates are computed against a sample at least minSpan old, kept for at most maxAge; one sample is
// kept every step at most.
const (
	step    = 10 * time.Second
	minSpan = 5 * time.Second
	maxAge  = 70 * time.Second
)

// history is the samples the rates are computed against.
type history struct {
	mu      sync.Mutex
	samples []sample // oldest first; guarded by mu
}

// rates returns each cache's rates at cur against the oldest sample kept, or since started when
// none is old enough, and the span they cover; it keeps cur when the newest sample is a step old.
func (hs *history) rates(cur sample, started time.Time) (map[string]Rates, float64) {
	hs.mu.Lock()
	i := 0
	for i < len(hs.samples) && cur.at.Sub(hs.samples[i].at) > maxAge {
		i++
	}
	hs.samples = hs.samples[i:]
	base := sample{at: started}
	if len(hs.samples) > 0 && cur.at.Sub(hs.samples[0].at) >= minSpan {
		base = hs.samples[0]
	}
	if len(hs.samples) == 0 || cur.at.Sub(hs.samples[len(hs.samples)-1].at) >= step {
		hs.samples = append(hs.samples, cur)
	}
	hs.mu.Unlock()

	span := cur.at.Sub(base.at).Seconds()
	out := make(map[string]Rates, len(cur.caches))
	for name, now := range cur.caches {
		out[name] = ratesOf(base.caches[name], now, span) // a cache new since base starts from zero
	}
	return out, span
}

// ratesOf returns the rates of the counters from then to now, span seconds apart. A counter that
// went down (a cache closed and made again under its name) counts from zero.
func ratesOf(then, now groupcache.Stats, span float64) Rates {
	if now.Gets < then.Gets || now.Loads < then.Loads {
		then = groupcache.Stats{}
	}
	per := func(a, b int64) float64 {
		if span <= 0 {
			return 0
		}
		return float64(max(b-a, 0)) / span
	}
	r := Rates{
		Gets:         per(then.Gets, now.Gets),
		Loads:        per(then.Loads, now.Loads),
		LoadErrors:   per(then.LoadErrors, now.LoadErrors),
		Evictions:    per(then.Evictions, now.Evictions),
		RemoteGets:   per(then.RemoteGets, now.RemoteGets),
		PeerRequests: per(then.PeerRequests, now.PeerRequests),
	}
	if gets := now.Gets - then.Gets; gets > 0 {
		r.HitRatio = float64(now.Hits-then.Hits) / float64(gets)
	}
	return r
}

// cacheNames returns the names of the caches in rep, sorted.
func cacheNames(rep Report) []string {
	names := make([]string, 0, len(rep.Node.Caches))
	for name := range rep.Node.Caches {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
