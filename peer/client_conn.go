package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// A caller appends its frame to its connection's pending frames and, if no write is in progress,
// writes all that is pending. A caller that finds nobody reading reads the replies itself, handing
// each to the call its id names, until its own comes (a lone request costs no goroutine switch);
// then, or when it leaves early, a goroutine reads while calls are in flight.

// clientReadBuffer is the read buffer of a connection: a read can bring many replies.
const clientReadBuffer = 32 << 10

// pool is the connections of a Client to one peer.
type pool struct {
	c    *Client
	addr string

	mu        sync.Mutex
	conns     []*conn
	dialing   int
	room      chan struct{} // closed (and cleared) when a call may find room: a slot, a dial, a close
	dialFails uint64        // dials failed through the peer's fault (down, slow, refusing)
	dialErr   *Error        // the last of them
}

// conn is one connection of a pool.
type conn struct {
	p  *pool
	nc net.Conn
	br *bufio.Reader // the reader goroutine's

	inflight atomic.Int32 // calls given this connection by pick and not out of its table yet
	lastUsed atomic.Int64 // unix nanoseconds of the last call given this connection
	dead     atomic.Bool  // closed (set with mu held)
	draining atomic.Bool  // takes no new call; closed when no call waits (set with mu held)

	mu        sync.Mutex
	calls     map[uint32]*call // by id, the calls in flight
	lastID    uint32
	abandoned int       // calls in flight whose callers left
	reading   bool      // a caller or readLoop reads the replies
	rf        frame     // the reply being read: the reader's, but rf.c, which is guarded by mu
	rArmed    time.Time // the read deadline set (the reader's); wArmed, the write one (the writer's)
	wArmed    time.Time
	writing   bool
	queued    int    // frames in wbuf
	wbuf      []byte // frames not handed to a write yet
	wspare    []byte // the buffer of the last write, for the next frames
}

// call is one request on a connection, from its frame to its outcome.
type call struct {
	ch    chan struct{} // capacity 1: the outcome is set
	timer *time.Timer
	pool  *sync.Pool // the Client's, where the call goes back

	// Set before the call is queued, read-only while it is in flight.
	op    Op
	nkeys int
	dst   []byte

	// Guarded by the connection's mu.
	id        uint32
	done      bool // the outcome is set
	abandoned bool // the caller left; the reader drops the reply
	outcome
	retry bool // the request may be sent again on another connection
}

// newCall returns a call from the Client's pool, or a new one.
func (c *Client) newCall() *call {
	if cl, ok := c.calls.Get().(*call); ok {
		return cl
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{ch: make(chan struct{}, 1), timer: t, pool: &c.calls}
}

// roundTrip sends r to the peer and waits for its reply, once more on a new connection when its
// connection broke and it may.
func (p *pool) roundTrip(r *request) (wire.Response, error) {
	if r.ctx.Err() != nil {
		return wire.Response{}, p.netError(r, nil, "before sending")
	}
	for attempt := 0; ; attempt++ {
		cc, err := p.pick(r)
		if err != nil {
			return wire.Response{}, err
		}
		resp, retry, err := cc.roundTrip(r)
		if err == nil || !retry || attempt > 0 || r.ctx.Err() != nil || !time.Now().Before(r.deadline) || p.c.closed.Load() {
			return resp, err
		}
		p.c.retries.Add(1)
	}
}

// pick returns the connection with the fewest calls in flight, counting r's in (the caller must
// queue it or give it back); it dials one while under the connections per peer and none is idle,
// and waits for room when every connection is full.
func (p *pool) pick(r *request) (*conn, error) {
	var timer *time.Timer
	var fails uint64 // p.dialFails when the call began to wait
	p.mu.Lock()
	for {
		if p.c.closed.Load() {
			p.mu.Unlock()
			return nil, closedError(p.addr, r.Op)
		}
		if err := p.dialFailedLocked(timer != nil, fails, r.Op); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		best, count := p.bestLocked()
		if best != nil && (best.inflight.Load() == 0 || count >= p.c.conns) {
			best.inflight.Add(1)
			best.lastUsed.Store(r.now.UnixNano())
			p.mu.Unlock()
			return best, nil
		}
		if count < p.c.conns {
			return p.dialLocked(r)
		}
		if timer == nil {
			p.c.waits.Add(1)
			fails = p.dialFails
			timer = time.NewTimer(time.Until(r.deadline))
			defer timer.Stop()
		}
		if p.room == nil {
			p.room = make(chan struct{})
		}
		room := p.room
		p.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-r.ctx.Done():
			err = p.netError(r, nil, "waiting for room on a connection")
		case <-timer.C:
			err = p.netError(r, os.ErrDeadlineExceeded, "waiting for room on a connection")
		case <-p.c.done:
			err = closedError(p.addr, r.Op)
		}
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
	}
}

// dialFailedLocked returns, for a call that waited since dials had failed fails times, the error of
// a dial that failed meanwhile: the peer is down or does not answer, and dialing again would cost
// the call another timeout. It fails as that dial did.
func (p *pool) dialFailedLocked(waited bool, fails uint64, op Op) error {
	if !waited || p.dialFails == fails {
		return nil
	}
	e := *p.dialErr
	e.Op = op
	return &e
}

// bestLocked drops the dead connections and returns the live one with the fewest calls in flight
// and room (nil if none), and the number of connections live and not draining, or being dialed.
func (p *pool) bestLocked() (best *conn, count int) {
	k := 0
	for _, cc := range p.conns {
		if cc.dead.Load() {
			continue
		}
		p.conns[k] = cc
		k++
		if cc.draining.Load() {
			continue
		}
		count++
		if n := cc.inflight.Load(); n < MaxConnRequests && (best == nil || n < best.inflight.Load()) {
			best = cc
		}
	}
	clear(p.conns[k:])
	p.conns = p.conns[:k]
	return best, count + p.dialing
}

// dialLocked dials a connection for r, returned with r's place counted; it releases p.mu.
func (p *pool) dialLocked(r *request) (*conn, error) {
	p.dialing++
	p.mu.Unlock()
	nc, err := p.dial(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing--
	p.wakeLocked() // the others may share the new connection, dial themselves, or fail as it did
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) && r.ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			p.dialFails++ // the peer's fault, not the end of this caller's ctx
			p.dialErr = pe
		}
		return nil, err
	}
	if p.c.closed.Load() {
		nc.Close()
		return nil, closedError(p.addr, r.Op)
	}
	cc := &conn{p: p, nc: nc, br: bufio.NewReaderSize(nc, clientReadBuffer), calls: make(map[uint32]*call),
		wbuf: make([]byte, 0, 4<<10)}
	cc.inflight.Add(1)
	cc.lastUsed.Store(r.now.UnixNano())
	p.conns = append(p.conns, cc)
	p.c.openConns.Add(1)
	return cc, nil
}

// wakeLocked wakes the calls waiting for room; each looks again.
func (p *pool) wakeLocked() {
	if p.room != nil {
		close(p.room)
		p.room = nil
	}
}

// wake is wakeLocked for a caller without p.mu.
func (p *pool) wake() {
	p.mu.Lock()
	p.wakeLocked()
	p.mu.Unlock()
}

// live returns the pool's open connections.
func (p *pool) live() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bestLocked()
	return append([]*conn(nil), p.conns...)
}

// closeIf closes the connections for which close, called with their lock held, reports true.
func (p *pool) closeIf(close func(*conn) bool) {
	for _, cc := range p.live() {
		cc.mu.Lock()
		if close(cc) {
			cc.breakLocked(net.ErrClosed)
		}
		cc.mu.Unlock()
	}
}

// roundTrip queues r (whose place pick counted), writes it or leaves it to the writer, and waits
// for its reply, an error, or (retry) leave to send it again elsewhere.
func (cc *conn) roundTrip(r *request) (wire.Response, bool, error) {
	c := cc.p.c.newCall()
	c.op, c.nkeys, c.dst = r.Op, len(r.Keys), r.dst
	cc.mu.Lock()
	if cc.dead.Load() || cc.draining.Load() {
		// Lost the race with the end of the connection: never written.
		cc.mu.Unlock()
		cc.release()
		c.recycle()
		return wire.Response{}, true, cc.p.netError(r, net.ErrClosed, "sending the request")
	}
	cc.queueLocked(c, r)
	if !cc.writing {
		cc.flushLocked(r.deadline)
	}
	var err error
	switch {
	case c.done:
		// The reply came while this caller wrote, read by a reader that may have left since.
		cc.mu.Unlock()
	case !cc.reading:
		cc.reading = true
		cc.mu.Unlock()
		err = cc.readOwn(c, r)
	default:
		cc.mu.Unlock()
		err = cc.wait(c, r)
	}
	if err != nil {
		return wire.Response{}, false, err // c is the reader's now
	}
	resp, retry, err := c.resp, c.retry, c.err
	r.results = c.results
	c.recycle()
	return resp, retry, err
}

// wait waits for c's outcome, its deadline or its context's end (then c is abandoned: an error).
func (cc *conn) wait(c *call, r *request) error {
	c.timer.Reset(time.Until(r.deadline))
	defer c.timer.Stop()
	select {
	case <-c.ch:
		return nil
	case <-r.ctx.Done():
	case <-c.timer.C:
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.abandonLocked(c, r)
}

// readOwn reads replies until c's comes, its deadline passes or its context ends, then passes the
// reading on. It returns an error when c was abandoned, which is then the reader's.
func (cc *conn) readOwn(c *call, r *request) (left error) {
	if r.ctx.Done() != nil {
		defer context.AfterFunc(r.ctx, func() { _ = cc.nc.SetReadDeadline(aLongTimeAgo) })()
	}
	cc.rArmed = arm(cc.nc.SetReadDeadline, cc.rArmed, r.deadline)
	for {
		err := cc.readOne()
		cc.mu.Lock()
		switch {
		case c.done:
		case err == nil:
			cc.mu.Unlock()
			continue
		case !isTimeout(err) || cc.dead.Load():
			cc.breakLocked(err)
		case r.ctx.Err() == nil && time.Now().Before(r.deadline):
			// A deadline an earlier reader left behind: not this caller's.
			cc.rArmed = arm(cc.nc.SetReadDeadline, time.Time{}, r.deadline)
			cc.mu.Unlock()
			continue
		default:
			left = cc.abandonLocked(c, r)
		}
		cc.passRoleLocked()
		cc.mu.Unlock()
		return left
	}
}

// passRoleLocked gives the reading to a goroutine while calls are in flight, else to the next caller.
func (cc *conn) passRoleLocked() {
	if cc.dead.Load() || (len(cc.calls) == 0 && cc.rf.c == nil) {
		cc.reading = false
		return
	}
	cc.p.c.readers.Add(1)
	go cc.readLoop()
}

// recycle clears c and puts it back in the pool of calls.
func (c *call) recycle() {
	select {
	case <-c.ch:
	default:
	}
	*c = call{ch: c.ch, timer: c.timer, pool: c.pool}
	c.pool.Put(c)
}

// release gives back a place that pick counted and that no call took.
func (cc *conn) release() {
	if cc.inflight.Add(-1) == MaxConnRequests-1 {
		cc.p.wake()
	}
}

// queueLocked gives c an id and appends r's frame to the pending ones.
func (cc *conn) queueLocked(c *call, r *request) {
	cc.lastID++
	c.id = cc.lastID
	cc.calls[c.id] = c
	start := len(cc.wbuf)
	b := wire.AppendRequest(wire.AppendPrefix(cc.wbuf, 0, c.id), &r.Request) // a Set's value is copied: its caller may leave
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-wire.PrefixLen))
	cc.wbuf = b
	cc.queued++
}

// flushLocked writes the pending frames, as the writer, while there are some; mu is held.
func (cc *conn) flushLocked(deadline time.Time) {
	cc.writing = true
	if len(cc.calls)-cc.abandoned > 1 {
		// Other calls are in flight: their callers, handed their replies, may be about to send
		// the next ones. Let them run first, so their frames join this write.
		cc.mu.Unlock()
		runtime.Gosched()
		cc.mu.Lock()
	}
	for !cc.dead.Load() && cc.queued > 0 {
		if cc.queued > 1 {
			cc.p.c.sharedWrites.Add(int64(cc.queued))
		}
		cc.queued = 0
		buf := cc.wbuf
		cc.wbuf, cc.wspare = cc.wspare[:0], nil
		cc.mu.Unlock()
		err := cc.write(buf, deadline)
		cc.mu.Lock()
		if err != nil {
			cc.breakLocked(err)
			break
		}
		cc.p.c.bytesSent.Add(int64(len(buf)))
		if cap(buf) <= keepBuffer {
			cc.wspare = buf[:0]
		}
	}
	cc.writing = false
}

// write writes buf before deadline, through a deadline an earlier writer left.
func (cc *conn) write(buf []byte, deadline time.Time) error {
	for {
		cc.wArmed = arm(cc.nc.SetWriteDeadline, cc.wArmed, deadline)
		n, err := cc.nc.Write(buf)
		if err == nil || !isTimeout(err) || !time.Now().Before(deadline) {
			return err
		}
		buf, cc.wArmed = buf[n:], time.Time{}
	}
}

// arm sets deadline with set unless armed, the one set already, is neither zero nor later nor in
// the first half of the time left (moving a deadline costs a timer operation); it returns the one
// set now.
func arm(set func(time.Time) error, armed, deadline time.Time) time.Time {
	if !armed.IsZero() && !armed.After(deadline) && time.Until(armed) >= time.Until(deadline)/2 {
		return armed
	}
	if set(deadline) != nil {
		return time.Time{}
	}
	return deadline
}

// abandonLocked marks c abandoned, unless its outcome came, and returns r's error. A connection
// with over MaxConnRequests/2 abandoned calls (a peer that does not answer) is drained and closed.
func (cc *conn) abandonLocked(c *call, r *request) error {
	if c.done {
		return nil
	}
	err := cc.p.netError(r, os.ErrDeadlineExceeded, "waiting for the reply")
	c.abandoned = true
	cc.abandoned++
	if cc.abandoned > MaxConnRequests/2 && !cc.draining.Load() {
		cc.draining.Store(true)
		cc.p.wake() // it no longer counts among the peer's connections
	}
	cc.closeIfDrainedLocked()
	return err
}

// closeIfDrainedLocked closes a draining connection on which no caller waits anymore.
func (cc *conn) closeIfDrainedLocked() {
	if cc.draining.Load() && len(cc.calls) == cc.abandoned {
		cc.breakLocked(net.ErrClosed)
	}
}

// readLoop reads replies while calls are in flight, until the connection breaks.
func (cc *conn) readLoop() {
	defer cc.p.c.readers.Done()
	_ = cc.nc.SetReadDeadline(time.Time{})
	cc.rArmed = time.Time{}
	for {
		err := cc.readOne()
		cc.mu.Lock()
		switch {
		case err != nil && (!isTimeout(err) || cc.dead.Load()):
			cc.breakLocked(err)
			cc.mu.Unlock()
			return
		case err != nil:
			_ = cc.nc.SetReadDeadline(time.Time{}) // one a caller left behind
			cc.rArmed = time.Time{}
		case len(cc.calls) == 0 && cc.rf.c == nil:
			cc.reading = false
			cc.mu.Unlock()
			return
		}
		cc.mu.Unlock()
	}
}

// frame is the reply frame being read, past its prefix; a reader that leaves (a timeout) leaves
// its progress for the next to resume.
type frame struct {
	c        *call // nil: between frames
	op       Op
	nkeys, n int           // n: the frame's length
	off      int           // the value's offset; 0 until the head is parsed
	resp     wire.Response // the head
	buf      []byte        // the value read so far (a batch: the whole frame)
	skipping bool          // its caller left, or its value is over the limits
	skip     int           // bytes still to skip
	err      error         // the call's own error, once skipped
}

// readOne reads (or resumes) one reply for its call; a timeout keeps its progress in rf.
func (cc *conn) readOne() error {
	f := &cc.rf
	if f.c == nil {
		if err := cc.startFrame(f); err == errNotice {
			return nil
		} else if err != nil {
			return err
		}
	}
	out, err := cc.continueFrame(f)
	if err != nil {
		return err
	}
	cc.p.c.bytesReceived.Add(int64(f.n) + wire.PrefixLen)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	c := f.c
	*f = frame{}
	if cc.dead.Load() {
		return net.ErrClosed // breakLocked has ended c already
	}
	cc.deliverLocked(c, out)
	return nil
}

// startFrame reads the prefix of the next reply frame and starts f on it.
func (cc *conn) startFrame(f *frame) error {
	hdr, err := cc.br.Peek(wire.PrefixLen)
	if err != nil {
		if len(hdr) > 0 {
			return midReply(err, len(hdr), wire.PrefixLen)
		}
		return err
	}
	n, id := wire.ParsePrefix(hdr)
	if id == 0 {
		return cc.refusal(n)
	}
	cc.mu.Lock()
	c := cc.calls[id]
	if c != nil { // its fields, copied under mu: a call ended by breakLocked may be recycled
		*f = frame{c: c, op: c.op, nkeys: c.nkeys, n: n, skipping: c.abandoned, skip: n}
		if cap(c.dst) > 0 {
			f.buf = c.dst[:0]
		}
	}
	cc.mu.Unlock()
	if c == nil {
		return &Error{Peer: cc.p.addr, Err: ErrProtocol,
			Msg: fmt.Sprintf("reply with id %#x, which is not that of a request in flight on the connection", id)}
	}
	if lim := cc.p.c.lim.MaxFrameBytes; n > lim {
		return &Error{Peer: cc.p.addr, Op: f.op, Status: StatusTooLarge, Err: ErrProtocol,
			Msg: fmt.Sprintf("reply frame of %d bytes over the limit of %d", n, lim)}
	}
	_, _ = cc.br.Discard(wire.PrefixLen)
	return nil
}

// refusal reads a reply frame of n bytes with id 0, by which a server refuses the connection
// (a wrong proof of the shared secret), and returns it as the error of every call on it.
func (cc *conn) refusal(n int) error {
	if n > wire.MaxResponseHead {
		return &Error{Peer: cc.p.addr, Err: ErrProtocol, Msg: fmt.Sprintf("refusal frame of %d bytes", n)}
	}
	_, _ = cc.br.Discard(wire.PrefixLen)
	frame, err := cc.br.Peek(n)
	if err != nil {
		return midReply(err, len(frame), n)
	}
	resp, _, err := wire.ParseResponseHead(frame, n, 0)
	switch {
	case err != nil || resp.Status == StatusOK:
		return &Error{Peer: cc.p.addr, Err: ErrProtocol, Msg: "malformed refusal frame"}
	case resp.Status == StatusLeaving:
		_, _ = cc.br.Discard(n)
		cc.leaving()
		return errNotice
	}
	return &Error{Peer: cc.p.addr, Status: resp.Status, Msg: "connection refused: " + resp.Msg}
}

// errNotice is what startFrame returns for a notice it has read: a frame that answers no call.
var errNotice = errors.New("peer: notice")

// leaving takes the connection out of use after the peer's notice that it is leaving: the calls in
// flight get their replies, then it closes. The Observer learns it, unless the connection was out
// of use already: drained (the news may be of a process that has since left and come back) or
// told before.
func (cc *conn) leaving() {
	cc.mu.Lock()
	news := !cc.draining.Swap(true)
	cc.closeIfDrainedLocked()
	cc.mu.Unlock()
	cc.p.wake()
	if o := cc.p.c.observer; o != nil && news {
		o.Leaving(cc.p.addr)
	}
}

// outcome is what the reply to one call brought.
type outcome struct {
	resp    wire.Response
	results []Result // of a GetMany or PeekMany
	err     error    // the call's own error: a value over this side's limits
}

// continueFrame reads the rest of f; a value into the memory its call lent if it fits, else new.
func (cc *conn) continueFrame(f *frame) (outcome, error) {
	if f.skipping {
		m, err := cc.br.Discard(f.skip)
		if f.skip -= m; err != nil {
			return outcome{}, midReply(err, f.n-f.skip, f.n)
		}
		return outcome{err: f.err}, nil
	}
	if f.op == OpGetMany || f.op == OpPeekMany {
		return cc.readBatch(f)
	}
	if f.off == 0 {
		if done, err := cc.readHead(f); err != nil || done {
			return outcome{resp: f.resp}, err
		}
		if f.skipping {
			return cc.continueFrame(f)
		}
	}
	var err error
	if cap(f.buf) < f.n-f.off {
		f.buf = nil
	}
	if f.buf, err = fillFrame(cc.br, f.buf, f.n-f.off); err != nil {
		return outcome{}, midReply(err, f.off+len(f.buf), f.n)
	}
	f.resp.Value.Data = f.buf
	if err := wire.CheckValue(&f.resp.Value, cc.p.c.lim.MaxValueBytes, wire.ProtocolError); err != nil {
		if pe := cc.annotate(err, f.op); pe.Status != StatusTooLarge {
			return outcome{}, pe
		}
		return outcome{err: err}, nil
	}
	return outcome{resp: f.resp}, nil
}

// readHead parses the head of f where it lies in the read buffer; done: a reply without value. A
// value over this side's limit makes f skip the frame, failing its call alone.
func (cc *conn) readHead(f *frame) (done bool, err error) {
	// Peek no more than is buffered (at least the longest head): asking for more would cost a
	// read for bytes that go to the value anyway.
	head, err := cc.br.Peek(min(f.n, max(cc.br.Buffered(), wire.MaxResponseHead)))
	if err != nil {
		return false, midReply(err, len(head), f.n)
	}
	resp, off, err := wire.ParseResponseHead(head, f.n, cc.p.c.lim.MaxValueBytes)
	ack := f.op.IsWrite()
	if err == nil && ack {
		err = wire.CheckAck(&resp, off, f.n)
	}
	if err != nil {
		pe := cc.annotate(err, f.op)
		if pe.Status != StatusTooLarge || ack { // any value on an acknowledgment is one too many
			return false, protocolFault(pe)
		}
		f.skipping, f.err = true, pe
		return false, nil
	}
	_, _ = cc.br.Discard(off)
	f.resp, f.off = resp, off
	return resp.Status != StatusOK, nil
}

// readBatch reads the rest of f, a batch reply, into one buffer that the results' values share.
func (cc *conn) readBatch(f *frame) (outcome, error) {
	var err error
	if f.buf, err = fillFrame(cc.br, f.buf, f.n); err != nil {
		return outcome{}, midReply(err, len(f.buf), f.n)
	}
	// The batch body is bounded by the frame, not by the limit on one value.
	resp, off, err := wire.ParseResponseHead(f.buf, f.n, f.n)
	if err != nil {
		return outcome{}, protocolFault(cc.annotate(err, f.op))
	}
	if resp.Status != StatusOK {
		return outcome{resp: resp}, nil
	}
	if resp.Value.Compressed || resp.Value.TTL != 0 || resp.Msg != "" {
		return outcome{}, cc.annotate(wire.ProtocolError("batch reply with flags or a message"), f.op)
	}
	rs, err := wire.ParseBatch(f.buf[off:f.n:f.n], f.nkeys, cc.p.c.lim)
	if err != nil {
		return outcome{}, protocolFault(cc.annotate(err, f.op))
	}
	for i := range rs {
		if pe, ok := rs[i].Err.(*Error); ok {
			pe.Peer, pe.Op = cc.p.addr, f.op
		}
	}
	return outcome{results: rs}, nil
}

// annotate returns err, an *Error of this package's parsers, with the peer and op set.
func (cc *conn) annotate(err error, op Op) *Error {
	pe := err.(*Error)
	pe.Peer, pe.Op = cc.p.addr, op
	return pe
}

// protocolFault turns a frame-level StatusTooLarge into the protocol error it is.
func protocolFault(pe *Error) *Error {
	if pe.Status == StatusTooLarge {
		pe.Status, pe.Err = StatusOK, ErrProtocol
	}
	return pe
}

// midReply describes a read that ended after got of the want bytes of a frame.
func midReply(err error, got, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("connection closed after %d of %d bytes: %w", got, want, io.ErrUnexpectedEOF)
	}
	return err
}

// deliverLocked takes c out of flight and sets its outcome, unless its caller left.
func (cc *conn) deliverLocked(c *call, out outcome) {
	delete(cc.calls, c.id)
	cc.release()
	if c.abandoned {
		cc.abandoned--
	} else {
		c.done, c.outcome = true, out
		c.ch <- struct{}{}
	}
	cc.closeIfDrainedLocked()
}

// breakLocked closes the connection and ends every call on it with cause (copied, if an *Error).
func (cc *conn) breakLocked(cause error) {
	if cc.dead.Load() {
		return
	}
	cc.dead.Store(true)
	_ = cc.nc.Close()
	cc.p.c.openConns.Add(-1)
	var perr *Error
	protocol := errors.As(cause, &perr) && perr.Err != ErrUnavailable
	for _, c := range cc.calls {
		if c.abandoned {
			continue
		}
		if protocol {
			e := *perr
			e.Op = c.op
			c.err = &e
		} else {
			c.err = cc.p.netError(&request{Request: wire.Request{Op: c.op}, ctx: context.Background()}, cause, "connection broken")
		}
		// A reply being read may still be read into the memory its caller lent: it is not sent
		// again, so no two connections write into that memory.
		c.done, c.retry = true, c != cc.rf.c && !protocol
		c.ch <- struct{}{}
	}
	cc.inflight.Add(-int32(len(cc.calls)))
	clear(cc.calls)
	cc.abandoned = 0
	cc.p.wake()
}
