package groupcache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/ratelimit"
	"github.com/typedcache/groupcache/internal/recent"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/peer"
)

// Defaults of the node options; each option's doc states its own.
const (
	defaultPeerBackoff   = 5 * time.Second
	defaultHandoffWindow = time.Minute
)

// Node is one process's place in a cluster: its own address, the current peer set and its
// consistent-hash ring, the server that answers peers and the client that asks them. Caches attach
// to a node with WithNode; each key of each cache is then owned by one peer, which alone loads it,
// and every other node asks the owner.
//
// A process runs one Node; many caches, each with its own types, share it. A Node is safe for
// concurrent use.
type Node struct {
	self     string
	log      *slog.Logger
	client   *peer.Client
	server   *peer.Server
	backoff  time.Duration
	window   time.Duration // hand-off window
	compress int           // compression threshold for values served to peers

	ring    atomic.Pointer[hash.Ring]              // swapped whole; never nil
	handoff atomic.Pointer[handoffRing]            // the ring before the last change, while recent
	writes  atomic.Uint64                          // writes (removals, sets, clears) of the caches here, counted for the hand-off
	caches  atomic.Pointer[map[string]servedCache] // copy on write under mu
	health  sync.Map                               // peer address -> *atomic.Int64: unix nanos until which the peer is skipped
	warned  sync.Map                               // peer address -> *ratelimit.Gate of the warnings about it
	probing sync.Map                               // peer address -> true, while a probe of it runs
	peerObs sync.Map                               // peer address -> *peerRecord: its latency and errors
	bg      sync.WaitGroup                         // the probes and hand-overs, which Close waits for; Add under mu
	mu      sync.Mutex                             // serializes peer-set changes and cache registration
	closed  atomic.Bool
	servers []*http.Server // of Serve, closed by Close; guarded by mu

	stopHandOver context.CancelFunc // of the hand-over to a peer that joined, in progress; guarded by mu

	misnames atomic.Int64     // connections to peers that named themselves otherwise
	serving  observe.Recorder // latency of the peers' requests for values served here
	epoch    time.Time        // when the node was made: the origin of mono, and NodeStats.Started
	known    atomic.Bool      // the peer set was given (WithPeers or SetPeers): readyz
	leaving  atomic.Bool      // Shutdown has begun: readyz
	done     chan struct{}    // closed by Close
	closing  sync.Once
}

// handoffRing is the ring that was in force before the last peer-set change, and until when a new
// owner asks the previous owner of a key for its value before loading it.
type handoffRing struct {
	ring  *hash.Ring
	until int64 // unix nanoseconds
	// since is the node's count of writes (Node.writes) when the ring changed: a key written here
	// after it is not taken over (see Cache.previousOwner).
	since uint64
}

// servedCache is the part of a Cache[K, V] that the node's server calls. It knows no K or V.
type servedCache interface {
	serve(ctx context.Context, key []byte) (peer.Value, error)
	serveInline(key []byte) (peer.Value, bool, error)
	serveMany(ctx context.Context, keys [][]byte) ([]peer.Result, error)
	peek(key []byte) (peer.Value, error)
	peekMany(keys [][]byte) ([]peer.Result, error)
	setFromPeer(key []byte, v peer.Value) error
	offerFromPeer(key []byte, v peer.Value) error
	handOver(ctx context.Context, next func(kb []byte) (string, bool))
	removeFromPeer(keys [][]byte) error
	clearFromPeer(generation uint64) error
	Stats() Stats
}

// NodeOption configures NewNode.
type NodeOption interface {
	applyNode(*nodeSettings) error
}

type nodeOptionFunc func(*nodeSettings) error

func (f nodeOptionFunc) applyNode(s *nodeSettings) error { return f(s) }

type nodeSettings struct {
	peers         []string
	clientOptions []peer.ClientOption
	serverOptions []peer.ServerOption
	backoff       time.Duration
	window        time.Duration
	compress      int
	logger        *slog.Logger
}

// WithPeers sets the initial peer set (addresses "host:port"; self is added if missing). Default:
// the node alone. SetPeers changes it later.
func WithPeers(peers ...string) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		s.peers = append([]string(nil), peers...)
		return nil
	})
}

// WithPeerOptions passes options to the node's transport: each peer.ServerOption configures the
// server that answers peers, each peer.ClientOption the client that asks them, and each
// peer.SharedOption both, as the two ends of a connection must agree on it. Authentication is
// one of these: peer.WithTLS or peer.WithSecret, given to every node of the cluster
// (docs/security.md). Without either, the node serves loopback peers only, unless
// peer.WithInsecure is given. The node claims its own address when it connects (peer.WithSelf)
// and, by default, accepts writes (Set, Remove, Clear) only from peers that claim an address of
// its current peer set; a peer.WithAuthorizer given here replaces that rule. Default: peer's
// defaults.
func WithPeerOptions(opts ...peer.Option) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		for _, o := range opts {
			if o == nil {
				continue
			}
			if so, ok := o.(peer.ServerOption); ok {
				s.serverOptions = append(s.serverOptions, so)
			}
			if co, ok := o.(peer.ClientOption); ok {
				s.clientOptions = append(s.clientOptions, co)
			}
		}
		return nil
	})
}

// WithPeerBackoff sets how long the node skips a peer after a network failure (connection refused,
// broken or timed out), a refusal, or its notice that it is leaving: keys it owns are loaded
// locally meanwhile, so a dead peer costs at most one timeout per back-off period instead of one
// per Get. Meanwhile the node probes the peer every 0.5 s with a Peek, which never loads, and asks
// it again as soon as it answers: the back-off bounds the skipping of a peer that does not
// answer. Default 5 s; valid range d > 0.
func WithPeerBackoff(d time.Duration) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		if d <= 0 {
			return invalid("WithPeerBackoff", "%v is not positive", d)
		}
		s.backoff = d
		return nil
	})
}

// WithHandoffWindow sets how long after a peer-set change a node that became the owner of a key
// first asks the key's previous owner for its value (a peek, which never makes the previous owner
// load) before running the loader, so that scaling out does not turn into a load storm. It also
// bounds the hand-over of values to their next owners, when the node leaves (Shutdown) or a peer
// joins (at most half of d), and how long a node declines values handed over for a key written on
// it (d): give every node the same d, at least four times the peer call timeout. 0 turns hand-off
// and hand-over off. Default 1 min; valid range d >= 0.
func WithHandoffWindow(d time.Duration) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		if d < 0 {
			return invalid("WithHandoffWindow", "%v is negative", d)
		}
		s.window = d
		return nil
	})
}

// WithCompressThreshold sets the encoded size from which values served to peers are compressed
// (S2). Default peer.DefaultCompressThreshold; a negative value never compresses.
func WithCompressThreshold(n int) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		s.compress = n
		if n == 0 {
			s.compress = peer.DefaultCompressThreshold
		}
		return nil
	})
}

// WithNodeLogger sets the node's logger (peer failures, peer-set changes). Default slog.Default().
func WithNodeLogger(l *slog.Logger) NodeOption {
	return nodeOptionFunc(func(s *nodeSettings) error {
		s.logger = l
		return nil
	})
}

// NewNode makes the node of this process; self is the address ("host:port", port in 1..65535) at
// which its peers reach it, and must appear under that name in the peer sets of every other node.
// Addresses are reduced to one form before they go on the ring ("localhost:080" and
// "127.0.0.1:80" are one peer; Self returns that form): see docs/design.md, "Peer addresses". A
// node that reaches a peer under another name than the peer's own logs it and counts it in
// NodeStats.Misnamed. The node serves peers once its Handler is mounted on an HTTP server, or
// through Serve.
func NewNode(self string, opts ...NodeOption) (*Node, error) {
	self, err := canonical(self)
	if err != nil {
		return nil, invalid("NewNode", "self: %v", err)
	}
	s := nodeSettings{backoff: defaultPeerBackoff, window: defaultHandoffWindow, compress: peer.DefaultCompressThreshold}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyNode(&s); err != nil {
			return nil, err
		}
	}
	n := &Node{
		epoch:    time.Now(),
		done:     make(chan struct{}),
		self:     self,
		log:      s.logger,
		backoff:  s.backoff,
		window:   s.window,
		compress: s.compress,
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With(slog.String("node", self))
	empty := map[string]servedCache{}
	n.caches.Store(&empty)
	n.known.Store(len(s.peers) > 0)
	if err := n.initPeers(append(s.peers, self)); err != nil {
		return nil, err
	}
	trace := peer.WithTraceContext(traceInject, traceExtract)
	server, err := peer.NewServer(nodeBackend{n}, append([]peer.ServerOption{peer.WithServerLogger(n.log), trace,
		peer.WithAuthorizer(n.authorize), peer.WithSelf(n.self)}, s.serverOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	n.server = server
	if n.client, err = peer.NewClient(append([]peer.ClientOption{peer.WithSelf(n.self), peer.WithObserver(observer{n}), trace},
		s.clientOptions...)...); err != nil {
		server.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return n, nil
}

// canonical returns the form of a peer address that goes on the ring, or why addr is not one: nodes
// that name a peer differently disagree on which keys it owns, so each name is reduced to one
// form. "host:port", with a port in 1..65535, written in decimal without leading zeros; an IP host
// in Go's text form (an IPv4-mapped IPv6 address as IPv4; IPv6 lower-case, compressed, in
// brackets); a host name lower-cased and without a trailing dot; "localhost" as 127.0.0.1, the
// address it names on nearly every system. Host names are not resolved: a name and the IP it
// resolves to stay two names (a node that reaches a peer under another name than the peer's own
// logs it, see NodeStats.Misnamed).
func canonical(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("%q: port %q is not in 1..65535", addr, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	} else if host = strings.TrimSuffix(strings.ToLower(host), "."); host == "localhost" {
		host = "127.0.0.1"
	}
	if host == "" || strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "", fmt.Errorf("%q: empty host, or a space or control character in it", addr)
	}
	return net.JoinHostPort(host, strconv.FormatUint(p, 10)), nil
}

// authorize is the server's default authorizer: reads from any peer the transport authenticated,
// writes only from a peer that claims an address of the current peer set. A peer that has just
// joined may see its first writes refused until this node learns of it; the writer then reports
// ErrIncomplete.
func (n *Node) authorize(claim string, op peer.Op) bool {
	switch {
	case !op.IsWrite():
		return true
	case claim == "":
		return false
	case n.ring.Load().Contains(claim):
		return true
	}
	// A node that has just left hands its values over (OpOffer), which fill only keys nobody
	// wrote lately.
	h := n.handoff.Load()
	return op == peer.OpOffer && h != nil && time.Now().UnixNano() <= h.until && h.ring.Contains(claim)
}

// Done returns a channel that is closed when the node is closed; discovery.Run stops then.
func (n *Node) Done() <-chan struct{} { return n.done }

// Self returns the node's own address.
func (n *Node) Self() string { return n.self }

// Peers returns the current peer set, sorted, self included.
func (n *Node) Peers() []string { return n.ring.Load().Peers() }

// SetPeers replaces the peer set, which must contain the node itself (a node outside its own ring
// would never be asked for anything); addresses are reduced to one form as in NewNode, duplicates
// are dropped and order does not matter. A peer that joins or leaves the set starts afresh: a
// back-off it had (WithPeerBackoff) ends. Gets running meanwhile see either the old ring or the
// new one, never a mix. Errors: ErrInvalidOption for a set without the node or with an address
// that is not "host:port" with a port in 1..65535, ErrClosed.
func (n *Node) SetPeers(peers ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ring, err := n.newRing(peers)
	if err != nil {
		return err
	}
	old := n.ring.Swap(ring)
	n.known.Store(true)
	if slices.Equal(old.Peers(), ring.Peers()) {
		return nil
	}
	n.log.Info("peer set changed", slog.Any("peers", ring.Peers()))
	joined := false
	for _, p := range slices.Concat(old.Peers(), ring.Peers()) {
		if old.Contains(p) != ring.Contains(p) {
			n.health.Delete(p) // a peer that joins or leaves starts afresh: no back-off,
			n.warned.Delete(p)
			n.peerObs.Delete(p)
			n.client.Drain(p) // and new connections (it may be a new process at the address)
			joined = joined || ring.Contains(p)
		}
	}
	n.startHandoff(old)
	if joined && n.window > 0 {
		n.startHandOver() // only a peer that joins takes keys from the others
	}
	return nil
}

// initPeers sets the first peer set of a new node. A node that has just started takes its keys
// over from the cluster as it was without it: that is the ring of its hand-off.
func (n *Node) initPeers(peers []string) error {
	ring, err := n.newRing(peers)
	if err != nil {
		return err
	}
	n.ring.Store(ring)
	others := slices.DeleteFunc(ring.Peers(), func(p string) bool { return p == n.self })
	if len(others) == 0 {
		return nil
	}
	old, err := hash.NewRing(others)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	n.startHandoff(old)
	return nil
}

// newRing checks a peer set and returns its ring.
func (n *Node) newRing(peers []string) (*hash.Ring, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	set := make([]string, len(peers))
	for i, p := range peers {
		var err error
		if set[i], err = canonical(p); err != nil {
			return nil, invalid("SetPeers", "peer %v", err)
		}
	}
	if !slices.Contains(set, n.self) {
		return nil, invalid("SetPeers", "the set of %d peers does not contain the node itself, %q", len(peers), n.self)
	}
	ring, err := hash.NewRing(set)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return ring, nil
}

// startHandoff makes old the ring whose owners new owners ask first, for the hand-off window.
func (n *Node) startHandoff(old *hash.Ring) {
	if n.window > 0 {
		n.handoff.Store(&handoffRing{ring: old, until: time.Now().Add(n.window).UnixNano(), since: n.writes.Load()})
	}
}

// previousOwner returns the owner of key under the ring in force before the last peer-set change,
// when that change is recent and that owner is another live peer.
func (n *Node) previousOwner(key []byte) (string, bool) {
	h := n.handoff.Load()
	if h == nil || time.Now().UnixNano() > h.until {
		return "", false
	}
	prev, ok := h.ring.Owner(key)
	if !ok || prev == n.self || !n.healthy(prev) {
		return "", false
	}
	return prev, true
}

// handingOff reports whether a peer-set change is recent enough that new owners still ask previous
// owners for values before loading them.
func (n *Node) handingOff() bool {
	h := n.handoff.Load()
	return h != nil && time.Now().UnixNano() <= h.until
}

// owner returns the peer that owns key bytes and whether it is this node.
func (n *Node) owner(key []byte) (string, bool) {
	p, ok := n.ring.Load().Owner(key)
	if !ok || p == n.self {
		return n.self, true
	}
	return p, false
}

// healthy reports whether peer may be asked now (it has not failed within the back-off period).
func (n *Node) healthy(peer string) bool {
	v, ok := n.health.Load(peer)
	return !ok || v.(*atomic.Int64).Load() <= time.Now().UnixNano()
}

// markDown makes the node skip addr for the back-off period, or until it answers a probe. A peer
// that refuses this node (peer.StatusForbidden) is not probed: that lasts until an operator acts,
// and each probe would be one more refusal in its log.
func (n *Node) markDown(addr string, err error) {
	v, _ := n.health.LoadOrStore(addr, new(atomic.Int64))
	until := time.Now().Add(n.backoff).UnixNano()
	if v.(*atomic.Int64).Swap(until) <= time.Now().UnixNano() {
		n.log.Warn("peer unavailable, loading its keys locally", slog.String("peer", addr),
			slog.Duration("backoff", n.backoff), slog.Any("err", err))
		n.client.Drain(addr) // a connection that timed out may be stuck: probes and calls dial anew
		if peer.StatusOf(err) != peer.StatusForbidden {
			n.startProbe(addr)
		}
	}
}

// Probes of a peer marked down: one every probeInterval, each bounded by probeTimeout (and the
// client's timeout).
const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = time.Second
)

// startProbe starts probing addr, a peer marked down, unless it is probed already or the node is
// closed. The node's Close waits for the probe.
func (n *Node) startProbe(addr string) {
	if _, busy := n.probing.LoadOrStore(addr, true); busy {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		n.probing.Delete(addr)
		return
	}
	n.bg.Add(1)
	go n.probe(addr)
}

// probe asks addr, a peer marked down, a cheap question every probeInterval, and makes the node
// use it again as soon as it answers. It stops then, when the back-off ends first, when addr
// leaves the peer set, or when the node closes.
func (n *Node) probe(addr string) {
	defer n.bg.Done()
	defer func() {
		n.probing.Delete(addr)
		if !n.closed.Load() && !n.healthy(addr) && n.ring.Load().Contains(addr) {
			n.startProbe(addr) // marked down again while this probe was ending
		}
	}()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if n.healthy(addr) || !n.ring.Load().Contains(addr) {
			return
		}
		if n.answers(addr) {
			if v, ok := n.health.Load(addr); ok {
				v.(*atomic.Int64).Store(0)
			}
			n.log.Info("peer answers again", slog.String("peer", addr))
			return
		}
	}
}

// answers reports whether the peer at addr answers a Peek (which never loads, and which the
// peer's server answers from memory) of the empty key of one of this node's caches: with a value
// or a status that is not a refusal. A node without caches asks its peers nothing to probe.
func (n *Node) answers(addr string) bool {
	var name string
	for name = range *n.caches.Load() {
		break
	}
	if name == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	_, err := n.client.Peek(ctx, addr, name, nil)
	return err == nil || !peerDown(err) && !errors.Is(err, peer.ErrProtocol) && peer.StatusOf(err) != peer.StatusForbidden
}

// register attaches a cache under its name; names are unique per node.
func (n *Node) register(name string, c servedCache) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return ErrClosed
	}
	old := *n.caches.Load()
	if _, dup := old[name]; dup {
		return invalid("WithNode", "a cache named %q is already attached to node %s", name, n.self)
	}
	m := make(map[string]servedCache, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = c
	n.caches.Store(&m)
	return nil
}

// unregister detaches the cache named name, if c is what is registered under it.
func (n *Node) unregister(name string, c servedCache) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := *n.caches.Load()
	if old[name] != c {
		return
	}
	m := make(map[string]servedCache, len(old))
	for k, v := range old {
		if k != name {
			m[k] = v
		}
	}
	n.caches.Store(&m)
}

// Handler returns the handler that answers peers. Mount it at the transport's base path (default
// peer.DefaultBasePath, "/_groupcache/") on the HTTP server that listens at the node's address,
// with a ReadHeaderTimeout and, with peer.WithTLS, a TLS configuration as docs/security.md shows:
//
//	mux.Handle(peer.DefaultBasePath, node.Handler())
//
// It also answers two probes for orchestrators, without authentication (they tell nothing of
// the caches): GET <base path>livez answers 200 until the node is closed, and GET <base
// path>readyz answers 200 once the node knows its peer set (WithPeers or SetPeers, even of the
// node alone) and until it starts leaving (Shutdown), 503 otherwise.
func (n *Node) Handler() http.Handler { return http.HandlerFunc(n.serveHTTP) }

// serveHTTP answers the probes, and hands every other request to the peer server.
func (n *Node) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case n.server.BasePath() + "livez":
		probe(w, !n.closed.Load(), "closed")
	case n.server.BasePath() + "readyz":
		switch {
		case n.closed.Load():
			probe(w, false, "closed")
		case n.leaving.Load():
			probe(w, false, "leaving the cluster")
		default:
			probe(w, n.known.Load(), "no peer set yet")
		}
	default:
		n.server.ServeHTTP(w, r)
	}
}

// probe answers a probe: 200 "ok", or 503 and why not.
func probe(w http.ResponseWriter, ok bool, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, why+"\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// Serve answers peers on l (listening at the node's own address) with an http.Server, whose header
// and idle timeouts are set, until Close, and then returns http.ErrServerClosed. With peer.WithTLS
// it serves TLS on l. l is closed when Serve returns. To serve on your own http.Server instead,
// mount Handler and set its timeouts (docs/security.md).
func (n *Node) Serve(l net.Listener) error {
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	if cfg := n.server.TLSConfig(); cfg != nil {
		srv.TLSConfig = cfg
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2: the upgrade needs HTTP/1.1
	}
	n.mu.Lock()
	if n.closed.Load() {
		n.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	n.servers = append(n.servers, srv)
	n.mu.Unlock()
	if srv.TLSConfig != nil {
		return srv.ServeTLS(l, "", "")
	}
	return srv.Serve(l)
}

// NodeStats are the counters of a node's transport (what its server answered to peers and what
// its client asked them), what it knows of each peer, and the Stats of each cache attached to
// it.
type NodeStats struct {
	// Server counts the requests peers sent to this node.
	Server peer.ServerStats
	// Client counts the requests this node sent to peers.
	Client peer.ClientStats
	// Misnamed counts the connections to a peer that named itself (its own address, given to
	// NewNode) otherwise than this node's peer set does: the two nodes disagree on which keys
	// that peer owns. Each is logged (at most one warning a minute per peer).
	Misnamed int64
	// Started is when NewNode made the node.
	Started time.Time
	// ServeLatency is the latency of the peers' requests for values (Get, GetMany) served here,
	// from the request's arrival at the cache to its answer (a hit served from memory in a few
	// microseconds, a load for as long as it takes).
	ServeLatency observe.Histogram
	// Peers has an entry for each peer of the node's ring, the node itself included (with only
	// its RingShare): latency and failures of this node's requests to it, whether it is skipped
	// now, and its share of the keys.
	Peers map[string]observe.PeerStats
	// Caches holds the Stats of each cache attached to the node, by name.
	Caches map[string]Stats
	// Failures are the node's last failures (at most 20, from every cache's Stats.Failures),
	// newest first.
	Failures []observe.Failure
}

// Stats returns the node's counters and those of its caches (each also in Cache.Stats). It takes
// no lock on any Get path and is cheap enough for a metrics scrape.
func (n *Node) Stats() NodeStats {
	st := NodeStats{Server: n.server.Stats(), Client: n.client.Stats(), Misnamed: n.misnames.Load(),
		Started: n.epoch, ServeLatency: n.serving.Snapshot()}
	caches := *n.caches.Load()
	st.Caches = make(map[string]Stats, len(caches))
	lists := make([][]observe.Failure, 0, len(caches))
	for name, c := range caches {
		cs := c.Stats()
		st.Caches[name] = cs
		lists = append(lists, cs.Failures)
	}
	st.Failures = recent.Newest(recent.FailureSlots, lists...)
	ring := n.ring.Load()
	shares := ring.Shares()
	st.Peers = make(map[string]observe.PeerStats, ring.Len())
	now := time.Now().UnixNano()
	for i, p := range ring.Peers() {
		ps := observe.PeerStats{RingShare: shares[i]}
		if v, ok := n.peerObs.Load(p); ok {
			r := v.(*peerRecord)
			ps.FetchLatency, ps.Errors = r.fetch.Snapshot(), r.errors.Load()
		}
		if v, ok := n.health.Load(p); ok {
			if until := v.(*atomic.Int64).Load(); until > now {
				ps.Down, ps.DownUntil = true, time.Unix(0, until)
			}
		}
		st.Peers[p] = ps
	}
	return st
}

// mono returns the time since the node was made by the monotonic clock: one clock read, for
// latencies.
func (n *Node) mono() time.Duration { return time.Since(n.epoch) }

// served records the latency of a peer's request for values that arrived at start (by mono).
func (n *Node) served(start time.Duration) { n.serving.Record(n.mono() - start) }

// misnamed counts a connection to the peer at addr that names itself claim, and logs it.
func (n *Node) misnamed(addr, claim string) {
	count := n.misnames.Add(1)
	n.warnAbout(addr, "a peer names itself otherwise than this node's peer set: the nodes disagree on which keys it owns",
		slog.String("claims", claim), slog.Int64("misnamed_since_start", count))
}

// warnAbout logs a warning about peer, at most one a minute per peer: a fault that every Get
// meets (a peer without the cache, refusing a version) is read once, not once per Get.
func (n *Node) warnAbout(peer, msg string, attrs ...any) {
	if v, _ := n.warned.LoadOrStore(peer, new(ratelimit.Gate)); !v.(*ratelimit.Gate).Pass(time.Now().UnixNano(), time.Minute) {
		return
	}
	n.log.Warn(msg+" (at most one warning a minute per peer)", append([]any{slog.String("peer", peer)}, attrs...)...)
}

// Shutdown makes the node leave its cluster gracefully, then closes it as Close does. First, unless
// hand-off is off (WithHandoffWindow(0)), it hands the values it holds over to the nodes that own
// their keys once it is gone, most valuable first, while it still serves: for at most half the
// hand-off window and half of what is left of ctx. Then it stops taking peers' requests: the
// listeners of Serve close, a peer that connects is refused, and every connected peer gets a notice
// that makes it stop asking this node and load the keys this node owns itself; requests that still
// arrive are answered "leaving", which has the same effect. Then it answers the requests in flight,
// until they are done or ctx ends. A node served through Handler on a server of one's own: shut
// that server down after Shutdown returns. Take the node out of its discovery source first where
// the source can (docs/design.md, "Leaving the cluster"), so that the peers' rings drop it too. It
// returns ctx's error when requests were still in flight as ctx ended (they then fail over to
// their callers' own loads), ErrClosed after Close or Shutdown.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.closed.Load() {
		n.mu.Unlock()
		return ErrClosed
	}
	servers := slices.Clone(n.servers)
	n.mu.Unlock()
	n.leaving.Store(true)
	n.log.Info("leaving the cluster")
	if n.window > 0 {
		n.leaveHandOver(ctx)
	}
	var wg sync.WaitGroup
	for _, srv := range servers {
		// Closes its listener; the upgraded connections are the peer server's to drain.
		wg.Go(func() { _ = srv.Shutdown(ctx) })
	}
	err := n.server.Shutdown(ctx)
	wg.Wait()
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops serving peers, closes the connections to them and detaches every cache: caches stay
// usable and load every key locally from then on. Requests of peers in flight are cut short, and
// those peers load the keys themselves; Shutdown lets them finish first. The first call returns
// nil, later ones ErrClosed.
func (n *Node) Close() error {
	err := ErrClosed
	n.closing.Do(func() {
		n.mu.Lock()
		n.closed.Store(true)
		for _, srv := range n.servers {
			_ = srv.Close()
		}
		if n.stopHandOver != nil {
			n.stopHandOver()
		}
		n.mu.Unlock()
		close(n.done)
		err = errors.Join(n.server.Close(), n.client.Close())
		n.bg.Wait()
	})
	return err
}

// observer is what the node's client tells the node of its peers.
type observer struct{ n *Node }

// Leaving marks a peer that is shutting down as down: its keys are loaded here meanwhile.
func (o observer) Leaving(addr string) {
	o.n.markDown(addr, &peer.Error{Peer: addr, Status: peer.StatusLeaving, Msg: "it is leaving the cluster"})
}

// Misnamed counts and logs a peer that names itself otherwise than this node's peer set does.
func (o observer) Misnamed(addr, claim string) { o.n.misnamed(addr, claim) }

// nodeBackend is the node's face towards its server: it finds the named cache.
type nodeBackend struct{ n *Node }

var _ peer.Backend = nodeBackend{}

func (b nodeBackend) Get(ctx context.Context, cache string, key []byte) (peer.Value, error) {
	defer b.n.served(b.n.mono())
	c, err := b.cache(cache)
	if err != nil {
		return peer.Value{}, err
	}
	return c.serve(ctx, key)
}

// GetInline answers a request from the main store when it can without waiting (a hit, a cached
// "not found"); otherwise the server calls Get on a goroutine of its own.
func (b nodeBackend) GetInline(cache string, key []byte) (peer.Value, bool, error) {
	start := b.n.mono()
	c, err := b.cache(cache)
	if err != nil {
		return peer.Value{}, true, err
	}
	v, ok, err := c.serveInline(key)
	if ok {
		b.n.served(start)
	}
	return v, ok, err
}

// Peek answers a hand-off request: the value if this node holds it, never a load.
func (b nodeBackend) Peek(_ context.Context, cache string, key []byte) (peer.Value, error) {
	c, err := b.cache(cache)
	if err != nil {
		return peer.Value{}, err
	}
	return c.peek(key)
}

// PeekMany answers a batched hand-off request: the values this node holds, never a load.
func (b nodeBackend) PeekMany(_ context.Context, cache string, keys [][]byte) ([]peer.Result, error) {
	c, err := b.cache(cache)
	if err != nil {
		return nil, err
	}
	return c.peekMany(keys)
}

// GetMany answers a batch request: one result per key, loading the keys missed here together.
func (b nodeBackend) GetMany(ctx context.Context, cache string, keys [][]byte) ([]peer.Result, error) {
	defer b.n.served(b.n.mono())
	c, err := b.cache(cache)
	if err != nil {
		return nil, err
	}
	return c.serveMany(ctx, keys)
}

// Set stores a value a peer sends to its owner.
func (b nodeBackend) Set(_ context.Context, cache string, key []byte, v peer.Value) error {
	c, err := b.cache(cache)
	if err != nil {
		return err
	}
	return c.setFromPeer(key, v)
}

// Offer takes a value over from a node that hands it over, or declines it.
func (b nodeBackend) Offer(_ context.Context, cache string, key []byte, v peer.Value) error {
	c, err := b.cache(cache)
	if err != nil {
		return err
	}
	return c.offerFromPeer(key, v)
}

// Remove drops keys from both stores.
func (b nodeBackend) Remove(_ context.Context, cache string, keys [][]byte) error {
	c, err := b.cache(cache)
	if err != nil {
		return err
	}
	return c.removeFromPeer(keys)
}

// Clear empties a cache and adopts a generation.
func (b nodeBackend) Clear(_ context.Context, cache string, generation uint64) error {
	c, err := b.cache(cache)
	if err != nil {
		return err
	}
	return c.clearFromPeer(generation)
}

func (b nodeBackend) cache(name string) (servedCache, error) {
	c, ok := (*b.n.caches.Load())[name]
	if !ok {
		return nil, &peer.Error{Status: peer.StatusUnknownCache, Msg: fmt.Sprintf("cache %q on %s", name, b.n.self)}
	}
	return c, nil
}
