// Package status serves a node's status page: an HTML page for people and the same report as
// JSON for machines (the groupcache command reads it). It shows the node's identity and uptime;
// its peers, with their state (up, or skipped after a failure until when), share of the ring,
// latency and errors, and a link to each one's own page; each cache's counters, rates and
// latencies; the hottest keys the caches fetch from their owners; the node's last failures.
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
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// DefaultPath is where the application mounts the page by convention (the examples do); the
// groupcache command asks it of an address given as host:port.
const DefaultPath = "/debug/groupcache/"

// Report is what the page shows; it is the page's JSON form, field names as here.
type Report struct {
	// Self is the node's address on the peer port (Node.Self); Host the name of the machine it
	// runs on (os.Hostname) and PID its process.
	Self string
	Host string
	PID  int
	// Time is when the report was taken; UptimeSeconds how long the node had run then.
	Time          time.Time
	UptimeSeconds float64
	// Peers is the node's peer set, sorted, the node itself included.
	Peers []Peer
	// Node is the node's counters (Node.Stats): its transport, what it knows of each peer in
	// Node.Peers, each cache's counters in Node.Caches, its last failures.
	Node groupcache.NodeStats
	// RateSeconds is the span the rates cover: about the last minute when the page was asked for
	// then too (the handler keeps what it saw at most every 10 s, for 70 s), or else since the
	// node started. Rates holds each cache's rates over it, by cache name; ServeLatency is the
	// durations NodeStats.ServeLatency counted over it.
	RateSeconds  float64
	Rates        map[string]Rates
	ServeLatency observe.Histogram
}

// Peer is one member of the node's peer set.
type Peer struct {
	// Addr is the peer's address on the peer port.
	Addr string
	// Self is true for the node itself.
	Self bool
	// URL is the peer's status page, as WithPeerURL maps it; empty when unknown.
	URL string
	// Rates is what the node saw of the peer over Report.RateSeconds.
	Rates PeerRates
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
	rates   history // what it saw, for the rates
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
		json.NewEncoder(w).Encode(rep) //nolint:errcheck // the client went away
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
	host, _ := os.Hostname()
	rep := Report{
		Self:          h.node.Self(),
		Host:          host,
		PID:           os.Getpid(),
		Time:          now,
		UptimeSeconds: now.Sub(st.Started).Seconds(),
		Node:          st,
	}
	for _, p := range slices.Sorted(maps.Keys(st.Peers)) { // the ring of this snapshot, self included
		peer := Peer{Addr: p, Self: p == rep.Self}
		if h.peerURL != nil {
			peer.URL = h.peerURL(p)
		}
		rep.Peers = append(rep.Peers, peer)
	}
	h.rates.fill(&rep, now)
	return rep
}
