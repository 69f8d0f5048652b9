package peer

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
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

	"github.com/typedcache/groupcache/internal/wire"
)

// Client asks peers for values, and stores, removes and clears them, over a few connections per
// peer (WithConnsPerPeer, one by default) that carry up to MaxConnRequests requests each. A caller
// whose context ends or whose timeout passes leaves at once; its reply is dropped when it comes.
// A connection on which more than half of the requests in flight are such leftovers (a peer that
// does not answer) takes no new request and is closed once no caller waits on it. A Client is
// safe for concurrent use; Close closes its connections and waits for their reading goroutines.
type Client struct {
	basePath        string
	timeout         time.Duration
	dialTimeout     time.Duration
	idleConnTimeout time.Duration
	conns           int
	lim             Limits
	tls             *tls.Config                                                       // WithTLS's, with a session cache
	secrets         [][]byte                                                          // WithSecret's: the first is proved
	self            string                                                            // WithSelf's claim
	observer        Observer                                                          // WithObserver's; may be nil
	inject          func(context.Context) []byte                                      // WithTraceContext's; may be nil
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
	_                                      [64]byte
	requests, errs, dials, openConns       atomic.Int64
	waits, retries                         atomic.Int64
	bytesSent, bytesReceived, sharedWrites atomic.Int64
}

// ClientStats are counters of a Client since NewClient.
type ClientStats struct {
	// Requests counts the calls that passed the argument checks (a batch counts once); Errors
	// those that returned an error, of any kind (a not-found answer too; a batch whose reply
	// arrived is not an error, whatever its entries say).
	Requests, Errors int64
	// BytesSent and BytesReceived count the bytes of frames, prefixes included.
	BytesSent, BytesReceived int64
	// Dials counts the connections made; OpenConns is the number open now.
	Dials, OpenConns int64
	// Waits counts the calls that waited for room on a connection (or for a dial); Retries the
	// requests sent again on a new connection because theirs broke before their reply came;
	// SharedWrites the requests whose frame went out in one write with others.
	Waits, Retries, SharedWrites int64
}

// NewClient returns a Client, or an error matching ErrInvalidOption.
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
	c := &Client{
		basePath:        cfg.basePath,
		timeout:         cmp.Or(cfg.timeout, DefaultTimeout),
		dialTimeout:     cmp.Or(cfg.dialTimeout, DefaultDialTimeout),
		idleConnTimeout: cmp.Or(cfg.idleConnTimeout, DefaultIdleConnTimeout),
		conns:           max(cfg.conns, 1),
		lim:             wire.Resolve(cfg.limits),
		tls:             cfg.tls,
		secrets:         cfg.secrets,
		self:            cfg.self,
		observer:        cfg.observer,
		inject:          cfg.inject,
		done:            make(chan struct{}),
	}
	if c.tls != nil && c.tls.ClientSessionCache == nil {
		c.tls.ClientSessionCache = tls.NewLRUClientSessionCache(0) // a reconnection resumes its session
	}
	c.dialContext = (&net.Dialer{}).DialContext
	c.lastSweep.Store(time.Now().UnixNano())
	return c, nil
}

// Get asks peer ("host:port") for the value of key in the named cache; the Value owns its Data.
// Errors are *Error values with the peer's answer (StatusOf), this side's refusal of a request
// or reply over its limits, or no status and ErrProtocol (malformed bytes) or ErrUnavailable (the
// network, a timeout, the end of ctx, whose error it then matches too, a closed Client).
func (c *Client) Get(ctx context.Context, peer, cache string, key []byte) (Value, error) {
	r := request{Request: wire.Request{Op: OpGet, Cache: cache, Key: key}}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// GetInto is Get, reading the value into buf's memory when it fits in cap(buf). After an error
// buf must not be reused: a reply abandoned halfway may still be read into it.
func (c *Client) GetInto(ctx context.Context, peer, cache string, key, buf []byte) (Value, error) {
	r := request{Request: wire.Request{Op: OpGet, Cache: cache, Key: key}, dst: buf}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// Peek asks peer for the value of key only if the peer holds it (StatusNotFound if not; it never
// loads): a new owner takes a value over from the key's previous owner so. Errors are as for Get.
func (c *Client) Peek(ctx context.Context, peer, cache string, key []byte) (Value, error) {
	r := request{Request: wire.Request{Op: OpPeek, Cache: cache, Key: key}}
	resp, err := c.do(ctx, peer, &r)
	return resp.Value, err
}

// GetMany asks peer for the values of keys in one request: one Result per key, in order, or an
// error for the whole request. A Result's Err has the entry's Status (StatusOverloaded: ask
// again). The values share one buffer: keeping one keeps it all (copy small ones kept long).
func (c *Client) GetMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: wire.Request{Op: OpGetMany, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return r.results, err
}

// PeekMany is the batch form of Peek (an entry the peer does not hold has StatusNotFound).
// Results, limits and errors are as for GetMany.
func (c *Client) PeekMany(ctx context.Context, peer, cache string, keys [][]byte) ([]Result, error) {
	r := request{Request: wire.Request{Op: OpPeekMany, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return r.results, err
}

// Set stores v under key in the named cache at peer. Errors are as for Get.
func (c *Client) Set(ctx context.Context, peer, cache string, key []byte, v Value) error {
	r := request{Request: wire.Request{Op: OpSet, Cache: cache, Key: key, Value: v}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Offer hands v over to peer as the value of key in the named cache: peer stores it only if it
// owns key, or will own it once this node is gone, holds no value for it and has not seen it
// written lately; it answers nil whether it stored v or not. Errors are as for Get.
func (c *Client) Offer(ctx context.Context, peer, cache string, key []byte, v Value) error {
	r := request{Request: wire.Request{Op: OpOffer, Cache: cache, Key: key, Value: v}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Remove drops keys from the named cache at peer; absent keys are not an error.
func (c *Client) Remove(ctx context.Context, peer, cache string, keys [][]byte) error {
	r := request{Request: wire.Request{Op: OpRemove, Cache: cache, Keys: keys}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Clear drops every entry of the named cache at peer, which adopts generation (at least 1).
func (c *Client) Clear(ctx context.Context, peer, cache string, generation uint64) error {
	r := request{Request: wire.Request{Op: OpClear, Cache: cache, Generation: generation}}
	_, err := c.do(ctx, peer, &r)
	return err
}

// Close closes every connection (calls in flight fail with ErrUnavailable), waits for their
// reading goroutines, and makes later calls fail with ErrUnavailable. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.done)
		c.pools.Range(func(_, v any) bool {
			v.(*pool).closeIf(func(*conn) bool { return true }) // the calls waiting fail
			return true
		})
	})
	c.readers.Wait()
	return nil
}

// Stats returns the client's counters. It is safe to call at any time.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		Requests:      c.requests.Load(),
		Errors:        c.errs.Load(),
		BytesSent:     c.bytesSent.Load(),
		BytesReceived: c.bytesReceived.Load(),
		Dials:         c.dials.Load(),
		OpenConns:     c.openConns.Load(),
		Waits:         c.waits.Load(),
		Retries:       c.retries.Load(),
		SharedWrites:  c.sharedWrites.Load(),
	}
}

// request is one call in progress.
type request struct {
	wire.Request
	ctx         context.Context
	now         time.Time
	deadline    time.Time
	ctxDeadline bool     // deadline is ctx's
	dst         []byte   // GetInto: memory lent for the value
	results     []Result // the answer to a GetMany or PeekMany
}

// do checks the request r (whose wire.Request is filled in), sends it and waits for its reply. A reply
// with a status other than StatusOK is returned as an error.
func (c *Client) do(ctx context.Context, peer string, r *request) (wire.Response, error) {
	if c.closed.Load() {
		return wire.Response{}, closedError(peer, r.Op)
	}
	if err := c.check(peer, &r.Request); err != nil {
		return wire.Response{}, err
	}
	c.requests.Add(1)
	if c.inject != nil {
		if r.Trace = c.inject(ctx); len(r.Trace) > MaxTraceBytes {
			r.Trace = nil
		}
	}
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
		return wire.Response{}, err
	}
	return resp, nil
}

// check refuses a request over the client's limits, before anything is sent.
func (c *Client) check(peer string, r *wire.Request) error {
	err := wire.CheckRequest(r, &c.lim)
	if pe, ok := err.(*Error); ok {
		pe.Peer, pe.Op = peer, r.Op
	}
	return err
}

// closedError is the error of a call on (or interrupted by the closing of) a closed Client.
func closedError(peer string, op Op) error {
	return &Error{Peer: peer, Op: op, Msg: "client closed", Err: wire.WrapCause(ErrUnavailable, net.ErrClosed)}
}

func (c *Client) pool(peer string) *pool {
	if p, ok := c.pools.Load(peer); ok {
		return p.(*pool)
	}
	p, _ := c.pools.LoadOrStore(peer, &pool{c: c, addr: peer})
	return p.(*pool)
}

// Drain makes the connections to peer take no new call and close once their calls are done: the
// next call dials anew (a peer that left and came back may be a new process at the address).
func (c *Client) Drain(peer string) {
	if v, ok := c.pools.Load(peer); ok {
		v.(*pool).closeIf(func(cc *conn) bool { cc.draining.Store(true); return len(cc.calls) == cc.abandoned })
		v.(*pool).wake()
	}
}

// sweep closes the connections no call has used for the idle connection timeout, in every pool.
func (c *Client) sweep(now time.Time) {
	c.pools.Range(func(_, v any) bool {
		v.(*pool).closeIf(func(cc *conn) bool {
			return now.UnixNano()-cc.lastUsed.Load() > int64(c.idleConnTimeout) && len(cc.calls) == cc.abandoned
		})
		return true
	})
}

// netError describes a failure of r that is not an answer of the peer: ErrUnavailable wrapping
// the cause (the context's error when it ended, net.ErrClosed when the client is closed).
func (p *pool) netError(r *request, cause error, what string) error {
	if p.c.closed.Load() {
		return closedError(p.addr, r.Op)
	}
	if err := r.ctx.Err(); err != nil {
		cause = err
	} else if r.ctxDeadline && errors.Is(cause, os.ErrDeadlineExceeded) {
		cause = fmt.Errorf("%w (%w)", context.DeadlineExceeded, cause)
	}
	if errors.Is(cause, os.ErrDeadlineExceeded) && !errors.Is(cause, context.DeadlineExceeded) {
		what += " (timed out)"
	}
	return &Error{Peer: p.addr, Op: r.Op, Msg: what, Err: wire.WrapCause(ErrUnavailable, cause)}
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
	if nc, err = p.secure(ctx, nc); err == nil {
		if err = p.handshake(ctx, nc, deadline); err != nil {
			nc.Close()
		}
	}
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			pe.Op = r.Op
			return nil, pe
		}
		return nil, p.netError(r, err, "handshake")
	}
	return nc, nil
}

// secure runs the TLS handshake on nc when the client speaks TLS. A peer whose certificate is
// not valid for its address is refused with StatusForbidden.
func (p *pool) secure(ctx context.Context, nc net.Conn) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(p.addr)
	cfg := p.c.clientTLS(host)
	if cfg == nil {
		return nc, nil
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			return nil, &Error{Peer: p.addr, Status: StatusForbidden, Msg: "the peer's certificate", Err: err}
		}
		return nil, err
	}
	return tc, nil
}

// handshake sends the upgrade request and checks the answer. Errors that are the peer's fault are
// *Error values; others are network errors.
func (p *pool) handshake(ctx context.Context, nc net.Conn, deadline time.Time) error {
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	auth, nonce := p.c.authHeaders()
	req := "GET " + p.c.basePath + " HTTP/1.1\r\nHost: " + p.addr +
		"\r\nConnection: Upgrade\r\nUpgrade: " + UpgradeToken + "\r\n" + auth + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return err
	}
	lr := &io.LimitedReader{R: nc, N: maxHandshake}
	br := bufio.NewReaderSize(lr, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	var ne net.Error
	switch {
	case err == nil:
	case errors.As(err, &ne) || isClosedByPeer(err) || ctx.Err() != nil:
		return err
	case lr.N == maxHandshake && errors.Is(err, io.ErrUnexpectedEOF):
		return io.EOF // closed without a byte: going away rather than speaking garbage
	default:
		return &Error{Peer: p.addr, Err: ErrProtocol, Msg: "bad answer to the upgrade request: " + err.Error()}
	}
	defer resp.Body.Close()
	if err := p.checkUpgrade(resp, br); err != nil {
		return err
	}
	p.checkName(resp.Header.Get(wire.HeaderNode))
	proof, err := p.c.proveSecret(resp.Header, nonce)
	if err != nil {
		err.(*Error).Peer = p.addr
		return err
	}
	if len(proof) > 0 {
		if _, err := nc.Write(proof); err != nil {
			return err
		}
	}
	return nc.SetDeadline(time.Time{}) // the reader waits for replies as long as it takes
}

// checkUpgrade checks the answer to the upgrade request: 101 to UpgradeToken and nothing after it.
func (p *pool) checkUpgrade(resp *http.Response, br *bufio.Reader) error {
	bad := func(sentinel error, msg string) error {
		return &Error{Peer: p.addr, Err: sentinel, Msg: msg}
	}
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return &Error{Peer: p.addr, Status: StatusForbidden, Msg: "upgrade refused: " + answer(resp)}
	case resp.StatusCode == http.StatusServiceUnavailable:
		return bad(ErrUnavailable, "upgrade refused: "+answer(resp))
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return bad(ErrProtocol, "upgrade refused: "+answer(resp))
	case len(resp.Header.Values("Upgrade")) != 1 || !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Upgrade")), UpgradeToken):
		return bad(ErrProtocol, fmt.Sprintf("upgraded to %q, not to %s", resp.Header.Get("Upgrade"), UpgradeToken))
	case br.Buffered() > 0:
		return bad(ErrProtocol, "unexpected bytes after the upgrade answer")
	}
	return nil
}

// checkName tells the Observer when the peer names itself (name, from its answer to the upgrade)
// otherwise than the client does.
func (p *pool) checkName(name string) {
	if name != "" && name != p.addr && p.c.observer != nil {
		p.c.observer.Misnamed(p.addr, name[:min(len(name), wire.MaxClaim)])
	}
}

// answer returns the status and the start of the body of a refusal.
func answer(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.Status + ": " + strings.TrimSpace(string(body))
}

// aLongTimeAgo is a deadline that has passed, to interrupt a read or write at once.
var aLongTimeAgo = time.Unix(1, 0)
