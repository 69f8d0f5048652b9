package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/s2"
)

// Transport is what a node uses to reach its peers. Client implements it over HTTP-upgraded TCP
// connections; another transport (gRPC, say, in its own module) can be plugged in instead. Every
// method is idempotent, so a transport may send a request again when it cannot tell whether the
// peer received it.
type Transport interface {
	// Get asks peer ("host:port") for the value of key in the named cache. Errors match the
	// sentinels of this package (see Error).
	Get(ctx context.Context, peer string, cache string, key []byte) (Value, error)
	// GetMany asks peer for the values of keys in the named cache, in one request. It returns
	// one Result per key, in order (len(result) == len(keys)), or an error for the whole
	// request. A Result whose Err has StatusOverloaded was not looked up: ask for that key
	// again (singly or in a later batch).
	GetMany(ctx context.Context, peer string, cache string, keys [][]byte) ([]Result, error)
	// Set stores v under key in the named cache at peer.
	Set(ctx context.Context, peer string, cache string, key []byte, v Value) error
	// Remove drops keys from the named cache at peer (from its main and hot stores); absent keys
	// are not an error.
	Remove(ctx context.Context, peer string, cache string, keys [][]byte) error
	// Clear drops every entry of the named cache at peer, which adopts generation (at least 1).
	Clear(ctx context.Context, peer string, cache string, generation uint64) error
	// Close releases the transport's connections; later calls fail with ErrUnavailable.
	Close() error
}

var _ Transport = (*Client)(nil)

// IntoGetter is implemented by a Transport that can read a value into memory its caller lends,
// so that a caller done with each value before the next can reuse one buffer (the Client does).
type IntoGetter interface {
	// GetInto is Get, reading the value into buf's memory when it fits in cap(buf) (the Value's
	// Data then shares it) and into new memory otherwise. After an error buf must not be reused:
	// a reply abandoned halfway may still be read into it.
	GetInto(ctx context.Context, peer string, cache string, key []byte, buf []byte) (Value, error)
}

var _ IntoGetter = (*Client)(nil)

// Client asks peers for values (and stores, removes and clears them). It keeps, per peer address,
// a pool of upgraded connections; the goroutine that calls Get (or another method) writes the
// request and reads the reply itself, on a connection taken
// from the pool, so a request costs no goroutine hand-off. A connection carries one request at a
// time, so WithMaxConnsPerPeer also bounds the requests in flight to a peer; callers beyond it
// wait for a free connection within their timeout and context. A connection whose exchange did
// not complete (timeout, cancellation, malformed reply) is closed, never reused.
//
// With WithPipelining, requests to a peer share a few multiplexed connections instead (framing 2,
// replies in any order), many in flight on each: requests that arrive together share writes, and
// their replies share reads (see WithPipelining). A peer that speaks framing 1 only is asked one
// request per connection, as without the option.
//
// A Client is safe for concurrent use and holds no goroutine of its own (with pipelining, but
// for a short-lived one that finishes a write blocked by the peer when its caller left).
type Client struct {
	basePath        string
	timeout         time.Duration
	dialTimeout     time.Duration
	idleConnTimeout time.Duration
	maxConns        int
	maxIdle         int
	lim             Limits
	dialer          net.Dialer
	pipeConns       int // multiplexed connections per peer; 0: pipelining off
	pipeDepth       int // requests in flight per multiplexed connection (at most maxMuxDepth)
	// wrapConn, when set (tests), wraps every connection after the upgrade handshake.
	wrapConn func(net.Conn) net.Conn

	pools     sync.Map // peer address -> *pool
	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	lastSweep atomic.Int64 // unix nanoseconds of the last sweep of idle connections

	// The counters, written by every request, do not share a cache line with the fields above,
	// which every request reads.
	_         [64]byte
	requests  atomic.Int64
	errs      atomic.Int64
	dials     atomic.Int64
	openConns atomic.Int64
	waits     atomic.Int64
	retries   atomic.Int64
	muxConns  atomic.Int64
	// framing1Fallbacks counts the multiplexed upgrades answered with framing 1.
	framing1Fallbacks atomic.Int64
}

// ClientStats are counters of a Client since NewClient.
type ClientStats struct {
	// Requests is the number of calls (Get, Peek, GetMany, PeekMany, Set, Remove, Clear) that
	// passed the argument checks; a GetMany or PeekMany counts once, whatever its number of keys.
	Requests int64
	// Errors is the number of those calls that returned an error, of any kind (StatusNotFound
	// too). A GetMany or PeekMany whose batch reply arrived is not an error, whatever its entries
	// say.
	Errors int64
	// BytesSent and BytesReceived count frame bytes, length prefixes included.
	BytesSent, BytesReceived int64
	// Dials is the number of connections made (each with an upgrade handshake).
	Dials int64
	// OpenConns is the number of connections open now, idle or in use.
	OpenConns int64
	// Waits is the number of calls that found every connection to their peer in use (with
	// pipelining: every multiplexed connection with its 64 requests in flight) and waited for
	// one.
	Waits int64
	// Retries is the number of requests sent again on a new connection because a reused one
	// turned out to be closed by the peer before it answered; with pipelining also because
	// their connection broke before their request was written.
	Retries int64
	// SharedWrites is the number of requests (pipelining only) whose frame went out in one
	// write together with the frames of other requests.
	SharedWrites int64
	// SharedReads is the number of requests (pipelining only) whose reply was read by the
	// goroutine of another request on the same connection, and handed over.
	SharedReads int64
	// MuxConns is the number of open connections (counted in OpenConns too) on the
	// multiplexed framing (pipelining only).
	MuxConns int64
	// Framing1Fallbacks is the number of connections dialed for pipelining whose peer answered
	// that it speaks framing 1 only (an older server); see WithPipelining.
	Framing1Fallbacks int64
}

// NewClient returns a Client. Options are checked; the first invalid one is returned as an error
// matching ErrInvalidOption.
func NewClient(opts ...ClientOption) (*Client, error) {
	var cfg clientConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyClient(&cfg); err != nil {
			return nil, err
		}
	}
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	if cfg.basePath == "" {
		cfg.basePath = DefaultBasePath
	}
	orDefault(&cfg.timeout, DefaultTimeout)
	orDefault(&cfg.dialTimeout, DefaultDialTimeout)
	orDefault(&cfg.idleConnTimeout, DefaultIdleConnTimeout)
	if cfg.maxConns == 0 {
		cfg.maxConns = DefaultMaxConnsPerPeer
	}
	if cfg.maxIdle == 0 {
		cfg.maxIdle = cfg.maxConns
	}
	if cfg.maxIdle > cfg.maxConns {
		return nil, optionError("WithMaxIdlePerPeer", "%d is over the max conns per peer (%d)", cfg.maxIdle, cfg.maxConns)
	}
	if !cfg.pipeSet {
		cfg.pipeConns = DefaultPipelining
	}
	c := &Client{
		basePath:        cfg.basePath,
		timeout:         cfg.timeout,
		dialTimeout:     cfg.dialTimeout,
		idleConnTimeout: cfg.idleConnTimeout,
		maxConns:        cfg.maxConns,
		maxIdle:         cfg.maxIdle,
		lim:             cfg.limits.withDefaults(),
		pipeConns:       cfg.pipeConns,
		pipeDepth:       pipelineDepth,
		done:            make(chan struct{}),
	}
	c.lastSweep.Store(time.Now().UnixNano())
	return c, nil
}

// Get asks peer ("host:port") for the value of key in the named cache.
//
// The returned Value owns its Data (it does not alias any buffer of the Client); a compressed
// value's decoded length has been checked against the client's MaxValueBytes, so Raw with that
// limit will not refuse it as too large.
//
// Errors are *Error values: StatusNotFound, StatusUnknownCache, StatusTooLarge, StatusOverloaded,
// StatusInternal, StatusBadRequest and StatusBadVersion report the peer's answer (or, for StatusBadRequest and
// StatusTooLarge, this side's refusal to send a request or accept a reply over its limits);
// ErrProtocol reports malformed bytes from the peer; ErrUnavailable a network failure, a timeout
// or the end of ctx (the error then also matches ctx.Err()); ErrUnavailable a closed Client.
func (c *Client) Get(ctx context.Context, peer, cache string, key []byte) (Value, error) {
	r := request{Request: Request{Op: OpGet, Cache: cache, Key: key}}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// GetInto is Get, reading the value's bytes into the memory of buf when they fit in its
// capacity (the Value's Data then shares buf's memory) and into new memory otherwise. A caller
// that reuses buf for the next request must have done with the Value first; and after an error
// it must not reuse buf at all, since a reply abandoned halfway may still be read into it.
func (c *Client) GetInto(ctx context.Context, peer, cache string, key, buf []byte) (Value, error) {
	r := request{Request: Request{Op: OpGet, Cache: cache, Key: key}, dst: buf}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// Peek asks peer for the value of key in the named cache only if the peer holds it: a peer that
// does not answers with StatusNotFound (StatusNotFound) and loads nothing. A node that has just become
// the owner of a key uses it to take the value over from the key's previous owner. Errors are as
// for Get.
func (c *Client) Peek(ctx context.Context, peer, cache string, key []byte) (Value, error) {
	r := request{Request: Request{Op: OpPeek, Cache: cache, Key: key}}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// GetMany asks peer for the values of keys in the named cache, in one request and one reply. It
// returns one Result per key, in order, or an error for the whole request (errors as for Get; a
// peer whose Backend does not answer GetMany replies StatusBadRequest). A Result's Err is an *Error
// with Peer and Op set: StatusNotFound, StatusUnknownCache, StatusInternal and so on from the peer;
// StatusOverloaded for the keys the peer could not fit in its reply frame (ask for them again, singly
// or in a later batch); StatusTooLarge for a value over the client's limits, which fails that entry
// alone.
//
// The reply frame is read into one new buffer of exactly its size, and the Results' Value.Data
// alias it (each capacity-capped, so appending to one does not overwrite the next): the Results
// share that buffer, and keeping one value keeps the whole buffer alive, so copy a small value
// that is kept long out of a large batch. Compressed values' decoded lengths have been checked
// against the client's MaxValueBytes.
//
// keys must number 1 to MaxBatchKeys (of the client's limits), each of at most MaxKeyBytes;
// otherwise GetMany returns StatusBadRequest without sending anything.
func (c *Client) GetMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: Request{Op: OpGetMany, Cache: cache, Keys: keys}}
	if _, err := c.do(ctx, peer, &r); err != nil {
		return nil, err
	}
	return r.results, nil
}

// PeekMany is the batch form of Peek: it asks peer for the values of keys in the named cache that
// the peer holds, in one request and one reply, and the peer loads nothing. An entry the peer does
// not hold comes back as a Result whose Err has StatusNotFound. A node that has just become the
// owner of many keys uses it to take their values over from their previous owner with one request
// instead of one Peek per key. Results, limits and errors are as for GetMany (a peer whose Backend
// does not answer PeekMany replies StatusBadRequest); the Results' Op is OpPeekMany.
func (c *Client) PeekMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: Request{Op: OpPeekMany, Cache: cache, Keys: keys}}
	if _, err := c.do(ctx, peer, &r); err != nil {
		return nil, err
	}
	return r.results, nil
}

// Set stores v under key in the named cache at peer (see WriteBackend.Set). A value over the
// client's MaxValueBytes (for a compressed value: its decoded length, as stated in its S2 header)
// is refused before sending with StatusTooLarge, a compressed value whose S2 header is malformed with
// StatusBadRequest. Other errors are as for Get.
func (c *Client) Set(ctx context.Context, peer, cache string, key []byte, v Value) error {
	r := request{Request: Request{Op: OpSet, Cache: cache, Key: key, Value: v}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Remove drops keys from the named cache at peer: from its main and hot stores (see
// WriteBackend.Remove). Absent keys are not an error. keys must number 1 to MaxBatchKeys, each of
// at most MaxKeyBytes (StatusBadRequest otherwise). Other errors are as for Get.
func (c *Client) Remove(ctx context.Context, peer, cache string, keys [][]byte) error {
	r := request{Request: Request{Op: OpRemove, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Clear drops every entry of the named cache at peer, which adopts generation (see
// WriteBackend.Clear). A generation of 0 is refused with StatusBadRequest. Other errors are as for
// Get.
func (c *Client) Clear(ctx context.Context, peer, cache string, generation uint64) error {
	r := request{Request: Request{Op: OpClear, Cache: cache, Generation: generation}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// check refuses a request over the client's limits, before anything is sent.
func (c *Client) check(peer string, r *Request) error {
	lim := &c.lim
	bad := func(st Status, format string, args ...any) error {
		return &Error{Peer: peer, Op: r.Op, Status: st, Msg: fmt.Sprintf(format, args...)}
	}
	if len(r.Cache) == 0 || len(r.Cache) > lim.MaxCacheName {
		return bad(StatusBadRequest, "cache name of %d bytes outside 1..%d", len(r.Cache), lim.MaxCacheName)
	}
	switch r.Op {
	case OpGetMany, OpPeekMany, OpRemove:
		if len(r.Keys) == 0 || len(r.Keys) > lim.MaxBatchKeys {
			return bad(StatusBadRequest, "%d keys outside 1..%d", len(r.Keys), lim.MaxBatchKeys)
		}
		for i, k := range r.Keys {
			if len(k) > lim.MaxKeyBytes {
				return bad(StatusBadRequest, "key %d of %d bytes over the limit of %d", i, len(k), lim.MaxKeyBytes)
			}
		}
		return nil
	case OpClear:
		if r.Generation == 0 {
			return bad(StatusBadRequest, "generation 0")
		}
		return nil
	}
	if len(r.Key) > lim.MaxKeyBytes {
		return bad(StatusBadRequest, "key of %d bytes over the limit of %d", len(r.Key), lim.MaxKeyBytes)
	}
	if r.Op == OpSet {
		v := &r.Value
		if len(v.Data) > lim.MaxValueBytes {
			return bad(StatusTooLarge, "value of %d bytes over the limit of %d", len(v.Data), lim.MaxValueBytes)
		}
		if v.Compressed {
			dlen, err := s2.DecodedLen(v.Data)
			if err != nil {
				return bad(StatusBadRequest, "compressed value: bad header")
			}
			if dlen > lim.MaxValueBytes {
				return bad(StatusTooLarge, "compressed value inflates to %d bytes, over the limit of %d", dlen, lim.MaxValueBytes)
			}
		}
	}
	return nil
}

// do checks the request r (whose Request is filled in), sends it and reads the reply. A reply
// with a status other than StatusOK is returned as an error.
func (c *Client) do(ctx context.Context, peer string, r *request) (Response, error) {
	if c.closed.Load() {
		return Response{}, closedError(peer, r.Op)
	}
	if err := c.check(peer, &r.Request); err != nil {
		return Response{}, err
	}
	c.requests.Add(1)
	now := time.Now()
	deadline := now.Add(c.timeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	if last := c.lastSweep.Load(); now.UnixNano()-last > int64(c.idleConnTimeout)/2 &&
		c.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		c.sweep(now)
	}
	p := c.pool(peer)
	r.ctx, r.now, r.deadline, r.ctxDeadline = ctx, now, deadline, ctxDeadline
	var resp Response
	var err error
	if c.pipeConns > 0 {
		resp, err = p.pipeRoundTrip(r)
	} else {
		resp, err = p.roundTrip(r)
	}
	if err != nil {
		c.errs.Add(1)
		return Response{}, err
	}
	if resp.Status != StatusOK {
		c.errs.Add(1)
		return Response{}, &Error{Peer: peer, Op: r.Op, Status: resp.Status, Msg: resp.Msg}
	}
	return resp, nil
}

// Close closes every connection, idle or in use (requests in flight fail with ErrUnavailable), and
// makes later calls fail with ErrUnavailable. It is idempotent and returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.pools.Range(func(_, v any) bool {
			v.(*pool).closeAll()
			return true
		})
	})
	return nil
}

// Stats returns the client's counters. It is safe to call at any time.
func (c *Client) Stats() ClientStats {
	var sent, recv, sharedW, sharedR int64
	c.pools.Range(func(_, v any) bool {
		p := v.(*pool)
		p.mu.Lock()
		for cc := range p.all {
			sent += cc.sent.Load()
			recv += cc.recv.Load()
		}
		for _, pc := range p.muxes {
			sent += pc.sent.Load()
			recv += pc.recv.Load()
			sharedW += pc.sharedWrites.Load()
			sharedR += pc.sharedReads.Load()
		}
		sent += p.closedSent
		recv += p.closedRecv
		sharedW += p.closedSharedWrites
		sharedR += p.closedSharedReads
		p.mu.Unlock()
		return true
	})
	return ClientStats{
		Requests:      c.requests.Load(),
		Errors:        c.errs.Load(),
		BytesSent:     sent,
		BytesReceived: recv,
		Dials:         c.dials.Load(),
		OpenConns:     c.openConns.Load(),
		Waits:         c.waits.Load(),
		Retries:       c.retries.Load(),
		SharedWrites:  sharedW,
		SharedReads:   sharedR,
		MuxConns:      c.muxConns.Load(),

		Framing1Fallbacks: c.framing1Fallbacks.Load(),
	}
}

func (c *Client) pool(peer string) *pool {
	if p, ok := c.pools.Load(peer); ok {
		return p.(*pool)
	}
	p, _ := c.pools.LoadOrStore(peer, &pool{
		c:    c,
		addr: peer,
		all:  make(map[*clientConn]struct{}),
	})
	return p.(*pool)
}

// sweep closes the connections that have been idle too long, in every pool.
func (c *Client) sweep(now time.Time) {
	c.pools.Range(func(_, v any) bool {
		p := v.(*pool)
		p.mu.Lock()
		p.pruneLocked(now)
		p.mu.Unlock()
		return true
	})
}

// request is one call in progress.
type request struct {
	Request
	ctx         context.Context
	now         time.Time
	deadline    time.Time
	ctxDeadline bool     // deadline is ctx's
	token       bool     // holds one of its pool's tokens
	results     []Result // the answer to an OpGetMany or OpPeekMany
	dst         []byte   // GetInto: memory lent for the value
}

// pool is the connections of a Client to one peer.
type pool struct {
	c    *Client
	addr string

	mu       sync.Mutex
	inFlight int             // requests holding a token: at most maxConns
	waiters  []chan struct{} // requests waiting for a token, first first; handed one by a send
	idle     []*clientConn   // most recently used last
	all      map[*clientConn]struct{}
	closed   bool
	// Bytes sent and received on connections that were closed; open ones keep their own.
	closedSent, closedRecv int64

	// Pipelining (see mux_client.go).
	muxes      []*muxClientConn // open (or just broken, until pruned) multiplexed connections
	muxDialing int              // multiplexed connections being dialed
	muxWaiters []chan struct{}  // requests waiting for room on a multiplexed connection
	// Shared writes and reads counted on multiplexed connections that were pruned.
	closedSharedWrites, closedSharedReads int64
	// Unix nanoseconds until which the peer is taken to speak framing 1 only (it answered a
	// multiplexed upgrade with framing 1); 0: not known to.
	framing1Until int64
}

// clientConn is one upgraded connection to a peer.
//
// Its deadline is armed lazily: moving a deadline is a runtime timer operation, so an exchange
// leaves in place one that is set no later than the request's deadline and not much earlier (see
// arm). A read or write that hits such an early deadline pushes it to the request's deadline and
// carries on (see Read and write), so a request still times out at its own deadline and no
// earlier.
type clientConn struct {
	nc       net.Conn
	br       *bufio.Reader // reads from the clientConn itself (Read), not from nc
	wbuf     []byte
	poison   func()          // sets a deadline in the past: the request's context ended
	ctx      context.Context // of the request in progress (nil between requests)
	deadline time.Time       // of the request in progress
	armed    time.Time       // the deadline set on nc; zero for none
	lastUsed time.Time
	reused   bool
	dead     bool // closed and removed from the pool; guarded by pool.mu
	// Bytes sent and received, written only by the request holding the connection (so never
	// contended) and read by Stats.
	sent, recv atomic.Int64
}

// arm makes sure nc's deadline is due no later than r's deadline, and not in the first half of
// the time left to it; otherwise it sets it to r's deadline.
func (cc *clientConn) arm(r *request) error {
	cc.ctx, cc.deadline = r.ctx, r.deadline
	if a := cc.armed; !a.IsZero() && !a.After(r.deadline) && a.Sub(r.now) >= r.deadline.Sub(r.now)/2 {
		return nil
	}
	cc.armed = time.Time{}
	if err := cc.nc.SetDeadline(r.deadline); err != nil {
		return err
	}
	cc.armed = r.deadline
	return nil
}

// rearm reports whether err is the early expiry of the deadline armed on nc, before the current
// request's deadline and with its context still alive, after pushing the deadline to the
// request's one.
func (cc *clientConn) rearm(err error) bool {
	if cc.ctx == nil || cc.armed.IsZero() || !cc.armed.Before(cc.deadline) || !errors.Is(err, os.ErrDeadlineExceeded) ||
		cc.ctx.Err() != nil || !time.Now().Before(cc.deadline) {
		return false
	}
	if cc.nc.SetDeadline(cc.deadline) != nil {
		return false
	}
	cc.armed = cc.deadline
	// The context may have ended, and its AfterFunc poisoned the deadline, between the check
	// above and the new deadline: that poison was overwritten, so give up.
	return cc.ctx.Err() == nil
}

// Read reads from nc for br, through early expiries of the armed deadline.
func (cc *clientConn) Read(b []byte) (int, error) {
	for {
		n, err := cc.nc.Read(b)
		if err == nil || n > 0 || !cc.rearm(err) {
			return n, err
		}
	}
}

// writev writes the buffers to nc (consuming them), through early expiries of the armed deadline.
func (cc *clientConn) writev(bufs net.Buffers) error {
	for {
		_, err := bufs.WriteTo(cc.nc)
		if err == nil || len(bufs) == 0 {
			return err
		}
		if !cc.rearm(err) {
			return err
		}
	}
}

// write writes b to nc, through early expiries of the armed deadline.
func (cc *clientConn) write(b []byte) error {
	for {
		n, err := cc.nc.Write(b)
		if err == nil {
			return nil
		}
		b = b[n:]
		if !cc.rearm(err) {
			return err
		}
	}
}

const clientReadBuffer = 8 << 10

// aLongTimeAgo is a deadline that has passed, to interrupt a read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

func (p *pool) roundTrip(r *request) (Response, error) {
	cc, err := p.acquire(r)
	if err != nil {
		return Response{}, err
	}
	// A request that ends by putting its connection back gives its token back with it (put);
	// otherwise here.
	defer func() {
		if r.token {
			p.mu.Lock()
			p.releaseLocked(r)
			p.mu.Unlock()
		}
	}()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			cc = nil
		}
		if cc == nil {
			var err error
			if cc, err = p.dial(r); err != nil {
				return Response{}, err
			}
		}
		resp, retry, err := p.exchange(r, cc)
		if err == nil {
			return resp, nil
		}
		if retry && attempt == 0 && r.ctx.Err() == nil && time.Now().Before(r.deadline) && !p.c.closed.Load() {
			p.c.retries.Add(1)
			continue
		}
		return Response{}, err
	}
}

// acquire takes a token for one request in flight, waiting for one within the request's
// deadline and context, and with it the most recently used idle connection, if there is one.
func (p *pool) acquire(r *request) (*clientConn, error) {
	p.mu.Lock()
	if p.inFlight < p.c.maxConns {
		p.inFlight++
		r.token = true
		cc := p.takeIdleLocked(r.now)
		p.mu.Unlock()
		return cc, nil
	}
	w := make(chan struct{}, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	p.c.waits.Add(1)
	t := time.NewTimer(time.Until(r.deadline))
	defer t.Stop()
	var err error
	select {
	case <-w:
	case <-r.ctx.Done():
		err = p.netError(r, r.ctx.Err(), "waiting for a free connection")
	case <-t.C:
		err = p.netError(r, os.ErrDeadlineExceeded, "waiting for a free connection")
	case <-p.c.done:
		err = p.netError(r, nil, "")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		r.token = true
		return p.takeIdleLocked(r.now), nil
	}
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	} else {
		// Handed a token meanwhile: pass it on.
		r.token = true
		p.releaseLocked(r)
	}
	return nil, err
}

// releaseLocked gives r's token to the first waiting request, or back to the pool.
func (p *pool) releaseLocked(r *request) {
	r.token = false
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		w <- struct{}{}
		return
	}
	p.inFlight--
}

// takeIdleLocked pops the most recently used idle connection that has not been idle too long.
func (p *pool) takeIdleLocked(now time.Time) *clientConn {
	for n := len(p.idle); n > 0; n = len(p.idle) {
		cc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(cc.lastUsed) <= p.c.idleConnTimeout {
			return cc
		}
		p.discardLocked(cc)
	}
	return nil
}

// put returns a healthy connection to the idle list, or closes it when the list is full, and
// gives r's token back.
func (p *pool) put(cc *clientConn, r *request) {
	now := r.now
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.token {
		p.releaseLocked(r)
	}
	if cc.dead {
		return
	}
	if p.closed || len(p.idle) >= p.c.maxIdle {
		p.discardLocked(cc)
		return
	}
	cc.lastUsed = now
	cc.reused = true
	cc.ctx = nil
	p.pruneLocked(now)
	p.idle = append(p.idle, cc)
}

// pruneLocked closes the idle connections at the bottom of the list that have been idle too long,
// and the multiplexed connections on which no request has waited for as long.
func (p *pool) pruneLocked(now time.Time) {
	p.pruneMuxesLocked(now)
	k := 0
	for k < len(p.idle) && now.Sub(p.idle[k].lastUsed) > p.c.idleConnTimeout {
		p.discardLocked(p.idle[k])
		k++
	}
	if k > 0 {
		n := copy(p.idle, p.idle[k:])
		clear(p.idle[n:])
		p.idle = p.idle[:n]
	}
}

// discard closes a connection and forgets it.
func (p *pool) discard(cc *clientConn) {
	p.mu.Lock()
	p.discardLocked(cc)
	p.mu.Unlock()
}

func (p *pool) discardLocked(cc *clientConn) {
	if cc.dead {
		return
	}
	cc.dead = true
	_ = cc.nc.Close()
	delete(p.all, cc)
	p.closedSent += cc.sent.Load()
	p.closedRecv += cc.recv.Load()
	p.c.openConns.Add(-1)
}

func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for cc := range p.all {
		p.discardLocked(cc)
	}
	clear(p.idle)
	p.idle = p.idle[:0]
	p.closeMuxesLocked()
}

// netError describes a failure that is not an answer of the peer: ErrUnavailable wrapping the
// cause (the context's error when it ended, net.ErrClosed when the client is closed).
func (p *pool) netError(r *request, cause error, what string) error {
	return p.netErr(r.Op, r.ctx, r.ctxDeadline, cause, what)
}

// netErr is netError for a request of op, context ctx, whose deadline is ctx's when ctxDeadline.
func (p *pool) netErr(op Op, ctx context.Context, ctxDeadline bool, cause error, what string) error {
	if p.c.closed.Load() {
		return closedError(p.addr, op)
	}
	if err := ctx.Err(); err != nil {
		cause = err
	} else if ctxDeadline && errors.Is(cause, os.ErrDeadlineExceeded) {
		cause = fmt.Errorf("%w (%w)", context.DeadlineExceeded, cause)
	}
	if errors.Is(cause, os.ErrDeadlineExceeded) && !errors.Is(cause, context.DeadlineExceeded) {
		what += " (timed out)"
	}
	return &Error{Peer: p.addr, Op: op, Msg: what, Err: wrapCause(ErrUnavailable, cause)}
}

// exchange sends the request on cc and reads the reply. On success cc goes back to the pool; on
// failure it is closed. retry reports a failure that shows the peer closed a reused connection
// before it read the request (so sending it again on a new connection is safe and sensible).
func (p *pool) exchange(r *request, cc *clientConn) (resp Response, retry bool, err error) {
	if err := cc.arm(r); err != nil {
		p.discard(cc)
		return Response{}, cc.reused, p.netError(r, err, "setting a deadline")
	}
	var stop func() bool
	if r.ctx.Done() != nil {
		if r.ctx.Err() != nil {
			p.put(cc, r)
			return Response{}, false, p.netError(r, nil, "before sending")
		}
		stop = context.AfterFunc(r.ctx, cc.poison)
	}
	fail := func(err error, retry bool) (Response, bool, error) {
		if stop != nil {
			stop()
		}
		p.discard(cc)
		return Response{}, retry && cc.reused, err
	}

	// A large value (of a Set) is written from where it lies, after the rest of the frame.
	buf := appendRequestHead(cc.wbuf[:prefixLen], &r.Request)
	var tail []byte
	if r.Op == OpSet {
		if len(r.Value.Data) <= smallReply {
			buf = append(buf, r.Value.Data...)
		} else {
			tail = r.Value.Data
		}
	}
	binary.BigEndian.PutUint32(buf, uint32(len(buf)+len(tail)-prefixLen))
	if cap(buf) <= keepBuffer {
		cc.wbuf = buf[:0]
	}
	if tail == nil {
		err = cc.write(buf)
	} else {
		err = cc.writev(net.Buffers{buf, tail})
	}
	if err != nil {
		return fail(p.netError(r, err, "sending the request"), isClosedByPeer(err))
	}
	cc.sent.Add(int64(len(buf) + len(tail)))

	st := replyState{dst: r.dst}
	resp, err = p.readReply(cc.br, r.Op, len(r.Keys), false, &st)
	if st.stage != replyDone {
		if pe, ok := err.(*Error); ok {
			return fail(pe, false)
		}
		if st.stage == replyPrefix {
			return fail(p.netError(r, err, "reading the reply"), st.read == 0 && isClosedByPeer(err))
		}
		return fail(p.netError(r, midReply(err, st.read, st.n), "reading the reply"), false)
	}
	cc.recv.Add(int64(st.n) + prefixLen)
	r.results = st.results
	p.release(cc, stop, r)
	if err != nil {
		return Response{}, false, err
	}
	return resp, false, nil
}

// Stages of reading a reply frame (replyState.stage).
const (
	replyPrefix = iota // before the length prefix
	replyHead          // the prefix is read, the head is not parsed yet
	replyFill          // reading the value, or a whole batch frame, into new memory
	replySkip          // skipping the rest of the frame
	replyDone          // the frame is read; the connection can carry the next reply
	replyBad           // the frame is malformed: the connection must be closed
)

// replyState is the progress of reading one reply frame. An I/O error leaves it where the read
// stopped, so that the reading can be resumed, by the same goroutine or (multiplexed connections)
// another.
type replyState struct {
	stage   uint8
	batch   bool     // replyFill: the buffer is a whole GetMany or PeekMany frame
	n       int      // the frame's length, after its prefix
	read    int      // bytes of the frame consumed (replyPrefix: of the prefix, after an error)
	resp    Response // replyFill: the parsed head of a value reply
	buf     []byte   // replyFill: the memory being filled; len is what has arrived
	want    int      // replyFill: the length buf must reach
	skip    int      // replySkip: bytes left to skip
	err     error    // replySkip: the request's error once skipped (a value over the limit)
	results []Result // replyDone: the Results of a GetMany or PeekMany
	dst     []byte   // memory lent for the value (GetInto), used when the value fits in it
}

// readReply reads from br the framing-1 reply frame to a request of op (with nkeys keys, for a
// batch), or resumes st's frame. discard skips a frame not yet started without parsing it (its
// request was abandoned).
//
// When st.stage ends at replyDone the frame is consumed and the connection can carry the next
// reply: resp is the reply (with its value, or for a batch st.results, in new memory) and err
// is nil or an error of this request alone (a value over the limits, StatusTooLarge). Otherwise
// err is either an *Error for malformed bytes from the peer (the connection must be closed), or
// the I/O error that interrupted the read, st keeping its progress.
func (p *pool) readReply(br *bufio.Reader, op Op, nkeys int, discard bool, st *replyState) (resp Response, err error) {
	if st.stage == replyPrefix {
		hdr, err := br.Peek(prefixLen)
		if err != nil {
			st.read = len(hdr)
			return Response{}, err
		}
		n := int(binary.BigEndian.Uint32(hdr))
		_, _ = br.Discard(prefixLen)
		if err := p.beginReply(st, n, op, discard); err != nil {
			return Response{}, err
		}
	}
	return p.continueReply(br, op, nkeys, st)
}

// beginReply starts st on a reply frame of n bytes (after its prefix) to a request of op: it
// checks n against the limits (an *Error, st.stage replyBad, for a frame over them). discard
// skips the frame without parsing it.
func (p *pool) beginReply(st *replyState, n int, op Op, discard bool) error {
	lim := &p.c.lim
	st.n, st.read = n, 0
	if n > lim.MaxFrameBytes {
		st.stage = replyBad
		return &Error{Peer: p.addr, Op: op, Status: StatusTooLarge, Err: ErrProtocol,
			Msg: fmt.Sprintf("reply frame of %d bytes over the limit of %d", n, lim.MaxFrameBytes)}
	}
	switch {
	case discard:
		st.stage, st.skip = replySkip, n
	case op == OpGetMany || op == OpPeekMany:
		st.stage, st.batch, st.want = replyFill, true, n
	default:
		st.stage = replyHead
	}
	return nil
}

// continueReply reads the rest of st's frame, past its prefix (see beginReply): it is the
// reply-reading path of both framings, and returns as readReply does.
func (p *pool) continueReply(br *bufio.Reader, op Op, nkeys int, st *replyState) (resp Response, err error) {
	lim := &p.c.lim
	peerError := func(err error) error {
		pe := err.(*Error)
		pe.Peer, pe.Op = p.addr, op
		return pe
	}
	if st.stage == replyHead {
		// The replies to Set, Remove and Clear are acknowledgments: no value, no flags.
		ack := op == OpSet || op == OpRemove || op == OpClear
		// The head of the frame (all of it but the value) is parsed where it lies in the read
		// buffer; the value is read into memory of its own, exactly its size, that is handed to
		// the caller. Peek no more than is buffered (at least the longest head): asking for
		// more would cost a read for bytes that go to the value anyway.
		n := st.n
		head, err := br.Peek(min(n, max(br.Buffered(), maxResponseHead)))
		if err != nil {
			st.read = len(head)
			return Response{}, err
		}
		resp, off, err := parseResponseHead(head, n, lim.MaxValueBytes)
		if err == nil && ack && resp.Status == StatusOK && (off != n || resp.Value.Compressed || resp.Value.Expires != 0) {
			err = protocolError("acknowledgment with a value or flags")
		}
		if err != nil {
			pe := peerError(err).(*Error)
			if ack && pe.Status == StatusTooLarge {
				pe.Status, pe.Err = StatusOK, ErrProtocol // any value on an acknowledgment is one too many
			}
			if pe.Status != StatusTooLarge {
				st.stage = replyBad
				return Response{}, pe
			}
			// A well-formed frame with a value over our limit: skip it, and the connection
			// can carry the next reply.
			st.stage, st.skip, st.err = replySkip, n, pe
		} else {
			_, _ = br.Discard(off)
			st.read = off
			if resp.Status != StatusOK {
				st.stage = replyDone
				return resp, nil
			}
			st.stage, st.resp, st.want = replyFill, resp, n-off
			if cap(st.dst) >= st.want {
				st.buf = st.dst[:0]
			}
		}
	}
	if st.stage == replySkip {
		m, err := br.Discard(st.skip)
		st.skip -= m
		st.read += m
		if err != nil {
			return Response{}, err
		}
		st.stage = replyDone
		return Response{}, st.err
	}
	// replyFill
	buf, err := fillFrame(br, st.buf, st.want)
	st.read += len(buf) - len(st.buf)
	st.buf = buf
	if err != nil {
		return Response{}, err
	}
	st.buf = nil
	if st.batch {
		// The batch body is bounded by the frame, not by the limit on one value.
		resp, off, err := parseResponseHead(buf, st.n, st.n)
		if err == nil && resp.Status == StatusOK {
			if resp.Value.Compressed || resp.Value.Expires != 0 || resp.Msg != "" {
				err = protocolError("batch reply with flags or a message")
			} else {
				st.results, err = parseBatch(buf[off:st.n:st.n], nkeys, lim.MaxValueBytes)
			}
		}
		if err != nil {
			pe := peerError(err).(*Error)
			if pe.Status == StatusTooLarge {
				pe.Status, pe.Err = StatusOK, ErrProtocol // a body longer than its frame (entries over a limit are Results)
			}
			st.stage = replyBad
			return Response{}, pe
		}
		for i := range st.results {
			if pe, ok := st.results[i].Err.(*Error); ok {
				pe.Peer, pe.Op = p.addr, op
			}
		}
		st.stage = replyDone
		return resp, nil
	}
	resp = st.resp
	resp.Value.Data = buf
	if err := checkValue(&resp.Value, lim.MaxValueBytes); err != nil {
		pe := peerError(err).(*Error)
		if pe.Status != StatusTooLarge {
			st.stage = replyBad
			return Response{}, pe
		}
		st.stage = replyDone
		return Response{}, pe
	}
	st.stage = replyDone
	return resp, nil
}

// fillFrame reads from r until buf holds n bytes, and returns it (buf's progress survives an
// error). The memory is allocated exactly n bytes long, but for n over 1 MiB it grows in steps
// as the bytes arrive, so that memory is committed only as fast as a peer actually sends bytes,
// not on the word of its length prefix.
func fillFrame(r io.Reader, buf []byte, n int) ([]byte, error) {
	const step = 1 << 20
	for len(buf) < n {
		if len(buf) == cap(buf) {
			c := n
			if n > step {
				c = min(n, max(step, 2*cap(buf)))
			}
			nb := make([]byte, len(buf), c)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// release returns cc, whose exchange is complete, to the pool; unless the request's context
// ended meanwhile and may have spoiled the connection's deadline, in which case it is closed.
func (p *pool) release(cc *clientConn, stop func() bool, r *request) {
	if stop != nil && !stop() {
		p.discard(cc)
		return
	}
	p.put(cc, r)
}

// midReply describes a read that ended after got of the want bytes of a reply.
func midReply(err error, got, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("connection closed after %d of %d bytes: %w", got, want, io.ErrUnexpectedEOF)
	}
	return err
}

// isClosedByPeer reports an error that shows the peer had closed the connection.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dial connects to the peer and upgrades the connection to framing 1.
func (p *pool) dial(r *request) (*clientConn, error) {
	nc, _, err := p.connect(r, false)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.c.closed.Load() {
		nc.Close()
		return nil, closedError(p.addr, r.Op)
	}
	return p.addLocked(nc), nil
}

// addLocked makes nc, upgraded to framing 1, one of the pool's connections.
func (p *pool) addLocked(nc net.Conn) *clientConn {
	// armed stays zero: the handshake's deadline may have been poisoned by the end of ctx, so
	// the first exchange sets its own.
	cc := &clientConn{nc: nc, wbuf: make([]byte, 0, 512)}
	cc.br = bufio.NewReaderSize(cc, clientReadBuffer)
	cc.poison = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	p.all[cc] = struct{}{}
	p.c.openConns.Add(1)
	return cc
}

// adoptLocked makes nc, a connection dialed for multiplexing that the peer upgraded to framing 1,
// an idle connection of the pool, for the next request to take.
func (p *pool) adoptLocked(nc net.Conn, now time.Time) {
	cc := p.addLocked(nc)
	if len(p.idle) >= p.c.maxIdle {
		p.discardLocked(cc)
		return
	}
	cc.lastUsed = now
	p.idle = append(p.idle, cc)
}

// connect dials the peer and upgrades the connection, within the dial timeout and r's deadline
// and context. With mux it offers the multiplexed framing and framing 1, otherwise framing 1
// only; it returns the framing the peer chose (UpgradeMultiplexed or UpgradeProtocol).
func (p *pool) connect(r *request, mux bool) (net.Conn, string, error) {
	deadline := r.deadline
	if d := time.Now().Add(p.c.dialTimeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(r.ctx, deadline)
	defer cancel()
	nc, err := p.c.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, "", p.netError(r, err, "dialing")
	}
	p.c.dials.Add(1)
	proto, err := p.handshake(ctx, nc, deadline, mux)
	if err != nil {
		nc.Close()
		var pe *Error
		if errors.As(err, &pe) {
			return nil, "", pe
		}
		return nil, "", p.netError(r, err, "upgrade handshake")
	}
	if p.c.wrapConn != nil {
		nc = p.c.wrapConn(nc)
	}
	return nc, proto, nil
}

// offerMux is the Upgrade header of a client that speaks both framings, preferred first.
const offerMux = UpgradeMultiplexed + ", " + UpgradeProtocol

// maxHandshake bounds the bytes of a peer's answer to the upgrade request.
const maxHandshake = 16 << 10

// handshake sends the upgrade request, offering the multiplexed framing too when mux is set, and
// checks the answer; it returns the framing the peer chose (UpgradeMultiplexed, or
// UpgradeProtocol). Errors that are the peer's fault are *Error values; others are network errors.
func (p *pool) handshake(ctx context.Context, nc net.Conn, deadline time.Time, mux bool) (string, error) {
	if err := nc.SetDeadline(deadline); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	offer := UpgradeProtocol
	if mux {
		offer = offerMux
	}
	req := "GET " + p.c.basePath + " HTTP/1.1\r\nHost: " + p.addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + offer + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return "", err
	}
	lr := &io.LimitedReader{R: nc, N: maxHandshake}
	br := bufio.NewReaderSize(lr, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || isClosedByPeer(err) || ctx.Err() != nil {
			return "", err
		}
		if lr.N == maxHandshake && errors.Is(err, io.ErrUnexpectedEOF) {
			return "", io.EOF // closed without a byte: going away rather than speaking garbage
		}
		if lr.N == 0 {
			return "", &Error{Peer: p.addr, Op: OpGet, Err: ErrProtocol,
				Msg: fmt.Sprintf("answer to the upgrade request longer than %d bytes", maxHandshake)}
		}
		return "", &Error{Peer: p.addr, Op: OpGet, Err: ErrProtocol, Msg: "bad answer to the upgrade request: " + err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		sentinel := ErrProtocol
		if resp.StatusCode == http.StatusServiceUnavailable {
			sentinel = ErrUnavailable
		}
		return "", &Error{Peer: p.addr, Op: OpGet, Err: sentinel,
			Msg: fmt.Sprintf("upgrade refused: %s: %s", resp.Status, strings.TrimSpace(string(body)))}
	}
	proto := ""
	if mux {
		// The peer names the one it chose.
		switch got := strings.TrimSpace(resp.Header.Get("Upgrade")); {
		case len(resp.Header.Values("Upgrade")) != 1:
		case strings.EqualFold(got, UpgradeMultiplexed):
			proto = UpgradeMultiplexed
		case strings.EqualFold(got, UpgradeProtocol):
			proto = UpgradeProtocol
		}
	} else if headerHasToken(resp.Header, "Upgrade", UpgradeProtocol) {
		proto = UpgradeProtocol
	}
	if proto == "" {
		return "", &Error{Peer: p.addr, Op: OpGet, Err: ErrProtocol,
			Msg: fmt.Sprintf("upgraded to %q, not to %s", resp.Header.Get("Upgrade"), offer)}
	}
	if br.Buffered() > 0 {
		return "", &Error{Peer: p.addr, Op: OpGet, Err: ErrProtocol, Msg: "unexpected bytes after the upgrade answer"}
	}
	return proto, nil
}

// closedError is the error of a call on (or interrupted by the closing of) a closed Client.
func closedError(peer string, op Op) error {
	return &Error{Peer: peer, Op: op, Msg: "client closed", Err: wrapCause(ErrUnavailable, net.ErrClosed)}
}
