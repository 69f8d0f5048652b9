package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/s2"
)

// Transport is what a node uses to reach its peers; Client implements it. Every method is
// idempotent, so a transport may send a request again when it cannot tell whether the peer
// received it.
type Transport interface {
	Get(ctx context.Context, peer string, cache string, key []byte) (Value, error)
	GetMany(ctx context.Context, peer string, cache string, keys [][]byte) ([]Result, error)
	Set(ctx context.Context, peer string, cache string, key []byte, v Value) error
	Remove(ctx context.Context, peer string, cache string, keys [][]byte) error
	Clear(ctx context.Context, peer string, cache string, generation uint64) error
	Close() error
}

// IntoGetter is implemented by a Transport that can read a value into memory its caller lends.
type IntoGetter interface {
	GetInto(ctx context.Context, peer string, cache string, key []byte, buf []byte) (Value, error)
}

var (
	_ Transport  = (*Client)(nil)
	_ IntoGetter = (*Client)(nil)
)

// Client asks peers for values, and stores, removes and clears them. It keeps per peer address a
// few connections (WithConnsPerPeer, one by default), each carrying up to MaxConnRequests requests
// at once whose replies come in any order. A caller writes its own request, in one write with the
// requests of other callers that arrive while a write is in progress; one goroutine per connection
// reads the replies and hands each to its caller. A caller whose context ends or whose timeout
// passes leaves at once; its reply is dropped when it comes. A connection on which more than half
// of the requests in flight are such leftovers (a peer that does not answer) takes no new request
// and is closed once no caller waits on it.
//
// A Client is safe for concurrent use. Close closes its connections and waits for their readers.
type Client struct {
	basePath        string
	timeout         time.Duration
	dialTimeout     time.Duration
	idleConnTimeout time.Duration
	conns           int
	lim             Limits
	dialContext     func(ctx context.Context, network, addr string) (net.Conn, error) // a net.Dialer's; tests set another

	pools     sync.Map // peer address -> *pool
	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	readers   sync.WaitGroup // the connections' reading goroutines
	calls     sync.Pool      // *call, reused from request to request
	lastSweep atomic.Int64   // unix nanoseconds of the last sweep of idle connections

	// The counters, written by every request, do not share a cache line with the fields above,
	// which every request reads.
	_         [64]byte
	requests  atomic.Int64
	errs      atomic.Int64
	dials     atomic.Int64
	openConns atomic.Int64
	waits     atomic.Int64
	retries   atomic.Int64
}

// ClientStats are counters of a Client since NewClient.
type ClientStats struct {
	// Requests is the number of calls (Get, GetInto, Peek, GetMany, PeekMany, Set, Remove,
	// Clear) that passed the argument checks; a GetMany or PeekMany counts once, whatever its
	// number of keys.
	Requests int64
	// Errors is the number of those calls that returned an error, of any kind (a not-found
	// answer too). A GetMany or PeekMany whose batch reply arrived is not an error, whatever its
	// entries say.
	Errors int64
	// BytesSent and BytesReceived count the bytes of frames, prefixes included.
	BytesSent, BytesReceived int64
	// Dials is the number of connections made (each with an upgrade handshake).
	Dials int64
	// OpenConns is the number of connections open now.
	OpenConns int64
	// Waits is the number of calls that found every connection to their peer with
	// MaxConnRequests requests in flight (or being dialed) and waited for room.
	Waits int64
	// Retries is the number of requests sent again on a new connection because theirs broke
	// before their reply arrived (every operation is idempotent).
	Retries int64
	// SharedWrites is the number of requests whose frame went out in one write together with
	// the frames of other requests.
	SharedWrites int64
}

// NewClient returns a Client. Options are checked; the first invalid one is returned as an error
// matching ErrInvalidOption.
func NewClient(opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{common: common{basePath: DefaultBasePath}}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyClient(&cfg); err != nil {
			return nil, err
		}
	}
	orDefault := func(d time.Duration, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	c := &Client{
		basePath:        cfg.basePath,
		timeout:         orDefault(cfg.timeout, DefaultTimeout),
		dialTimeout:     orDefault(cfg.dialTimeout, DefaultDialTimeout),
		idleConnTimeout: orDefault(cfg.idleConnTimeout, DefaultIdleConnTimeout),
		conns:           max(cfg.conns, 1),
		lim:             cfg.limits.withDefaults(),
		done:            make(chan struct{}),
	}
	c.dialContext = (&net.Dialer{}).DialContext
	c.lastSweep.Store(time.Now().UnixNano())
	return c, nil
}

// Get asks peer ("host:port") for the value of key in the named cache.
//
// The returned Value owns its Data (it does not alias any buffer of the Client); a compressed
// value's decoded length has been checked against the client's MaxValueBytes, so Raw with that
// limit will not refuse it as too large.
//
// Errors are *Error values. StatusOf tells the peer's answer (StatusNotFound, StatusUnknownCache,
// StatusTooLarge, StatusOverloaded, StatusInternal, StatusBadRequest, StatusBadVersion), or this
// side's refusal to send a request or accept a reply over its limits (StatusBadRequest,
// StatusTooLarge). Without a status, the error matches ErrProtocol for malformed bytes from the
// peer, or ErrUnavailable for a network failure, a timeout, the end of ctx (the error then also
// matches ctx.Err()) or a closed Client.
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
// does not answers StatusNotFound and loads nothing. A node that has just become the owner of a
// key uses it to take the value over from the key's previous owner. Errors are as for Get.
func (c *Client) Peek(ctx context.Context, peer, cache string, key []byte) (Value, error) {
	r := request{Request: Request{Op: OpPeek, Cache: cache, Key: key}}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// GetMany asks peer for the values of keys in the named cache, in one request and one reply. It
// returns one Result per key, in order, or an error for the whole request (errors as for Get).
// A Result's Err is an *Error with Peer and Op set and the entry's Status: the peer's answer
// (StatusNotFound, StatusInternal...), StatusOverloaded for the keys the peer could not fit in its
// reply frame (ask for them again, singly or in a later batch), or StatusTooLarge for a value
// over the client's limits, which fails that entry alone.
//
// The reply frame is read into one new buffer of exactly its size, and the Results' Value.Data
// alias it (each capacity-capped, so appending to one does not overwrite the next): keeping one
// value keeps the whole buffer alive, so copy a small value that is kept long out of a large
// batch. Compressed values' decoded lengths have been checked against the client's MaxValueBytes.
//
// keys must number 1 to MaxBatchKeys (of the client's limits), each of at most MaxKeyBytes;
// otherwise GetMany returns a StatusBadRequest error without sending anything.
func (c *Client) GetMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: Request{Op: OpGetMany, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return r.results, err
}

// PeekMany is the batch form of Peek: it asks peer for the values of keys in the named cache that
// the peer holds, in one request and one reply, and the peer loads nothing; an entry the peer does
// not hold has StatusNotFound. Results, limits and errors are as for GetMany.
func (c *Client) PeekMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: Request{Op: OpPeekMany, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return r.results, err
}

// Set stores v under key in the named cache at peer. A value over the client's MaxValueBytes
// (for a compressed value: its decoded length, as stated in its S2 header) is refused before
// sending with StatusTooLarge, a compressed value whose S2 header is malformed with
// StatusBadRequest. Other errors are as for Get.
func (c *Client) Set(ctx context.Context, peer, cache string, key []byte, v Value) error {
	r := request{Request: Request{Op: OpSet, Cache: cache, Key: key, Value: v}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Remove drops keys from the named cache at peer; absent keys are not an error. keys must number
// 1 to MaxBatchKeys, each of at most MaxKeyBytes (StatusBadRequest otherwise). Other errors are as
// for Get.
func (c *Client) Remove(ctx context.Context, peer, cache string, keys [][]byte) error {
	r := request{Request: Request{Op: OpRemove, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Clear drops every entry of the named cache at peer, which adopts generation. A generation of 0
// is refused with StatusBadRequest. Other errors are as for Get.
func (c *Client) Clear(ctx context.Context, peer, cache string, generation uint64) error {
	r := request{Request: Request{Op: OpClear, Cache: cache, Generation: generation}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Close closes every connection (requests in flight fail with ErrUnavailable), waits for their
// reading goroutines to end, and makes later calls fail with ErrUnavailable. It is idempotent and
// returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.pools.Range(func(_, v any) bool {
			v.(*pool).closeAll()
			return true
		})
	})
	c.readers.Wait()
	return nil
}

// Stats returns the client's counters. It is safe to call at any time.
func (c *Client) Stats() ClientStats {
	st := ClientStats{
		Requests:  c.requests.Load(),
		Errors:    c.errs.Load(),
		Dials:     c.dials.Load(),
		OpenConns: c.openConns.Load(),
		Waits:     c.waits.Load(),
		Retries:   c.retries.Load(),
	}
	c.pools.Range(func(_, v any) bool {
		v.(*pool).addStats(&st)
		return true
	})
	return st
}

// request is one call in progress.
type request struct {
	Request
	ctx         context.Context
	now         time.Time
	deadline    time.Time
	ctxDeadline bool     // deadline is ctx's
	dst         []byte   // GetInto: memory lent for the value
	results     []Result // the answer to a GetMany or PeekMany
}

// do checks the request r (whose Request is filled in), sends it and waits for its reply. A reply
// with a status other than StatusOK is returned as an error.
func (c *Client) do(ctx context.Context, peer string, r *request) (Response, error) {
	if c.closed.Load() {
		return Response{}, closedError(peer, r.Op)
	}
	if err := c.check(peer, &r.Request); err != nil {
		return Response{}, err
	}
	c.requests.Add(1)
	r.ctx, r.now = ctx, time.Now()
	r.deadline = r.now.Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(r.deadline) {
		r.deadline, r.ctxDeadline = d, true
	}
	if last := c.lastSweep.Load(); r.now.UnixNano()-last > int64(c.idleConnTimeout)/2 &&
		c.lastSweep.CompareAndSwap(last, r.now.UnixNano()) {
		c.sweep(r.now)
	}
	resp, err := c.pool(peer).roundTrip(r)
	if err == nil && resp.Status != StatusOK {
		err = &Error{Peer: peer, Op: r.Op, Status: resp.Status, Msg: resp.Msg}
	}
	if err != nil {
		c.errs.Add(1)
		r.results = nil
		return Response{}, err
	}
	return resp, nil
}

// check refuses a request over the client's limits, before anything is sent.
func (c *Client) check(peer string, r *Request) error {
	bad := func(st Status, format string, args ...any) error {
		return &Error{Peer: peer, Op: r.Op, Status: st, Msg: fmt.Sprintf(format, args...)}
	}
	lim := &c.lim
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
	case OpClear:
		if r.Generation == 0 {
			return bad(StatusBadRequest, "generation 0")
		}
	default:
		if len(r.Key) > lim.MaxKeyBytes {
			return bad(StatusBadRequest, "key of %d bytes over the limit of %d", len(r.Key), lim.MaxKeyBytes)
		}
		if r.Op == OpSet {
			return c.checkSetValue(peer, &r.Value)
		}
	}
	return nil
}

// checkSetValue refuses the value of a Set over the client's limits.
func (c *Client) checkSetValue(peer string, v *Value) error {
	n := len(v.Data)
	if v.Compressed {
		dlen, err := s2.DecodedLen(v.Data)
		if err != nil {
			return &Error{Peer: peer, Op: OpSet, Status: StatusBadRequest, Msg: "compressed value: bad header"}
		}
		n = max(n, dlen)
	}
	if n > c.lim.MaxValueBytes {
		return &Error{Peer: peer, Op: OpSet, Status: StatusTooLarge,
			Msg: fmt.Sprintf("value of %d bytes over the limit of %d", n, c.lim.MaxValueBytes)}
	}
	return nil
}

// closedError is the error of a call on (or interrupted by the closing of) a closed Client.
func closedError(peer string, op Op) error {
	return &Error{Peer: peer, Op: op, Msg: "client closed", Err: wrapCause(ErrUnavailable, net.ErrClosed)}
}

func (c *Client) pool(peer string) *pool {
	if p, ok := c.pools.Load(peer); ok {
		return p.(*pool)
	}
	p, _ := c.pools.LoadOrStore(peer, &pool{c: c, addr: peer})
	return p.(*pool)
}

// sweep closes the connections no call has used for the idle connection timeout, in every pool.
func (c *Client) sweep(now time.Time) {
	c.pools.Range(func(_, v any) bool {
		v.(*pool).closeIdle(now)
		return true
	})
}

// netError describes a failure of r that is not an answer of the peer: ErrUnavailable wrapping
// the cause (the context's error when it ended, net.ErrClosed when the client is closed).
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

// isClosedByPeer reports an error that shows the peer had closed the connection.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// maxHandshake bounds the bytes of a peer's answer to the upgrade request.
const maxHandshake = 16 << 10

// dial connects to the peer and upgrades the connection, within the dial timeout and r's
// deadline and context.
func (p *pool) dial(r *request) (net.Conn, error) {
	deadline := r.deadline
	if d := time.Now().Add(p.c.dialTimeout); d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(r.ctx, deadline)
	defer cancel()
	nc, err := p.c.dialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, p.netError(r, err, "dialing")
	}
	p.c.dials.Add(1)
	if err := p.handshake(ctx, nc, deadline); err != nil {
		nc.Close()
		var pe *Error
		if errors.As(err, &pe) {
			pe.Op = r.Op
			return nil, pe
		}
		return nil, p.netError(r, err, "upgrade handshake")
	}
	return nc, nil
}

// handshake sends the upgrade request and checks the answer. Errors that are the peer's fault are
// *Error values; others are network errors.
func (p *pool) handshake(ctx context.Context, nc net.Conn, deadline time.Time) error {
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	req := "GET " + p.c.basePath + " HTTP/1.1\r\nHost: " + p.addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeToken + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return err
	}
	lr := &io.LimitedReader{R: nc, N: maxHandshake}
	br := bufio.NewReaderSize(lr, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return p.handshakeError(ctx, lr, err)
	}
	defer resp.Body.Close()
	bad := func(sentinel error, msg string) error {
		return &Error{Peer: p.addr, Err: sentinel, Msg: msg}
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return bad(ErrUnavailable, "upgrade refused: "+answer(resp))
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return bad(ErrProtocol, "upgrade refused: "+answer(resp))
	case len(resp.Header.Values("Upgrade")) != 1 || !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Upgrade")), UpgradeToken):
		return bad(ErrProtocol, fmt.Sprintf("upgraded to %q, not to %s", resp.Header.Get("Upgrade"), UpgradeToken))
	case br.Buffered() > 0:
		return bad(ErrProtocol, "unexpected bytes after the upgrade answer")
	}
	return nc.SetDeadline(time.Time{}) // the reader waits for replies as long as it takes
}

// handshakeError describes a failure to read the answer to the upgrade request.
func (p *pool) handshakeError(ctx context.Context, lr *io.LimitedReader, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) || isClosedByPeer(err) || ctx.Err() != nil:
		return err
	case lr.N == maxHandshake && errors.Is(err, io.ErrUnexpectedEOF):
		return io.EOF // closed without a byte: going away rather than speaking garbage
	case lr.N == 0:
		return &Error{Peer: p.addr, Err: ErrProtocol,
			Msg: fmt.Sprintf("answer to the upgrade request longer than %d bytes", maxHandshake)}
	}
	return &Error{Peer: p.addr, Err: ErrProtocol, Msg: "bad answer to the upgrade request: " + err.Error()}
}

// answer returns the status and the start of the body of a refusal.
func answer(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.Status + ": " + strings.TrimSpace(string(body))
}

// aLongTimeAgo is a deadline that has passed, to interrupt a read or write at once.
var aLongTimeAgo = time.Unix(1, 0)
