package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Multiplexed connections (WithPipelining): a client's requests to a peer share a few connections
// on the multiplexed framing (UpgradeMultiplexed, docs/protocol.md "Multiplexed framing"), each
// with many requests in flight, whose replies come in any order.
//
// Negotiation. A connection for pipelining offers "groupcache/2, groupcache/1". A peer that
// answers groupcache/1 speaks framing 1 only (an older server): the connection is used one request
// at a time, as without pipelining (it joins the pool's idle connections), and the pool remembers
// for the idle connection timeout (WithIdleConnTimeout) that the peer speaks framing 1 only, so its
// requests go one per connection on framing 1 meanwhile, on connections that offer groupcache/1
// alone. The first request after that timeout dials and offers both again, in case the peer was
// upgraded: an old peer costs one such dial per timeout, an upgraded one is multiplexed again
// within a timeout.
//
// Ids. A connection has a table of pipeDepth slots (64); a request takes a free slot, and its id
// is the slot's index in the low 8 bits and the slot's generation in the 24 bits above, a counter
// the slot increments each time it is taken. A reply is matched to its call by the slot its id
// names and checked against the full id, so a reply to a request already answered, or to no
// request (never sent, or a slot taken again since), is recognized: it is ErrProtocol, and the
// connection is closed. A slot is freed when the reply to its request has been read in full,
// whether its caller still waits for it or left.
//
// Writes. A caller appends its frame to the connection's pending buffer. If no write is in
// progress it becomes the writer: it writes all that is pending in one write, and again while
// more arrived meanwhile; otherwise its frame goes out with the next write. A writer that finds
// other callers waiting on the connection yields the processor once before it takes the
// pending frames: the callers the reader has just handed their replies to are runnable, and most
// send their next request at once, so their frames join this write (on two cores, 16 callers:
// 0.3 writes per request instead of 0.9). A lone request is written at once.
//
// Reads (leader/follower). One waiting caller at a time holds the reader role: it reads what the
// socket has (one read may bring many replies), parses each reply and hands it to the call its id
// names (a value is read into new memory of exactly its size, as in the one-request exchange, so
// its caller owns it), until its own reply is in, and then the replies already whole in its read
// buffer (they cost no system call); then it passes the role to a call still waiting. No
// goroutine reads on its own: a reply costs one wakeup, that of its caller. The writer is never
// handed the role while it writes (a writer that stopped reading while the peer blocks on unread
// replies would deadlock with it); a free role is taken by the next call that waits. The frame
// being read survives a change of reader (replyState, cur), so a reader may leave in the middle
// of a reply.
//
// Deadlines. The socket's read and write deadlines are armed no later than the earliest deadline
// of the calls still waiting (lazily: a new call moves them only to an earlier time, and a reader
// or writer that hits a deadline before any waiting call's deadline moves it on and goes on, as
// the one-request client does). When a deadline passes, the calls whose deadline passed fail with
// a timeout; the others keep waiting. A slow reply holds up no other: the peer answers them as
// they are ready.
//
// Leaving early. A call whose context ends (context.AfterFunc) or whose deadline passes returns at
// once with ErrUnavailable; its id stays in flight, abandoned, and its reply is read and dropped
// when it comes. A reader that leaves passes the role on; a writer that leaves in the middle of a
// write blocked by the peer hands the rest of it to a goroutine that finishes it (for the calls
// still waiting) and exits. A peer that never answers must not hold ids forever: once more than
// half of a connection's slots hold abandoned ids, it takes no new call, and it is closed when no
// call waits on it anymore (the calls that would have used it go to another connection).
//
// Breaking. A connection that fails (EOF, reset, malformed reply, a reply with an unknown id, a
// frame over the limits, a version mismatch, a write error) is closed and every call waiting on it
// fails with the error the one-request exchange would report; a call whose frame was never
// written, or, on a connection that had answered before, every call when the peer closed the
// connection before any byte of a next reply, is sent again on a new connection.

const (
	// pipelineDepth bounds the requests in flight on one multiplexed connection (abandoned ones
	// included, until their replies are read). Beyond it, callers use another of the
	// connections or wait.
	pipelineDepth = 64
	// pipelineReadBuffer is the read buffer of a multiplexed connection: a read can bring the
	// replies of many requests.
	pipelineReadBuffer = 32 << 10

	// muxSlotBits is the number of low bits of a request id that name its slot; the bits above
	// are the slot's generation.
	muxSlotBits = 8
	muxSlotMask = 1<<muxSlotBits - 1
	muxGenMask  = 1<<(32-muxSlotBits) - 1
	// maxMuxDepth is the most slots a connection's table can have.
	maxMuxDepth = 1 << muxSlotBits
)

// A slot's index fits in its bits (and in the uint8 of the free list).
var _ [maxMuxDepth - pipelineDepth]struct{}

// errRoleLost interrupts a read or write of a multiplexed connection whose caller left.
var errRoleLost = errors.New("peer: caller left its connection")

// errFraming1 tells a pipelining caller that its peer speaks framing 1 only: the request goes one
// per connection.
var errFraming1 = errors.New("peer: the peer speaks framing 1 only")

// muxCall is one request on a multiplexed connection.
type muxCall struct {
	ch chan struct{} // capacity 1: "look at your state" (sent with the connection's lock held)

	// Set before the call is queued, read-only after.
	op          Op
	nkeys       int
	ctx         context.Context
	deadline    time.Time
	ctxDeadline bool
	attempt     int
	id          uint32 // slot and generation (see "Ids")
	seq         uint64 // position in the connection's frames

	// Guarded by the connection's mu.
	final   bool // the outcome below is set: the caller returns (or has returned)
	popped  bool // out of the connection's table: nobody refers to it but its caller
	resp    Response
	results []Result
	err     error
	retry   bool   // the request may be sent again on another connection
	dst     []byte // GetInto: memory lent for the value (set before queueing)
}

var muxCallPool = sync.Pool{New: func() any { return &muxCall{ch: make(chan struct{}, 1)} }}

func (c *muxCall) signal() {
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// muxClientConn is one multiplexed connection of a Client.
type muxClientConn struct {
	p  *pool
	nc net.Conn
	br *bufio.Reader // reads through the muxClientConn (Read); used by the reader role's holder only

	inflight atomic.Int32 // calls given this connection and not out of its table yet
	lastUsed atomic.Int64 // unix nanoseconds of the last call given this connection
	dead     atomic.Bool  // closed (set with mu held)
	draining atomic.Bool  // takes no new call; closed when no call waits (set with mu held)

	sent, recv, sharedWrites, sharedReads atomic.Int64

	mu sync.Mutex
	// The ids in flight (see "Ids").
	calls  []*muxCall // by slot: the call whose id is in flight; nil for a free slot
	gens   []uint32   // by slot: the generation of its last id
	free   []uint8    // the free slots
	n      int        // ids in flight
	live   int        // calls in flight that are not final: their callers wait
	seq    uint64     // of the last call queued
	wseq   uint64     // of the last call whose frame was handed to a write
	answer bool       // a reply has been read: the connection is not new
	// Writing.
	writing bool     // a write is in progress (by writer, or a goroutine finishing one)
	writer  *muxCall // the call writing; nil while nobody or a goroutine writes
	wbuf    []byte   // frames not handed to a write yet
	wspare  []byte   // the buffer of the write in progress, for the next frames after it
	// Reading.
	reader *muxCall   // holds the reader role (reading, or signalled to read); nil: free
	rs     replyState // the frame being read; used by the reader role's holder only
	// The call whose reply rs is reading (past its prefix), and its op and key count, copied
	// under mu (a call ended by breakLocked may be recycled): the role's holder's.
	cur     *muxCall
	curOp   Op
	curKeys int
	// Deadlines armed on nc; a poisoned one is in the past, set to interrupt its holder.
	rArmed, wArmed   time.Time
	rPoison, wPoison bool
	wakePool         bool // room was made: wake the pool's waiters once mu is released
}

// pipeRoundTrip sends r on a multiplexed connection and waits for its reply; to a peer that speaks
// framing 1 only, it sends r one request per connection.
func (p *pool) pipeRoundTrip(r *request) (Response, error) {
	if r.ctx.Err() != nil {
		return Response{}, p.netError(r, nil, "before sending")
	}
	for attempt := 0; ; attempt++ {
		pc, err := p.pickMux(r)
		if err == errFraming1 {
			return p.roundTrip(r)
		}
		if err != nil {
			return Response{}, err
		}
		resp, retry, err := pc.roundTrip(r, attempt)
		if err == nil {
			return resp, nil
		}
		if retry && r.ctx.Err() == nil && time.Now().Before(r.deadline) && !p.c.closed.Load() {
			p.c.retries.Add(1)
			continue
		}
		return Response{}, err
	}
}

// pickMux returns the connection with the fewest calls in flight (counting r's, which the caller
// must queue or give back), dialing one while there are fewer than the client's multiplexed
// connections per peer and none is idle; when every connection is full, it waits for room within
// r's deadline and context. It returns errFraming1 when the peer speaks framing 1 only.
func (p *pool) pickMux(r *request) (*muxClientConn, error) {
	c := p.c
	var timer *time.Timer
	p.mu.Lock()
	for waited := false; ; {
		if p.closed || c.closed.Load() {
			p.mu.Unlock()
			return nil, closedError(p.addr, r.Op)
		}
		if p.framing1Until != 0 {
			if r.now.UnixNano() < p.framing1Until {
				p.mu.Unlock()
				return nil, errFraming1
			}
			p.framing1Until = 0 // time to ask again
		}
		var best *muxClientConn
		bestN := int32(0)
		count := p.muxDialing
		k := 0
		for _, pc := range p.muxes {
			if pc.dead.Load() {
				p.forgetMuxLocked(pc)
				continue
			}
			p.muxes[k] = pc
			k++
			if pc.draining.Load() {
				continue
			}
			count++
			if n := pc.inflight.Load(); n < int32(c.pipeDepth) && (best == nil || n < bestN) {
				best, bestN = pc, n
			}
		}
		clear(p.muxes[k:])
		p.muxes = p.muxes[:k]
		if best != nil && (bestN == 0 || count >= c.pipeConns) {
			best.inflight.Add(1)
			best.lastUsed.Store(r.now.UnixNano())
			p.mu.Unlock()
			return best, nil
		}
		if count < c.pipeConns {
			p.muxDialing++
			p.mu.Unlock()
			nc, proto, err := p.connect(r, true)
			p.mu.Lock()
			p.muxDialing--
			p.wakeMuxWaitersLocked() // they may share the new connection, or dial themselves
			if err != nil {
				p.mu.Unlock()
				return nil, err
			}
			if p.closed || c.closed.Load() {
				p.mu.Unlock()
				nc.Close()
				return nil, closedError(p.addr, r.Op)
			}
			if proto != UpgradeMultiplexed {
				// An older peer: this connection carries one request at a time, and so do the
				// next ones for a while.
				now := time.Now()
				p.framing1Until = now.Add(c.idleConnTimeout).UnixNano()
				c.framing1Fallbacks.Add(1)
				p.adoptLocked(nc, now)
				p.mu.Unlock()
				return nil, errFraming1
			}
			pc := newMuxClientConn(p, nc)
			c.openConns.Add(1)
			c.muxConns.Add(1)
			p.muxes = append(p.muxes, pc)
			pc.inflight.Add(1)
			pc.lastUsed.Store(r.now.UnixNano())
			p.mu.Unlock()
			return pc, nil
		}
		// Every connection is full: wait for room.
		if !waited {
			waited = true
			c.waits.Add(1)
			timer = time.NewTimer(time.Until(r.deadline))
			defer timer.Stop()
		}
		w := make(chan struct{}, 1)
		p.muxWaiters = append(p.muxWaiters, w)
		p.mu.Unlock()
		var err error
		select {
		case <-w:
		case <-r.ctx.Done():
			err = p.netError(r, r.ctx.Err(), "waiting for room on a connection")
		case <-timer.C:
			err = p.netError(r, os.ErrDeadlineExceeded, "waiting for room on a connection")
		case <-c.done:
			err = p.netError(r, nil, "")
		}
		p.mu.Lock()
		if i := slices.Index(p.muxWaiters, w); i >= 0 {
			p.muxWaiters = slices.Delete(p.muxWaiters, i, i+1)
		}
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
}

// wakeMuxWaitersLocked wakes the requests waiting for room on a multiplexed connection; each
// looks again.
func (p *pool) wakeMuxWaitersLocked() {
	for _, w := range p.muxWaiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	clear(p.muxWaiters)
	p.muxWaiters = p.muxWaiters[:0]
}

// forgetMuxLocked adds the counters of a closed multiplexed connection to the pool's.
func (p *pool) forgetMuxLocked(pc *muxClientConn) {
	p.closedSent += pc.sent.Load()
	p.closedRecv += pc.recv.Load()
	p.closedSharedWrites += pc.sharedWrites.Load()
	p.closedSharedReads += pc.sharedReads.Load()
}

// pruneMuxesLocked closes the multiplexed connections on which no call has waited for longer than
// the idle timeout.
func (p *pool) pruneMuxesLocked(now time.Time) {
	for _, pc := range p.muxes {
		if now.UnixNano()-pc.lastUsed.Load() <= int64(p.c.idleConnTimeout) || pc.dead.Load() {
			continue
		}
		pc.mu.Lock()
		if pc.live == 0 {
			pc.breakLocked(net.ErrClosed, nil, nil, false, "")
		}
		pc.mu.Unlock()
	}
}

// closeMuxesLocked closes every multiplexed connection (Client.Close): the calls waiting on them
// fail with ErrUnavailable.
func (p *pool) closeMuxesLocked() {
	for _, pc := range p.muxes {
		pc.mu.Lock()
		pc.breakLocked(net.ErrClosed, nil, nil, false, "")
		pc.mu.Unlock()
	}
	p.wakeMuxWaitersLocked()
}

func newMuxClientConn(p *pool, nc net.Conn) *muxClientConn {
	depth := p.c.pipeDepth
	pc := &muxClientConn{
		p:     p,
		nc:    nc,
		calls: make([]*muxCall, depth),
		gens:  make([]uint32, depth),
		free:  make([]uint8, depth),
		wbuf:  make([]byte, 0, 4<<10),
	}
	for i := range pc.free {
		pc.free[i] = uint8(depth - 1 - i) // slot 0 is taken first
	}
	pc.br = bufio.NewReaderSize(pc, pipelineReadBuffer)
	// The deadlines armed are unknown (the handshake's, maybe poisoned by the end of its
	// context): zero makes the first call set its own.
	return pc
}

// unlock releases mu, and then wakes the pool's waiters if room was made.
func (pc *muxClientConn) unlock() {
	wake := pc.wakePool
	pc.wakePool = false
	pc.mu.Unlock()
	if wake {
		p := pc.p
		p.mu.Lock()
		p.wakeMuxWaitersLocked()
		p.mu.Unlock()
	}
}

// takeIDLocked puts c in a free slot and gives it the slot's next id.
func (pc *muxClientConn) takeIDLocked(c *muxCall) {
	k := len(pc.free) - 1
	slot := pc.free[k]
	pc.free = pc.free[:k]
	g := (pc.gens[slot] + 1) & muxGenMask
	pc.gens[slot] = g
	c.id = g<<muxSlotBits | uint32(slot)
	pc.calls[slot] = c
	pc.n++
}

// lookupLocked returns the call in flight whose id is id, or nil.
func (pc *muxClientConn) lookupLocked(id uint32) *muxCall {
	if slot := int(id & muxSlotMask); slot < len(pc.calls) {
		if c := pc.calls[slot]; c != nil && c.id == id {
			return c
		}
	}
	return nil
}

// releaseIDLocked frees the slot of c, whose reply has been read.
func (pc *muxClientConn) releaseIDLocked(c *muxCall) {
	slot := c.id & muxSlotMask
	pc.calls[slot] = nil
	pc.free = append(pc.free, uint8(slot))
	pc.n--
	c.popped = true
	if pc.inflight.Add(-1) == int32(pc.p.c.pipeDepth-1) {
		pc.wakePool = true
	}
}

// roundTrip queues r (whose place pickMux counted) and waits for its outcome: the reply, an
// error, or (retry) an invitation to send it again on another connection.
func (pc *muxClientConn) roundTrip(r *request, attempt int) (Response, bool, error) {
	p := pc.p
	c := muxCallPool.Get().(*muxCall)
	c.op, c.nkeys, c.ctx, c.deadline, c.ctxDeadline, c.attempt = r.Op, len(r.Keys), r.ctx, r.deadline, r.ctxDeadline, attempt
	c.dst = r.dst
	pc.mu.Lock()
	if pc.dead.Load() || pc.draining.Load() {
		// Lost the race with the end of the connection: never written.
		if pc.inflight.Add(-1) == int32(p.c.pipeDepth-1) {
			pc.wakePool = true
		}
		pc.unlock()
		*c = muxCall{ch: c.ch}
		muxCallPool.Put(c)
		return Response{}, attempt < 2, p.netError(r, net.ErrClosed, "sending the request")
	}
	pc.queueLocked(c, r)
	var stop func() bool
	if r.ctx.Done() != nil {
		stop = context.AfterFunc(r.ctx, func() { pc.interrupt(c) })
	}
	if !pc.writing {
		pc.writing, pc.writer = true, c
		if pc.live > 1 {
			// Other requests are in flight: their callers, woken with their replies, may be
			// about to send the next ones. Let them run first, so their frames join this write.
			// A lone request goes out at once.
			pc.unlock()
			runtime.Gosched()
			pc.mu.Lock()
		}
		pc.flushLocked(c)
	}
	for !c.final {
		if pc.dead.Load() {
			// Cannot happen: breaking the connection ends every call in flight on it.
			pc.finishLocked(c, p.netErr(c.op, c.ctx, c.ctxDeadline, net.ErrClosed, "reading the reply"), false, c)
			break
		}
		if pc.reader == nil && pc.writer != c {
			pc.reader = c
		}
		if pc.reader == c {
			pc.readLocked(c)
			continue
		}
		pc.unlock()
		<-c.ch
		pc.mu.Lock()
	}
	if pc.reader == c {
		pc.reader = nil
	}
	pc.passRoleLocked()
	pc.closeIfDrainedLocked()
	resp, results, err, retry, recycle := c.resp, c.results, c.err, c.retry, c.popped
	pc.unlock()
	if stop != nil && !stop() {
		recycle = false // interrupt may still look at c
	}
	if recycle {
		*c = muxCall{ch: c.ch}
		select {
		case <-c.ch:
		default:
		}
		muxCallPool.Put(c)
	}
	r.results = results
	return resp, retry, err
}

// queueLocked gives c an id, appends r's frame to the pending ones, and arms the deadlines no
// later than c's.
func (pc *muxClientConn) queueLocked(c *muxCall, r *request) {
	pc.takeIDLocked(c)
	start := len(pc.wbuf)
	b := appendMuxPrefix(pc.wbuf, 0, c.id)
	b = appendRequestHead(b, &r.Request)
	if r.Op == OpSet {
		// Copied, even when large: the caller may leave (and reuse the value's memory) before
		// the frame is written.
		b = append(b, r.Value.Data...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-muxPrefixLen))
	pc.wbuf = b
	pc.seq++
	c.seq = pc.seq
	pc.live++
	// A deadline in the past that is not a poison was left by calls that are gone: replace it
	// now rather than let the next read or write fail first.
	if !pc.rPoison && (pc.rArmed.IsZero() || c.deadline.Before(pc.rArmed) || pc.rArmed.Before(r.now)) {
		if pc.nc.SetReadDeadline(c.deadline) == nil {
			pc.rArmed = c.deadline
		}
	}
	if !pc.wPoison && (pc.wArmed.IsZero() || c.deadline.Before(pc.wArmed) || pc.wArmed.Before(r.now)) {
		if pc.nc.SetWriteDeadline(c.deadline) == nil {
			pc.wArmed = c.deadline
		}
	}
}

// flushLocked writes the pending frames as the connection's writer, while there are some. self
// is the call writing, nil for a goroutine finishing the write of a call that left. It returns
// with mu held, having given up the writer's part (unless a goroutine took it over).
func (pc *muxClientConn) flushLocked(self *muxCall) {
	for !pc.dead.Load() && pc.wseq != pc.seq {
		if frames := pc.seq - pc.wseq; frames > 1 {
			pc.sharedWrites.Add(int64(frames))
		}
		pc.wseq = pc.seq
		buf := pc.wbuf
		pc.wbuf, pc.wspare = pc.wspare[:0], nil
		pc.unlock()
		err := pc.writeOut(self, buf, buf)
		pc.mu.Lock()
		if errors.Is(err, errRoleLost) {
			return // a goroutine finishes the write and is the writer now
		}
		if err != nil {
			pc.breakLocked(err, nil, nil, false, "sending the request")
			break
		}
		pc.wroteLocked(buf)
	}
	pc.writing, pc.writer = false, nil
}

// wroteLocked counts a complete write and keeps its buffer for a later one.
func (pc *muxClientConn) wroteLocked(buf []byte) {
	pc.sent.Add(int64(len(buf)))
	if cap(buf) <= keepBuffer && pc.wspare == nil {
		pc.wspare = buf[:0]
	}
}

// writeOut writes rest, the unwritten end of buf, through deadlines that pass before those of
// the calls waiting. When self, the writer, must leave in the middle (its context ended or its
// deadline passed while the write is blocked), a goroutine finishes the write and writeOut
// returns errRoleLost.
func (pc *muxClientConn) writeOut(self *muxCall, buf, rest []byte) error {
	for {
		n, err := pc.nc.Write(rest)
		rest = rest[n:]
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		pc.mu.Lock()
		if pc.dead.Load() {
			pc.unlock()
			return err
		}
		pc.expireLocked(time.Now(), self)
		if self != nil && !self.final && self.ctx.Err() != nil {
			pc.finishLocked(self, pc.p.netErr(self.op, self.ctx, self.ctxDeadline, nil, "sending the request"), false, self)
		}
		pc.closeIfDrainedLocked()
		if pc.dead.Load() || pc.live == 0 {
			pc.unlock()
			return err // nobody waits for these bytes: the connection is closed
		}
		if self != nil && self.final {
			pc.writer = nil
			pc.unlock()
			go pc.finishWrite(buf, rest)
			return errRoleLost
		}
		d := pc.earliestLocked()
		if e := pc.nc.SetWriteDeadline(d); e != nil {
			pc.unlock()
			return e
		}
		pc.wArmed, pc.wPoison = d, false
		pc.unlock()
	}
}

// finishWrite writes the rest of a write whose writer left, then what is pending, and exits.
func (pc *muxClientConn) finishWrite(buf, rest []byte) {
	err := pc.writeOut(nil, buf, rest)
	pc.mu.Lock()
	if err != nil {
		pc.breakLocked(err, nil, nil, false, "sending the request")
		pc.writing = false
	} else {
		pc.wroteLocked(buf)
		pc.flushLocked(nil)
	}
	pc.passRoleLocked()
	pc.unlock()
}

// Read reads from nc for br, for the holder of the reader role, through deadlines that pass
// before those of the calls waiting; it returns errRoleLost when the reader's own call ended.
func (pc *muxClientConn) Read(b []byte) (int, error) {
	for {
		n, err := pc.nc.Read(b)
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		pc.mu.Lock()
		if pc.dead.Load() {
			pc.unlock()
			return 0, err
		}
		self := pc.reader
		pc.expireLocked(time.Now(), self)
		if self != nil && !self.final && self.ctx.Err() != nil {
			pc.finishLocked(self, pc.p.netErr(self.op, self.ctx, self.ctxDeadline, nil, "reading the reply"), false, self)
		}
		if self == nil || self.final {
			pc.closeIfDrainedLocked()
			pc.unlock()
			return 0, errRoleLost
		}
		d := pc.earliestLocked()
		if e := pc.nc.SetReadDeadline(d); e != nil {
			pc.unlock()
			return 0, e
		}
		pc.rArmed, pc.rPoison = d, false
		pc.unlock()
	}
}

// readFrame reads one reply frame, or resumes the one in progress, as the holder of the reader
// role, without mu. It returns the call the frame answers (nil for an id not in flight, with an
// *Error) and what readReply returns; pc.rs.stage tells how far it got.
func (pc *muxClientConn) readFrame() (*muxCall, Response, error) {
	p := pc.p
	st := &pc.rs
	if st.stage == replyPrefix {
		hdr, err := pc.br.Peek(muxPrefixLen)
		if err != nil {
			st.read = len(hdr)
			return nil, Response{}, err
		}
		n, id := parseMuxPrefix(hdr)
		_, _ = pc.br.Discard(muxPrefixLen)
		pc.mu.Lock()
		h := pc.lookupLocked(id)
		discard := h != nil && h.final // abandoned: skip its reply unparsed
		if h != nil {
			pc.cur, pc.curOp, pc.curKeys = h, h.op, h.nkeys
		}
		pc.mu.Unlock()
		if h == nil {
			st.stage = replyBad
			return nil, Response{}, &Error{Peer: p.addr, Err: ErrProtocol,
				Msg: fmt.Sprintf("reply with id %#x, which is not that of a request in flight on the connection", id)}
		}
		if err := p.beginReply(st, n, pc.curOp, discard); err != nil {
			return h, Response{}, err
		}
		st.dst = h.dst
	}
	resp, err := p.continueReply(pc.br, pc.curOp, pc.curKeys, st)
	return pc.cur, resp, err
}

// readLocked reads replies as the holder of the reader role, handing each to its call, until c's
// own is in (and then the replies already complete in the read buffer, which cost no system
// call) or c ended; then it passes the role on. mu is held on entry and on return.
func (pc *muxClientConn) readLocked(c *muxCall) {
	for !pc.dead.Load() && (!c.final || c.popped && pc.nextBufferedLocked()) {
		pc.unlock()
		h, resp, err := pc.readFrame()
		pc.mu.Lock()
		if pc.dead.Load() {
			return // whoever closed it ended the calls
		}
		st := &pc.rs
		if st.stage != replyDone {
			if errors.Is(err, errRoleLost) {
				break // c left; st and cur keep the frame's progress for the next reader
			}
			if pe, ok := err.(*Error); ok {
				pc.breakLocked(nil, pe, h, false, "")
			} else if st.stage == replyPrefix {
				pc.breakLocked(err, nil, nil, st.read == 0, "reading the reply")
			} else {
				pc.breakLocked(midReply(err, st.read, st.n), nil, nil, false, "reading the reply")
			}
			return
		}
		pc.recv.Add(int64(st.n) + muxPrefixLen)
		results := st.results
		*st = replyState{}
		pc.cur = nil
		pc.answer = true
		pc.releaseIDLocked(h)
		if !h.final {
			h.final, h.resp, h.results, h.err = true, resp, results, err
			pc.live--
			if h != c {
				pc.sharedReads.Add(1)
				h.signal() // a writer whose reply came goes on writing (if it is) undisturbed
			}
		}
	}
	if pc.reader == c {
		pc.reader = nil
		pc.passRoleLocked()
	}
}

// nextBufferedLocked reports whether the read buffer holds the whole next reply frame, for the
// holder of the reader role.
func (pc *muxClientConn) nextBufferedLocked() bool {
	if pc.n == 0 || pc.rs.stage != replyPrefix {
		return false
	}
	b := pc.br.Buffered()
	if b < muxPrefixLen {
		return false
	}
	hdr, _ := pc.br.Peek(muxPrefixLen)
	n, _ := parseMuxPrefix(hdr)
	return b-muxPrefixLen >= n
}

// passRoleLocked gives a free reader role to a call waiting that is not writing.
func (pc *muxClientConn) passRoleLocked() {
	if pc.reader != nil || pc.dead.Load() || pc.live == 0 {
		return
	}
	for _, c := range pc.calls {
		if c != nil && !c.final && c != pc.writer {
			pc.reader = c
			c.signal()
			return
		}
	}
}

// finishLocked ends c without its reply (it is abandoned: its id stays in flight and its reply
// will be dropped). c is signalled unless it is self, the call of the goroutine doing it; if c
// holds the reader role or writes, its read or write is interrupted. A connection on which more
// than half of the slots hold abandoned ids takes no new call.
func (pc *muxClientConn) finishLocked(c *muxCall, err error, retry bool, self *muxCall) {
	if c.final {
		return
	}
	c.final, c.err, c.retry = true, err, retry
	pc.live--
	if pc.n-pc.live > len(pc.calls)/2 && !pc.draining.Load() {
		pc.draining.Store(true)
		pc.wakePool = true // it no longer counts among the peer's connections
	}
	if c == self {
		return
	}
	if c == pc.reader && !pc.rPoison {
		_ = pc.nc.SetReadDeadline(aLongTimeAgo)
		pc.rArmed, pc.rPoison = aLongTimeAgo, true
	}
	if c == pc.writer && !pc.wPoison {
		_ = pc.nc.SetWriteDeadline(aLongTimeAgo)
		pc.wArmed, pc.wPoison = aLongTimeAgo, true
	}
	c.signal()
}

// interrupt ends c when its context ends (context.AfterFunc).
func (pc *muxClientConn) interrupt(c *muxCall) {
	pc.mu.Lock()
	if !c.final && !pc.dead.Load() {
		if errors.Is(c.ctx.Err(), context.DeadlineExceeded) {
			// The request's deadline: as when the socket's deadline passes.
			pc.expireLocked(time.Now(), nil)
		}
		pc.finishLocked(c, pc.p.netErr(c.op, c.ctx, c.ctxDeadline, nil, "waiting for the reply"), false, nil)
		pc.closeIfDrainedLocked()
	}
	pc.unlock()
}

// expireLocked ends the calls whose deadline passed.
func (pc *muxClientConn) expireLocked(now time.Time, self *muxCall) {
	p := pc.p
	for _, c := range pc.calls {
		if c != nil && !c.final && !now.Before(c.deadline) {
			pc.finishLocked(c, p.netErr(c.op, c.ctx, c.ctxDeadline, os.ErrDeadlineExceeded, "waiting for the reply"), false, self)
		}
	}
}

// earliestLocked returns the earliest deadline of the calls waiting (zero if none).
func (pc *muxClientConn) earliestLocked() time.Time {
	var d time.Time
	for _, c := range pc.calls {
		if c != nil && !c.final && (d.IsZero() || c.deadline.Before(d)) {
			d = c.deadline
		}
	}
	return d
}

// closeIfDrainedLocked closes a draining connection on which no call waits anymore.
func (pc *muxClientConn) closeIfDrainedLocked() {
	if pc.live == 0 && pc.draining.Load() && !pc.dead.Load() {
		pc.breakLocked(net.ErrClosed, nil, nil, false, "")
	}
}

// breakLocked closes the connection and ends every call waiting on it: with a copy of perr when
// the peer sent malformed bytes (bad's reply, or a reply with an unknown id when bad is nil),
// otherwise with ErrUnavailable wrapping cause. A call whose frame was never written may be sent
// again (twice at most); so may every call, once, when the peer closed a connection that had
// answered before and no byte of a next reply had arrived (unstarted), as the one-request client
// does with a stale connection.
func (pc *muxClientConn) breakLocked(cause error, perr *Error, bad *muxCall, unstarted bool, what string) {
	if pc.dead.Load() {
		return
	}
	pc.dead.Store(true)
	_ = pc.nc.Close()
	p := pc.p
	p.c.openConns.Add(-1)
	p.c.muxConns.Add(-1)
	stale := pc.answer && cause != nil && unstarted && isClosedByPeer(cause)
	for slot, c := range pc.calls {
		if c == nil {
			continue
		}
		pc.calls[slot] = nil
		c.popped = true
		if c.final {
			continue
		}
		var err error
		if perr != nil {
			e := *perr
			e.Op = c.op
			if bad != nil && c != bad {
				e.Msg = "connection broken by a bad reply to another request: " + e.Msg
			}
			err = &e
		} else {
			err = p.netErr(c.op, c.ctx, c.ctxDeadline, cause, what)
		}
		retry := false
		switch {
		case c == pc.cur:
			// Its reply was being read, maybe into memory its caller lent (GetInto): a reader
			// still copying bytes into it must not race a new attempt's, so it ends here.
		case c.seq > pc.wseq:
			retry = c.attempt < 2
		case stale:
			retry = c.attempt == 0
		}
		c.final, c.err, c.retry = true, err, retry
		c.signal()
	}
	pc.inflight.Add(-int32(pc.n))
	pc.n, pc.live = 0, 0
	pc.free = pc.free[:0]
	pc.reader = nil
	pc.wakePool = true
}
