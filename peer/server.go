package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// UpgradeProtocol is the token of the Upgrade header that switches an HTTP/1.1 connection to the
// framed protocol. Its number is the version of the framing (length prefix and frame header),
// which changes only with an incompatible change of the stream format.
const UpgradeProtocol = "groupcache/1"

// ContentType is the media type of a request or response frame in the body of a plain POST.
const ContentType = "application/x-groupcache-frame"

// Backend is what a Server serves from. The root package implements it.
type Backend interface {
	// Get returns the value of key in the named cache on this node. Errors with StatusNotFound,
	// StatusUnknownCache, StatusTooLarge, StatusOverloaded (and StatusBadRequest) map to their status;
	// anything else is StatusInternal, and its message is passed to the caller, cut to
	// MaxMessageBytes.
	//
	// key is only valid until Get returns: it aliases the connection's read buffer. ctx is
	// cancelled when the connection ends or the Server is closed. A panic in Get is recovered
	// and answered with StatusInternal. The returned Value's Data must not change afterwards:
	// the Server may write it after Get returned (and so for every method below that returns
	// values).
	Get(ctx context.Context, cache string, key []byte) (Value, error)
}

// InlineBackend is a Backend that can tell a Get it answers at once from one that may block. On a
// multiplexed connection (UpgradeMultiplexed) the Server calls GetInline on the connection's
// goroutine first, and only when it reports ok false calls Get on a goroutine of its own, so a
// request that loads holds up none of the others and a hit costs no goroutine. Without it, every
// Get of a multiplexed connection runs on its own goroutine.
type InlineBackend interface {
	Backend
	// GetInline answers as Get would (a value, or an error such as one with StatusNotFound)
	// with ok true when it can do so without blocking: from memory, without loading, waiting or
	// I/O. With ok false it has done nothing and Get is called. key is as for Get; a panic is
	// recovered and answered with StatusInternal.
	GetInline(cache string, key []byte) (v Value, ok bool, err error)
}

// PeekBackend is a Backend that also answers OpPeek: the value of key if this node holds it, an
// error with StatusNotFound if not, and never a load. A Server whose Backend does not implement
// it answers OpPeek with StatusBadRequest.
type PeekBackend interface {
	Backend
	// Peek is Get without loading; key and ctx are as for Get.
	Peek(ctx context.Context, cache string, key []byte) (Value, error)
}

// BatchBackend is a Backend that also answers OpGetMany. A Server whose Backend does not implement
// it answers OpGetMany with StatusBadRequest.
type BatchBackend interface {
	Backend
	// GetMany returns one Result per key, in order: a value, or an error mapped to the entry's
	// status as Get's errors are (a NotFound entry carries no message). A non-nil error answers
	// the whole request instead (StatusUnknownCache, say); a slice of another length than keys is
	// answered with StatusInternal. Values are checked as Get's are (over MaxValueBytes:
	// StatusTooLarge for that entry; malformed compressed: StatusInternal), and the entries that
	// do not fit in the reply frame (MaxFrameBytes) are answered with StatusOverloaded, for the
	// caller to ask again.
	//
	// keys alias the connection's read buffer: they are valid until GetMany returns. ctx and
	// panics are as for Get.
	GetMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error)
}

// BatchPeekBackend is a Backend that also answers OpPeekMany: for each key, the value if this node
// holds it, StatusNotFound if not, never a load. A Server whose Backend does not implement it answers
// OpPeekMany with StatusBadRequest.
type BatchPeekBackend interface {
	Backend
	// PeekMany is GetMany without loading: one Result per key, in order, an entry the node does
	// not hold with StatusNotFound. Results, errors, keys, ctx and panics are as for
	// BatchBackend.GetMany, and so are the checks of the values and the entries that do not fit
	// in the reply frame.
	PeekMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error)
}

// WriteBackend is a Backend that also answers OpSet, OpRemove and OpClear. A Server whose Backend
// does not implement it answers those ops with StatusBadRequest. Errors map to statuses as Get's
// do; ctx and panics are as for Get.
type WriteBackend interface {
	Backend
	// Set stores v under key in the named cache. key and v.Data alias the connection's read
	// buffer: copy them to keep them. v has been checked against the server's limits (a
	// compressed value's decoded length too), not decoded.
	Set(ctx context.Context, cache string, key []byte, v Value) error
	// Remove drops keys from the named cache; an absent key is fine. keys alias the
	// connection's read buffer: they are valid until Remove returns.
	Remove(ctx context.Context, cache string, keys [][]byte) error
	// Clear drops every entry of the named cache and adopts generation (at least 1; see the root
	// package's Clear).
	Clear(ctx context.Context, cache string, generation uint64) error
}

// Server answers peers' requests from a Backend. It is an http.Handler: mount it on a mux at its
// base path (WithBasePath, default "/_groupcache/"), or let Serve or ListenAndServe do it.
//
// A request to the base path with "Connection: Upgrade" and "Upgrade: groupcache/1" is hijacked
// and becomes a framed connection: the handler's goroutine reads a request frame, calls the
// Backend, writes the reply, and repeats. Requests that a client sends without waiting for the
// replies (pipelined) are answered in order, and while the next request is already buffered its
// reply joins the same write. A POST whose body is one request frame is answered with one
// response frame (HTTP status 200, whatever the frame's status). Anything else gets a plain-text
// HTTP error.
type Server struct {
	backend       Backend
	basePath      string
	lim           Limits
	reqFrameMax   int // the longest request frame accepted: the longest valid one of any op
	maxConcurrent int64
	idleTimeout   time.Duration
	log           *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	inflight atomic.Int64

	mu      sync.Mutex
	closed  bool
	conns   map[*serverConn]struct{}
	servers map[*http.Server]struct{}
	wg      sync.WaitGroup // ServeHTTP calls in progress

	// Totals of connections that ended and of POST requests; live connections count in their
	// own counters (see Stats).
	totals   connCounters
	upgrades atomic.Int64
	muxConns atomic.Int64 // upgrades to the multiplexed framing
	detached atomic.Int64 // requests of multiplexed connections served on their own goroutine
}

// connCounters are the counters of one upgraded connection, written by its goroutine only, so
// they are never contended.
type connCounters struct {
	requests atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	panics   atomic.Int64
	byStatus [maxStatus + 1]atomic.Int64
	byOp     [maxOp + 1]atomic.Int64
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
	// Requests is the number of request frames handled (upgraded and POST). A batch request
	// (OpGetMany, OpPeekMany, OpRemove) counts once, whatever its number of keys.
	Requests int64
	// ByOp splits Requests by op, indexed by Op: ByOp[OpGetMany] is the number of GetMany
	// requests, and so on. Requests the server could not parse (malformed, over a limit, of
	// another version) count in Requests only.
	ByOp [OpPeekMany + 1]int64
	// OK is the number of requests answered with StatusOK: a value, a GetMany or PeekMany batch
	// (whatever the statuses of its entries) or the acknowledgment of a Set, Remove or Clear.
	OK int64
	// Errors is the number of requests answered with any other status; the fields below split
	// it by status.
	Errors int64
	// NotFound, UnknownCache, TooLarge, Overloaded, Internal, BadRequest and BadVersion count
	// the requests answered with each status.
	NotFound, UnknownCache, TooLarge, Overloaded, Internal, BadRequest, BadVersion int64
	// Panics is the number of Backend panics (answered with StatusInternal).
	Panics int64
	// BytesIn and BytesOut count frame bytes read and written, length prefixes included.
	BytesIn, BytesOut int64
	// ActiveConns is the number of upgraded connections open now.
	ActiveConns int64
	// Upgrades is the number of connections upgraded since NewServer; Multiplexed counts those
	// upgraded to the multiplexed framing (UpgradeMultiplexed).
	Upgrades, Multiplexed int64
	// Detached is the number of requests of multiplexed connections that were served on a
	// goroutine of their own (a load, a write, a batch) rather than answered at once on the
	// connection's goroutine (a hit through InlineBackend, a Peek, a refusal).
	Detached int64
}

// NewServer returns a Server that serves from b. Options are checked; the first invalid one is
// returned as an error matching ErrInvalidOption.
func NewServer(b Backend, opts ...ServerOption) (*Server, error) {
	if b == nil {
		return nil, optionError("NewServer", "nil Backend")
	}
	cfg := serverConfig{basePath: DefaultBasePath, logger: slog.Default(), idleTimeout: DefaultIdleTimeout}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyServer(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.idleTimeout == 0 {
		cfg.idleTimeout = DefaultIdleTimeout
	}
	lim := cfg.limits.withDefaults()
	s := &Server{
		backend:       b,
		basePath:      cfg.basePath,
		lim:           lim,
		reqFrameMax:   min(lim.MaxFrameBytes, requestFrameMax(lim)),
		maxConcurrent: int64(cfg.maxConcurrent),
		idleTimeout:   cfg.idleTimeout,
		log:           cfg.logger,
		conns:         make(map[*serverConn]struct{}),
		servers:       make(map[*http.Server]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// BasePath returns the path the server answers under.
func (s *Server) BasePath() string { return s.basePath }

// enter registers a ServeHTTP call; it reports false once the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// ServeHTTP answers an upgrade request, a POST of one frame, or an HTTP error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.basePath && r.URL.Path != strings.TrimSuffix(s.basePath, "/") {
		http.Error(w, "peer: no groupcache endpoint at "+r.URL.Path+"; it is at "+s.basePath, http.StatusNotFound)
		return
	}
	if !s.enter() {
		http.Error(w, "peer: server closed", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()

	if headerHasToken(r.Header, "Connection", "upgrade") && r.Header.Get("Upgrade") != "" {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "peer: an upgrade request must use GET", http.StatusMethodNotAllowed)
			return
		}
		proto := pickUpgrade(r.Header)
		if proto == "" {
			w.Header().Set("Upgrade", UpgradeMultiplexed+", "+UpgradeProtocol)
			http.Error(w, fmt.Sprintf("peer: cannot upgrade to %q; this server speaks %s and %s",
				r.Header.Get("Upgrade"), UpgradeMultiplexed, UpgradeProtocol), http.StatusBadRequest)
			return
		}
		s.serveUpgrade(w, proto)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "peer: POST one request frame ("+ContentType+"), or GET with Connection: Upgrade and Upgrade: "+
			UpgradeProtocol, http.StatusMethodNotAllowed)
		return
	}
	s.servePost(w, r)
}

// pickUpgrade returns the first token of the request's Upgrade header that the server speaks
// (UpgradeMultiplexed or UpgradeProtocol), or "" for none.
func pickUpgrade(h http.Header) string {
	for _, v := range h.Values("Upgrade") {
		for len(v) > 0 {
			var t string
			t, v, _ = strings.Cut(v, ",")
			switch t = strings.TrimSpace(t); {
			case strings.EqualFold(t, UpgradeMultiplexed):
				return UpgradeMultiplexed
			case strings.EqualFold(t, UpgradeProtocol):
				return UpgradeProtocol
			}
		}
	}
	return ""
}

// headerHasToken reports whether a comma-separated header of h holds token (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for len(v) > 0 {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (s *Server) servePost(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > int64(s.reqFrameMax) {
		http.Error(w, fmt.Sprintf("peer: request frame of %d bytes over the limit of %d", r.ContentLength, s.reqFrameMax),
			http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(s.reqFrameMax)+1))
	if err != nil {
		http.Error(w, "peer: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > s.reqFrameMax {
		http.Error(w, fmt.Sprintf("peer: request frame over the limit of %d bytes", s.reqFrameMax),
			http.StatusRequestEntityTooLarge)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()

	var c connCounters
	resp := s.handleFrame(ctx, body, &c, nil)
	frame := AppendResponse(make([]byte, 0, 64+len(resp.Value.Data)), &resp)
	c.bytesOut.Add(int64(len(frame)))
	c.addTo(&s.totals)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(frame)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(frame)
}

// handleFrame parses a request frame and answers it. sc is the connection's scratch (nil for a
// POST); a GetMany or PeekMany reply's batch body may lie in it until the next request.
func (s *Server) handleFrame(ctx context.Context, frame []byte, c *connCounters, sc *reqScratch) Response {
	c.requests.Add(1)
	c.bytesIn.Add(int64(len(frame)) + prefixLen)
	var req Request
	err := parseRequest(frame, s.lim, sc, &req)
	var resp Response
	if err != nil {
		pe := err.(*Error)
		s.log.Debug("peer: refused a request", "status", pe.Status.String(), "reason", pe.Msg)
		resp = Response{Status: pe.Status, Msg: pe.Msg}
	} else {
		c.byOp[req.Op].Add(1)
		resp = s.handle(ctx, &req, c, sc)
	}
	c.byStatus[resp.Status].Add(1)
	return resp
}

// handle answers a parsed request.
func (s *Server) handle(ctx context.Context, req *Request, c *connCounters, sc *reqScratch) Response {
	if s.maxConcurrent > 0 {
		if s.inflight.Add(1) > s.maxConcurrent {
			s.inflight.Add(-1)
			return Response{Status: StatusOverloaded, Msg: "serving " + strconv.FormatInt(s.maxConcurrent, 10) + " requests already"}
		}
		defer s.inflight.Add(-1)
	}
	switch req.Op {
	case OpGetMany, OpPeekMany:
		return s.getMany(ctx, req, c, sc)
	case OpSet, OpRemove, OpClear:
		if err := s.write(ctx, req, c); err != nil {
			return errorResponse(err)
		}
		return Response{}
	}
	v, err := s.get(ctx, req, c)
	return s.valueResponse(v, err)
}

// valueResponse is the reply to a Get or Peek the Backend answered with v or err.
func (s *Server) valueResponse(v Value, err error) Response {
	if err != nil {
		return errorResponse(err)
	}
	if st, msg := checkOutgoing(&v, s.lim); st != StatusOK {
		return Response{Status: st, Msg: msg}
	}
	if frameLen := headerLen + 8 + 1 + binary.MaxVarintLen64 + len(v.Data); frameLen > s.lim.MaxFrameBytes {
		return Response{Status: StatusTooLarge,
			Msg: fmt.Sprintf("reply frame of about %d bytes over the limit of %d", frameLen, s.lim.MaxFrameBytes)}
	}
	return Response{Value: v}
}

// errorResponse is the reply to a request the Backend answered with err.
func errorResponse(err error) Response {
	st, msg := replyStatus(err)
	return Response{Status: st, Msg: msg}
}

// get calls the Backend (Get, or Peek for OpPeek), turning a panic into an error.
func (s *Server) get(ctx context.Context, req *Request, c *connCounters) (v Value, err error) {
	defer s.recoverBackend(req, c, &err)
	if req.Op == OpPeek {
		pb, ok := s.backend.(PeekBackend)
		if !ok {
			return Value{}, &Error{Status: StatusBadRequest, Msg: "this server does not answer peek"}
		}
		return pb.Peek(ctx, req.Cache, req.Key)
	}
	return s.backend.Get(ctx, req.Cache, req.Key)
}

// recoverBackend, deferred, turns a panic of the Backend into *err.
func (s *Server) recoverBackend(req *Request, c *connCounters, err *error) {
	if p := recover(); p != nil {
		c.panics.Add(1)
		s.log.Error("peer: Backend panicked", "op", req.Op, "cache", req.Cache, "panic", p, "stack", string(debug.Stack()))
		*err = fmt.Errorf("backend panicked: %v", p)
	}
}

// getMany answers OpGetMany and OpPeekMany: the batch body goes into sc's buffer when there is
// one.
func (s *Server) getMany(ctx context.Context, req *Request, c *connCounters, sc *reqScratch) Response {
	rs, err := s.batch(ctx, req, c)
	if err != nil {
		return errorResponse(err)
	}
	if len(rs) != len(req.Keys) {
		return Response{Status: StatusInternal,
			Msg: fmt.Sprintf("backend returned %d results for %d keys", len(rs), len(req.Keys))}
	}
	var buf []byte
	if sc != nil {
		// The connection's buffer, or for a body larger than that one from the server's pool
		// (which serve puts back once the reply is written).
		buf = sc.body[:0]
		if batchReplyHint(rs, s.lim) > cap(buf) {
			if p, _ := batchBodies.Get().(*[]byte); p != nil {
				buf = (*p)[:0]
			}
		}
	}
	body, ok := appendBatchReply(buf, rs, s.lim)
	if sc != nil {
		sc.body = body[:0]
	}
	if !ok {
		return Response{Status: StatusTooLarge,
			Msg: fmt.Sprintf("a reply to %d keys does not fit in the frame limit of %d bytes", len(rs), s.lim.MaxFrameBytes)}
	}
	return Response{Value: Value{Data: body}}
}

// batch calls the Backend's GetMany (PeekMany for OpPeekMany), turning a panic into an error.
func (s *Server) batch(ctx context.Context, req *Request, c *connCounters) (rs []Result, err error) {
	defer s.recoverBackend(req, c, &err)
	if req.Op == OpPeekMany {
		pb, ok := s.backend.(BatchPeekBackend)
		if !ok {
			return nil, &Error{Status: StatusBadRequest, Msg: "this server does not answer peekmany"}
		}
		return pb.PeekMany(ctx, req.Cache, req.Keys)
	}
	bb, ok := s.backend.(BatchBackend)
	if !ok {
		return nil, &Error{Status: StatusBadRequest, Msg: "this server does not answer getmany"}
	}
	return bb.GetMany(ctx, req.Cache, req.Keys)
}

// write calls the Backend's Set, Remove or Clear, turning a panic into an error.
func (s *Server) write(ctx context.Context, req *Request, c *connCounters) (err error) {
	defer s.recoverBackend(req, c, &err)
	wb, ok := s.backend.(WriteBackend)
	if !ok {
		return &Error{Status: StatusBadRequest, Msg: "this server does not answer " + req.Op.String()}
	}
	switch req.Op {
	case OpSet:
		return wb.Set(ctx, req.Cache, req.Key, req.Value)
	case OpRemove:
		return wb.Remove(ctx, req.Cache, req.Keys)
	default:
		return wb.Clear(ctx, req.Cache, req.Generation)
	}
}

// batchBodies holds batch body buffers (*[]byte) of more than keepBuffer bytes, which a
// connection does not keep for itself, for the GetMany and PeekMany replies of every connection
// of every Server: a large reply costs no allocation in steady state.
var batchBodies sync.Pool

// maxPooledBody bounds the batch body buffers kept in batchBodies.
const maxPooledBody = 4 << 20

// putBody puts b into batchBodies, unless it is larger than maxPooledBody. (Its own function, so
// that the pointer Put needs is allocated only when a body is put.)
func putBody(b []byte) {
	if cap(b) <= maxPooledBody {
		batchBodies.Put(&b)
	}
}

// serverConn is one upgraded connection.
type serverConn struct {
	s       *Server
	nc      net.Conn
	br      *bufio.Reader
	rbuf    []byte      // frames longer than br's buffer
	wbuf    []byte      // replies not yet written, up to the value for a large value
	iov     net.Buffers // head and value of a large reply, in iovArr
	iovArr  [2][]byte
	scratch reqScratch // what one request lends the next: cache name, key list, batch body
	armedAt time.Time
	st      connCounters
}

const (
	serverReadBuffer = 8 << 10
	// Replies with values up to smallReply bytes are copied into one buffer and written with one
	// write; larger ones are written with writev from where the value lies.
	smallReply = 16 << 10
	// Buffers grown past keepBuffer for one frame are dropped after it.
	keepBuffer = 64 << 10
)

func (s *Server) serveUpgrade(w http.ResponseWriter, proto string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "peer: this connection cannot be upgraded (HTTP/2?); POST frames instead",
			http.StatusHTTPVersionNotSupported)
		return
	}
	nc, rw, err := hj.Hijack()
	if err != nil {
		s.log.Debug("peer: hijack failed", "err", err)
		return
	}
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent frames before our answer: keep them.
		b, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc)
	}
	c := &serverConn{
		s:    s,
		nc:   nc,
		br:   bufio.NewReaderSize(src, serverReadBuffer),
		wbuf: make([]byte, 0, 4<<10),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.upgrades.Add(1)
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		c.st.addTo(&s.totals)
		s.mu.Unlock()
	}()

	_ = nc.SetDeadline(time.Now().Add(s.idleTimeout))
	if _, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+
		proto+"\r\n\r\n"); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	if proto == UpgradeMultiplexed {
		c.serveMux(ctx, cancel)
		return
	}
	c.serve(ctx)
}

// serve reads request frames and answers them until the connection ends.
func (c *serverConn) serve(ctx context.Context) {
	s := c.s
	c.arm()
	for {
		// The deadline armed before the previous reply also covers the wait for this request.
		hdr, err := c.br.Peek(prefixLen)
		if err != nil {
			return // closed by the client, idle timeout, or Close
		}
		n := int(binary.BigEndian.Uint32(hdr))
		_, _ = c.br.Discard(prefixLen)
		if n > s.reqFrameMax {
			// A frame of any length cannot be skipped safely: answer and close.
			c.st.requests.Add(1)
			c.st.byStatus[StatusBadRequest].Add(1)
			s.log.Debug("peer: refused a request frame", "bytes", n, "limit", s.reqFrameMax)
			_ = c.reply(&Response{Status: StatusBadRequest,
				Msg: fmt.Sprintf("request frame of %d bytes over the limit of %d", n, s.reqFrameMax)}, true)
			return
		}
		frame, peeked, err := c.readRequest(n)
		if err != nil {
			return
		}
		resp := s.handleFrame(ctx, frame, &c.st, &c.scratch)
		if peeked {
			_, _ = c.br.Discard(n)
		} else if cap(c.rbuf) > keepBuffer {
			c.rbuf = nil
		}
		c.arm() // a slow Backend must not make the reply miss the idle deadline
		// A client that pipelines may have sent the next request already: while a whole frame
		// of it is buffered, answer it before writing, so the replies go out in one write.
		if err := c.reply(&resp, !c.nextBuffered()); err != nil {
			return
		}
		if cap(c.scratch.body) > keepBuffer {
			// The reply is written, or copied into wbuf: a large batch body goes back to the
			// pool, for the next large reply of any connection.
			putBody(c.scratch.body)
			c.scratch.body = nil
		}
	}
}

// readRequest reads an n-byte request frame: peeked in br's buffer (peeked true: discard it once
// done with it), or for a frame longer than that buffer read into rbuf.
func (c *serverConn) readRequest(n int) (frame []byte, peeked bool, err error) {
	if n <= c.br.Size() {
		frame, err = c.br.Peek(n)
		return frame, true, err
	}
	c.rbuf, err = readFrame(c.br, c.rbuf, n)
	return c.rbuf, false, err
}

// nextBuffered reports whether br holds a whole request frame (or one over the limit, which is
// refused without reading it), so the next request can be answered without waiting on the
// network.
func (c *serverConn) nextBuffered() bool {
	b := c.br.Buffered()
	if b < prefixLen {
		return false
	}
	hdr, _ := c.br.Peek(prefixLen)
	n := int(binary.BigEndian.Uint32(hdr))
	return n > c.s.reqFrameMax || b-prefixLen >= n
}

// arm pushes the connection's deadline to now + the idle timeout, at most every 1/16 of it.
func (c *serverConn) arm() {
	now := time.Now()
	if now.Sub(c.armedAt) >= c.s.idleTimeout/16 {
		_ = c.nc.SetDeadline(now.Add(c.s.idleTimeout))
		c.armedAt = now
	}
}

// reply appends the response frame, with its length prefix, to the replies not yet written, and
// writes them all when flush is set, when they grow past keepBuffer, or when the value is large
// (written from where it lies).
func (c *serverConn) reply(r *Response, flush bool) error {
	start := len(c.wbuf)
	head := appendResponseHead(append(c.wbuf, 0, 0, 0, 0), r)
	n := responseFrameLen(len(head)-start-prefixLen, r)
	binary.BigEndian.PutUint32(head[start:], uint32(n))
	c.st.bytesOut.Add(int64(n) + prefixLen) // before the write, so a reader of the reply sees it counted
	var err error
	if r.Status != StatusOK || len(r.Value.Data) <= smallReply {
		buf := head
		if r.Status == StatusOK {
			buf = append(head, r.Value.Data...)
		}
		c.wbuf = buf
		if !flush && len(buf) < keepBuffer {
			return nil
		}
		_, err = c.nc.Write(buf)
	} else {
		c.wbuf = head
		c.iovArr = [2][]byte{head, r.Value.Data}
		c.iov = c.iovArr[:] // WriteTo consumes c.iov, not the array behind it
		_, err = c.iov.WriteTo(c.nc)
		c.iovArr = [2][]byte{}
	}
	if cap(c.wbuf) <= keepBuffer {
		c.wbuf = c.wbuf[:0]
	} else {
		c.wbuf = make([]byte, 0, 4<<10)
	}
	return err
}

// readFrame reads an n-byte frame from r into buf's memory (or new memory when buf is too small)
// and returns it. A frame over 1 MiB is read in growing steps, so that memory is committed only
// as fast as a peer actually sends bytes, not on the word of its length prefix.
func readFrame(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		m, err := io.ReadFull(r, buf[:n])
		return buf[:m], err
	}
	const step = 1 << 20
	if n <= step {
		buf = make([]byte, n)
		m, err := io.ReadFull(r, buf)
		return buf[:m], err
	}
	buf = make([]byte, 0, step)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(n, 2*cap(buf))-cap(buf))...)[:len(buf)]
		}
		m, err := io.ReadFull(r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Serve accepts connections on l and serves s at its base path with an http.Server until Close,
// then returns http.ErrServerClosed. Any other error of the
// http.Server is returned as is. l is closed when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.servers[srv] = struct{}{}
	s.mu.Unlock()
	err := srv.Serve(l)
	s.mu.Lock()
	delete(s.servers, srv)
	s.mu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		return http.ErrServerClosed
	}
	return err
}

// ListenAndServe listens on the TCP address addr ("host:port") and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Close stops the server: it closes the listeners of Serve and ListenAndServe with their
// connections, closes every upgraded connection, cancels the contexts passed to the Backend, and
// waits until every ServeHTTP call of this server has returned. POST requests that arrive through
// another http.Server after Close get HTTP 503. Close is idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.cancel()
		for srv := range s.servers {
			_ = srv.Close()
		}
		for c := range s.conns {
			_ = c.nc.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
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
		Requests:     sum.requests.Load(),
		OK:           sum.byStatus[StatusOK].Load(),
		NotFound:     sum.byStatus[StatusNotFound].Load(),
		UnknownCache: sum.byStatus[StatusUnknownCache].Load(),
		TooLarge:     sum.byStatus[StatusTooLarge].Load(),
		Overloaded:   sum.byStatus[StatusOverloaded].Load(),
		Internal:     sum.byStatus[StatusInternal].Load(),
		BadRequest:   sum.byStatus[StatusBadRequest].Load(),
		BadVersion:   sum.byStatus[StatusBadVersion].Load(),
		Panics:       sum.panics.Load(),
		BytesIn:      sum.bytesIn.Load(),
		BytesOut:     sum.bytesOut.Load(),
		ActiveConns:  active,
		Upgrades:     s.upgrades.Load(),
		Multiplexed:  s.muxConns.Load(),
		Detached:     s.detached.Load(),
	}
	for i := range sum.byOp {
		st.ByOp[i] = sum.byOp[i].Load()
	}
	st.Errors = st.NotFound + st.UnknownCache + st.TooLarge + st.Overloaded + st.Internal + st.BadRequest + st.BadVersion
	return st
}
