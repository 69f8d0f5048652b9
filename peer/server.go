package peer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// Backend is what a Server serves from: the caches of a node. An error maps to the Status of an
// *Error in its chain (&Error{Status: StatusNotFound} for a missing key), else StatusInternal with
// its text; a panic is answered StatusInternal. ctx ends with the connection or the Server. Keys
// and a Set's value alias the connection's buffers; a returned Value's Data must not change.
type Backend interface {
	// Get returns the value of key in the named cache, loading it if it must.
	Get(ctx context.Context, cache string, key []byte) (Value, error)
	// GetInline answers as Get would, with ok true, when it can without blocking; with ok false,
	// Get runs on a goroutine of its own. It runs on the connection's goroutine.
	GetInline(cache string, key []byte) (v Value, ok bool, err error)
	// Peek returns the value of key only if this node holds it (StatusNotFound if not); it never
	// loads or blocks: it runs on the connection's goroutine.
	Peek(ctx context.Context, cache string, key []byte) (Value, error)
	// GetMany returns one Result per key, in order; a non-nil error answers the whole request.
	GetMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error)
	// PeekMany is GetMany without loading or blocking, as Peek.
	PeekMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error)
	// Set stores v (checked against the server's limits, not decoded) under key.
	Set(ctx context.Context, cache string, key []byte, v Value) error
	// Offer is Set of a value handed over by a node that no longer owns key (OpOffer): the
	// Backend may decline it, and answers nil when it does.
	Offer(ctx context.Context, cache string, key []byte, v Value) error
	// Remove drops keys from the named cache; an absent key is fine.
	Remove(ctx context.Context, cache string, keys [][]byte) error
	// Clear drops every entry of the named cache and adopts generation (at least 1).
	Clear(ctx context.Context, cache string, generation uint64) error
}

// Server answers peers' requests from a Backend. It is an http.Handler: mount it on a mux at its
// base path (WithBasePath, default "/_groupcache/"). A GET of the base path
// with "Connection: Upgrade" and "Upgrade: groupcache/2" is hijacked and becomes a connection of
// frames (docs/protocol.md); anything else gets a plain-text HTTP error.
type Server struct {
	backend       Backend
	basePath      string
	lim           Limits
	reqFrameMax   int // the longest request frame accepted: the longest valid one of any op
	maxConcurrent int64
	idleTimeout   time.Duration
	stallTimeout  time.Duration
	maxConns      int64
	log           *slog.Logger
	selfHeader    string                                        // the Groupcache-Node header of the upgrade's answer, from WithSelf
	extract       func(context.Context, []byte) context.Context // WithTraceContext's; may be nil
	authState
	budget     // of the bytes held for requests and replies, in all
	connBudget int64

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	inflight atomic.Int64 // requests being served, for WithMaxConcurrent
	open     atomic.Int64 // connections upgraded or being upgraded, for WithMaxConns

	leaving atomic.Bool // set by Shutdown: new upgrades and requests are refused

	mu     sync.Mutex
	closed bool
	conns  map[*serverConn]struct{}
	wg     sync.WaitGroup // ServeHTTP calls in progress

	totals   connCounters // of the connections that ended; live ones count in their own
	upgrades atomic.Int64
	detached atomic.Int64
}

// connCounters are the counters of one connection.
type connCounters struct {
	requests atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	panics   atomic.Int64
	byStatus [wire.MaxStatus + 1]atomic.Int64
	byOp     [wire.MaxOp + 1]atomic.Int64
}

func (c *connCounters) addTo(dst *connCounters) {
	dst.requests.Add(c.requests.Load())
	dst.bytesIn.Add(c.bytesIn.Load())
	dst.bytesOut.Add(c.bytesOut.Load())
	dst.panics.Add(c.panics.Load())
	for i := range c.byStatus {
		dst.byStatus[i].Add(c.byStatus[i].Load())
	}
	for i := range c.byOp {
		dst.byOp[i].Add(c.byOp[i].Load())
	}
}

// ServerStats are counters of a Server since NewServer.
type ServerStats struct {
	// Requests counts the request frames received (a batch counts once); ByOp splits them by op,
	// indexed by Op (frames that did not parse count in Requests only).
	Requests int64
	ByOp     [wire.MaxOp + 1]int64
	// ByStatus counts the replies by status, indexed by Status (StatusOK: values, batches, acks).
	ByStatus [wire.MaxStatus + 1]int64
	// Panics counts the Backend's panics (answered with StatusInternal).
	Panics int64
	// BytesIn and BytesOut count the bytes of frames read and written, prefixes included.
	BytesIn, BytesOut int64
	// ActiveConns is the number of connections open now; Conns the number accepted.
	ActiveConns, Conns int64
	// Detached counts the requests served on a goroutine of their own (a load, a write, a batch).
	Detached int64
	// Refused counts the clients refused before they were served: not authenticated, not
	// loopback (with neither TLS nor a secret), or over the connection limit.
	Refused int64
}

// NewServer returns a Server that serves from b, or an error matching ErrInvalidOption.
func NewServer(b Backend, opts ...ServerOption) (*Server, error) {
	if b == nil {
		return nil, optionError("NewServer", "nil Backend")
	}
	cfg := serverConfig{common: common{basePath: DefaultBasePath}, logger: slog.Default()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyServer(&cfg); err != nil {
			return nil, err
		}
	}
	lim := wire.Resolve(cfg.limits)
	s := &Server{
		backend:       b,
		basePath:      cfg.basePath,
		lim:           lim,
		reqFrameMax:   min(lim.MaxFrameBytes, wire.RequestFrameMax(lim)),
		maxConcurrent: int64(cfg.maxConcurrent),
		idleTimeout:   cmp.Or(cfg.idleTimeout, DefaultIdleTimeout),
		stallTimeout:  cmp.Or(cfg.stallTimeout, DefaultStallTimeout),
		maxConns:      int64(cmp.Or(cfg.maxConns, DefaultMaxConns)),
		log:           cfg.logger,
		extract:       cfg.extract,
		conns:         make(map[*serverConn]struct{}),
		authState: authState{tls: cfg.tls, secrets: cfg.secrets, insecure: cfg.insecure,
			authorize: cfg.authorize},
		budget:     budget{limit: int64(cmp.Or(cfg.serverBuffer, DefaultServerBuffer))},
		connBudget: int64(cmp.Or(cfg.connBuffer, DefaultConnBuffer)),
	}
	if cfg.tls != nil {
		s.clientCAs = cmp.Or(cfg.tls.ClientCAs, cfg.tls.RootCAs)
	}
	if cfg.self != "" {
		s.selfHeader = wire.HeaderNode + ": " + cfg.self + "\r\n"
	}
	switch {
	case cfg.tls == nil && len(cfg.secrets) == 0 && cfg.insecure:
		s.log.Warn("peer: serving every client that reaches this node, without authentication (WithInsecure)")
	case cfg.tls == nil && len(cfg.secrets) == 0:
		s.log.Info("peer: serving loopback clients only: neither WithTLS nor WithSecret is set")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// BasePath returns the path the server answers under.
func (s *Server) BasePath() string { return s.basePath }

// ServeHTTP upgrades a connection to the protocol's frames, or answers an HTTP error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.basePath && r.URL.Path != strings.TrimSuffix(s.basePath, "/") {
		http.Error(w, "peer: no groupcache endpoint at "+r.URL.Path+"; it is at "+s.basePath, http.StatusNotFound)
		return
	}
	if !s.enter() {
		http.Error(w, "peer: server closed or leaving", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	switch {
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "peer: a groupcache connection starts with GET and an upgrade", http.StatusMethodNotAllowed)
	case !hasToken(r.Header, "Connection", "upgrade") || r.Header.Get("Upgrade") == "":
		http.Error(w, "peer: want Connection: Upgrade and Upgrade: "+UpgradeToken, http.StatusBadRequest)
	case !hasToken(r.Header, "Upgrade", UpgradeToken):
		w.Header().Set("Upgrade", UpgradeToken)
		http.Error(w, fmt.Sprintf("peer: cannot upgrade to %q; this server speaks %s",
			r.Header.Get("Upgrade"), UpgradeToken), http.StatusBadRequest)
	default:
		s.upgrade(w, r)
	}
}

// enter registers a ServeHTTP call; it reports false once the server is leaving or closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.leaving.Load() {
		return false
	}
	s.wg.Add(1)
	return true
}

// hasToken reports whether a comma-separated header of h holds token (case-insensitive).
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Close stops the server: it closes every upgraded connection (which http.Server.Shutdown does not
// track), cancels the contexts passed to the Backend, and waits until every request it was
// serving has ended; requests that come afterwards get HTTP 503. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.cancel()
		for c := range s.conns {
			_ = c.nc.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown makes the server leave its cluster gracefully: it answers new upgrades with HTTP 503
// and new requests with StatusLeaving, sends every connected client a notice that it is leaving
// (a response frame of id 0 with StatusLeaving), waits until the requests it was serving are
// answered or ctx ends, and then closes as Close does. It returns ctx's error if ctx ended first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.leaving.Store(true)
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var notices sync.WaitGroup // each on its own: a client that does not read must not hold the others
	defer notices.Wait()       // after Close, which ends those still waiting
	for _, c := range conns {
		notices.Go(func() {
			c.reply(0, &wire.Response{Status: StatusLeaving, Msg: "shutting down"}, 0)
			c.flush()
		})
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	var err error
	for err == nil && s.busy() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
		}
	}
	s.Close()
	return err
}

// busy reports whether a request is being served or a reply waits to be written.
func (s *Server) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		busy := len(c.slots) > 0 || c.pending > 0
		c.mu.Unlock()
		if busy {
			return true
		}
	}
	return false
}

// Stats returns the server's counters. It is safe to call at any time.
func (s *Server) Stats() ServerStats {
	var sum connCounters
	s.mu.Lock()
	s.totals.addTo(&sum)
	for c := range s.conns {
		c.st.addTo(&sum)
	}
	active := int64(len(s.conns))
	s.mu.Unlock()
	st := ServerStats{
		Requests:    sum.requests.Load(),
		Panics:      sum.panics.Load(),
		BytesIn:     sum.bytesIn.Load(),
		BytesOut:    sum.bytesOut.Load(),
		ActiveConns: active,
		Conns:       s.upgrades.Load(),
		Detached:    s.detached.Load(),
		Refused:     s.refusals.Load(),
	}
	for i := range sum.byOp {
		st.ByOp[i] = sum.byOp[i].Load()
	}
	for i := range sum.byStatus {
		st.ByStatus[i] = sum.byStatus[i].Load()
	}
	return st
}

// handle answers a parsed request from the Backend. A batch reply is built once c has room for
// it: reserved is what it took, which the reply gives back.
func (s *Server) handle(c *serverConn, req *wire.Request) (resp wire.Response, reserved int) {
	if s.maxConcurrent > 0 {
		if s.inflight.Add(1) > s.maxConcurrent {
			s.inflight.Add(-1)
			return wire.Response{Status: StatusOverloaded, Msg: "serving " + strconv.FormatInt(s.maxConcurrent, 10) + " requests already"}, 0
		}
		defer s.inflight.Add(-1)
	}
	v, rs, err := s.call(c.ctx, req, &c.st)
	switch {
	case err != nil && s.ctx.Err() != nil:
		// Cut short by Close: the request was not served, the caller may load the key itself.
		return wire.Response{Status: StatusLeaving, Msg: "shutting down"}, 0
	case err != nil:
		return wire.ErrorResponse(err), 0
	case req.Op == OpGetMany || req.Op == OpPeekMany:
		if len(rs) != len(req.Keys) {
			return wire.Response{Status: StatusInternal,
				Msg: fmt.Sprintf("backend returned %d results for %d keys", len(rs), len(req.Keys))}, 0
		}
		size := wire.BatchReplySize(rs, s.lim)
		if !c.reserve(size) {
			return wire.Response{Status: StatusOverloaded, Msg: "the server's reply buffers are full"}, 0
		}
		return wire.BatchResponse(rs, s.lim), size
	case req.Op == OpGet || req.Op == OpPeek:
		return wire.ValueResponse(v, s.lim), 0
	}
	return wire.Response{}, 0 // the acknowledgment of a write
}

// call asks the Backend what req asks, turning a panic into an error.
func (s *Server) call(ctx context.Context, req *wire.Request, c *connCounters) (v Value, rs []Result, err error) {
	defer s.recoverBackend(req, c, &err)
	if len(req.Trace) > 0 && s.extract != nil {
		ctx = s.extract(ctx, req.Trace)
	}
	switch req.Op {
	case OpGet:
		v, err = s.backend.Get(ctx, req.Cache, req.Key)
	case OpPeek:
		v, err = s.backend.Peek(ctx, req.Cache, req.Key)
	case OpGetMany:
		rs, err = s.backend.GetMany(ctx, req.Cache, req.Keys)
	case OpPeekMany:
		rs, err = s.backend.PeekMany(ctx, req.Cache, req.Keys)
	case OpSet:
		err = s.backend.Set(ctx, req.Cache, req.Key, req.Value)
	case OpOffer:
		err = s.backend.Offer(ctx, req.Cache, req.Key, req.Value)
	case OpRemove:
		err = s.backend.Remove(ctx, req.Cache, req.Keys)
	case OpClear:
		err = s.backend.Clear(ctx, req.Cache, req.Generation)
	}
	return v, rs, err
}

// recoverBackend, deferred, turns a panic of the Backend into *err.
func (s *Server) recoverBackend(req *wire.Request, c *connCounters, err *error) {
	if p := recover(); p != nil {
		c.panics.Add(1)
		s.log.Error("peer: Backend panicked", "op", req.Op, "cache", req.Cache, "panic", p, "stack", string(debug.Stack()))
		*err = fmt.Errorf("backend panicked: %v", p)
	}
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
