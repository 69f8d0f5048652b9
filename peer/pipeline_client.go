package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Pipelining (WithPipelining): a client's requests to a peer share a few connections, each with
// many requests in flight.
//
// Writes. A caller appends its frame to the connection's pending buffer. If no write is in
// progress it becomes the writer: it writes all that is pending in one write, and again while
// more arrived meanwhile; otherwise its frame goes out with the next write. Frames are queued and
// written in the order of the connection's queue of calls, which is the order of the replies. A
// writer that finds other requests in flight on the connection yields the processor once before
// it takes the pending frames: the callers the reader has just handed their replies to are
// runnable, and most send their next request at once, so their frames join this write (on two
// cores, 16 callers: 0.3 writes per request instead of 0.9). A lone request is written at once.
//
// Reads (leader/follower). The server answers in order. One caller at a time holds the reader
// role: it reads what the socket has (one read may bring many replies), parses each reply and
// hands it to the call at the head of the queue (a value is read into new memory of exactly its
// size, as in the one-request exchange, so its caller owns it), until its own reply is in, and
// then the replies already whole in its read buffer (they cost no system call); then it passes
// the role to the first call still waiting, which reads its own reply and the ones before it. The
// writer is never handed the role while it writes (a writer that stopped reading while the peer
// blocks on unread replies would deadlock with it); a free role is taken by the next call that
// waits. The frame being read survives a change of reader (replyState), so a reader may leave in
// the middle of a reply.
//
// Deadlines. The socket's read and write deadlines are armed no later than the earliest deadline
// of the calls still waiting (lazily: a new call moves them only to an earlier time, and a reader
// or writer that hits a deadline before any waiting call's deadline moves it on and goes on, as
// the one-request client does). When a deadline passes, the calls whose deadline passed fail
// with a timeout; the others keep waiting. If the first call still waiting is among them (every
// reply before its own has been read: the peer is late with it), the connection is drained:
// it takes no new call, the calls queued behind that one are sent again on another connection
// (once), and it is closed when no call waits on it anymore. Head-of-line blocking means the
// replies behind a late one cannot arrive before it; sending those requests again elsewhere
// keeps one slow or lost request from failing all the requests that share its connection, where
// waiting would fail them at their own deadlines if the late reply never comes.
//
// Leaving early. A call whose context ends (context.AfterFunc) or whose deadline passes returns
// at once with ErrUnavailable; it stays in the queue, abandoned, and its reply is read and dropped
// when it comes. A reader that leaves passes the role on; a writer that leaves in the middle of a
// write blocked by the peer hands the rest of it to a goroutine that finishes it (for the calls
// still waiting) and exits.
//
// Breaking. A connection that fails (EOF, reset, malformed reply, a frame over the limits, a
// version mismatch, a write error) is closed and every call waiting on it fails with the error
// the one-request exchange would report; a call whose frame was never written, or, on a
// connection that had answered before, that got no byte of its reply from a peer that closed the
// connection, is sent again on a new connection.

const (
	// pipelineDepth bounds the requests in flight on one pipelined connection (abandoned ones
	// included, until their replies are read). Beyond it, callers use another of the
	// connections or wait.
	pipelineDepth = 64
	// pipelineReadBuffer is the read buffer of a pipelined connection: a read can bring the
	// replies of many requests.
	pipelineReadBuffer = 32 << 10
)

// errRoleLost interrupts a read or write of a pipelined connection whose caller left.
var errRoleLost = errors.New("peer: caller left its connection")

// errPeerLate is the cause of the failure of a request moved off a connection on which the peer
// was late with an earlier reply, when it cannot be sent again.
var errPeerLate = errors.New("the peer is late with an earlier reply on the connection")

// pcall is one request on a pipelined connection.
type pcall struct {
	ch chan struct{} // capacity 1: "look at your state" (sent with the connection's lock held)

	// Set before the call is queued, read-only after.
	op          Op
	nkeys       int
	ctx         context.Context
	deadline    time.Time
	ctxDeadline bool
	attempt     int
	seq         uint64 // position in the connection's frames

	// Guarded by the connection's mu.
	final   bool // the outcome below is set: the caller returns (or has returned)
	popped  bool // out of the connection's queue: nobody refers to it but its caller
	resp    Response
	results []Result
	err     error
	retry   bool // the request may be sent again on another connection
}

var pcallPool = sync.Pool{New: func() any { return &pcall{ch: make(chan struct{}, 1)} }}

func (c *pcall) signal() {
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// pipeConn is one pipelined connection.
type pipeConn struct {
	p  *pool
	nc net.Conn
	br *bufio.Reader // reads through the pipeConn (Read); used by the reader role's holder only

	inflight atomic.Int32 // calls given this connection and not out of its queue yet
	lastUsed atomic.Int64 // unix nanoseconds of the last call given this connection
	dead     atomic.Bool  // closed (set with mu held)
	draining atomic.Bool  // takes no new call; closed when no call waits (set with mu held)

	sent, recv, sharedWrites, sharedReads atomic.Int64

	mu sync.Mutex
	// The queue: calls whose replies are due, in the order of their frames (a ring).
	ring   []*pcall
	rh, rn int
	live   int    // calls in the queue that are not final
	seq    uint64 // of the last call queued
	wseq   uint64 // of the last call whose frame was handed to a write
	answer bool   // a reply has been read: the connection is not new
	// Writing.
	writing bool   // a write is in progress (by writer, or a goroutine finishing one)
	writer  *pcall // the call writing; nil while nobody or a goroutine writes
	wbuf    []byte // frames not handed to a write yet
	wspare  []byte // the buffer of the write in progress, for the next frames after it
	// Reading.
	reader *pcall     // holds the reader role (reading, or signalled to read); nil: free
	rs     replyState // the frame being read; used by the reader role's holder only
	// Deadlines armed on nc; a poisoned one is in the past, set to interrupt its holder.
	rArmed, wArmed   time.Time
	rPoison, wPoison bool
	wakePool         bool // room was made: wake the pool's waiters once mu is released
}

// pipeRoundTrip sends r on a pipelined connection and waits for its reply.
func (p *pool) pipeRoundTrip(r *request) (Response, error) {
	if r.ctx.Err() != nil {
		return Response{}, p.netError(r, nil, "before sending")
	}
	for attempt := 0; ; attempt++ {
		pc, err := p.pickPipe(r)
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

// pickPipe returns the connection with the fewest calls in flight (counting r's, which the
// caller must queue or give back), dialing one while there are fewer than the client's
// pipelined connections per peer and none is idle; when every connection is full, it waits for
// room within r's deadline and context.
func (p *pool) pickPipe(r *request) (*pipeConn, error) {
	c := p.c
	var timer *time.Timer
	p.mu.Lock()
	for waited := false; ; {
		if p.closed || c.closed.Load() {
			p.mu.Unlock()
			return nil, &Error{Peer: p.addr, Op: r.Op, Err: ErrClosed}
		}
		var best *pipeConn
		bestN := int32(0)
		count := p.dialing
		k := 0
		for _, pc := range p.pipes {
			if pc.dead.Load() {
				p.forgetPipeLocked(pc)
				continue
			}
			p.pipes[k] = pc
			k++
			if pc.draining.Load() {
				continue
			}
			count++
			if n := pc.inflight.Load(); n < int32(c.pipeDepth) && (best == nil || n < bestN) {
				best, bestN = pc, n
			}
		}
		clear(p.pipes[k:])
		p.pipes = p.pipes[:k]
		if best != nil && (bestN == 0 || count >= c.pipeConns) {
			best.inflight.Add(1)
			best.lastUsed.Store(r.now.UnixNano())
			p.mu.Unlock()
			return best, nil
		}
		if count < c.pipeConns {
			p.dialing++
			p.mu.Unlock()
			nc, err := p.connect(r)
			p.mu.Lock()
			p.dialing--
			p.wakePipeWaitersLocked() // they may share the new connection, or dial themselves
			if err != nil {
				p.mu.Unlock()
				return nil, err
			}
			if p.closed || c.closed.Load() {
				p.mu.Unlock()
				nc.Close()
				return nil, &Error{Peer: p.addr, Op: r.Op, Err: ErrClosed}
			}
			pc := newPipeConn(p, nc)
			c.openConns.Add(1)
			p.pipes = append(p.pipes, pc)
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
		p.pipeWaiters = append(p.pipeWaiters, w)
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
		if i := slices.Index(p.pipeWaiters, w); i >= 0 {
			p.pipeWaiters = slices.Delete(p.pipeWaiters, i, i+1)
		}
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
}

// wakePipeWaitersLocked wakes the requests waiting for room on a pipelined connection; each
// looks again.
func (p *pool) wakePipeWaitersLocked() {
	for _, w := range p.pipeWaiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	clear(p.pipeWaiters)
	p.pipeWaiters = p.pipeWaiters[:0]
}

// forgetPipeLocked adds the counters of a closed pipelined connection to the pool's.
func (p *pool) forgetPipeLocked(pc *pipeConn) {
	p.closedSent += pc.sent.Load()
	p.closedRecv += pc.recv.Load()
	p.closedSharedWrites += pc.sharedWrites.Load()
	p.closedSharedReads += pc.sharedReads.Load()
}

// prunePipesLocked closes the pipelined connections on which no call has waited for longer than
// the idle timeout.
func (p *pool) prunePipesLocked(now time.Time) {
	for _, pc := range p.pipes {
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

// closePipesLocked closes every pipelined connection (Client.Close): the calls waiting on them
// fail with ErrClosed.
func (p *pool) closePipesLocked() {
	for _, pc := range p.pipes {
		pc.mu.Lock()
		pc.breakLocked(net.ErrClosed, nil, nil, false, "")
		pc.mu.Unlock()
	}
	p.wakePipeWaitersLocked()
}

func newPipeConn(p *pool, nc net.Conn) *pipeConn {
	pc := &pipeConn{
		p:    p,
		nc:   nc,
		ring: make([]*pcall, p.c.pipeDepth),
		wbuf: make([]byte, 0, 4<<10),
	}
	pc.br = bufio.NewReaderSize(pc, pipelineReadBuffer)
	// The deadlines armed are unknown (the handshake's, maybe poisoned by the end of its
	// context): zero makes the first call set its own.
	return pc
}

// unlock releases mu, and then wakes the pool's waiters if room was made.
func (pc *pipeConn) unlock() {
	wake := pc.wakePool
	pc.wakePool = false
	pc.mu.Unlock()
	if wake {
		p := pc.p
		p.mu.Lock()
		p.wakePipeWaitersLocked()
		p.mu.Unlock()
	}
}

// at returns the i-th call of the queue.
func (pc *pipeConn) at(i int) *pcall { return pc.ring[(pc.rh+i)%len(pc.ring)] }

// roundTrip queues r (whose slot pickPipe counted) and waits for its outcome: the reply, an
// error, or (retry) an invitation to send it again on another connection.
func (pc *pipeConn) roundTrip(r *request, attempt int) (Response, bool, error) {
	p := pc.p
	c := pcallPool.Get().(*pcall)
	c.op, c.nkeys, c.ctx, c.deadline, c.ctxDeadline, c.attempt = r.Op, len(r.Keys), r.ctx, r.deadline, r.ctxDeadline, attempt
	pc.mu.Lock()
	if pc.dead.Load() || pc.draining.Load() {
		// Lost the race with the end of the connection: never written.
		if pc.inflight.Add(-1) == int32(p.c.pipeDepth-1) {
			pc.wakePool = true
		}
		pc.unlock()
		*c = pcall{ch: c.ch}
		pcallPool.Put(c)
		return Response{}, attempt < 2, p.netError(r, net.ErrClosed, "sending the request")
	}
	pc.queueLocked(c, r)
	var stop func() bool
	if r.ctx.Done() != nil {
		stop = context.AfterFunc(r.ctx, func() { pc.interrupt(c) })
	}
	if !pc.writing {
		pc.writing, pc.writer = true, c
		if pc.rn > 1 {
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
			// Cannot happen: breaking the connection ends every call queued on it.
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
		*c = pcall{ch: c.ch}
		select {
		case <-c.ch:
		default:
		}
		pcallPool.Put(c)
	}
	r.results = results
	return resp, retry, err
}

// queueLocked appends r's frame to the pending ones and c to the queue, and arms the deadlines
// no later than c's.
func (pc *pipeConn) queueLocked(c *pcall, r *request) {
	start := len(pc.wbuf)
	b := append(pc.wbuf, 0, 0, 0, 0)
	b = appendRequestHead(b, &r.Request)
	if r.Op == OpSet {
		// Copied, even when large: the caller may leave (and reuse the value's memory) before
		// the frame is written.
		b = append(b, r.Value.Data...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-prefixLen))
	pc.wbuf = b
	pc.seq++
	c.seq = pc.seq
	pc.ring[(pc.rh+pc.rn)%len(pc.ring)] = c
	pc.rn++
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
func (pc *pipeConn) flushLocked(self *pcall) {
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
func (pc *pipeConn) wroteLocked(buf []byte) {
	pc.sent.Add(int64(len(buf)))
	if cap(buf) <= keepBuffer && pc.wspare == nil {
		pc.wspare = buf[:0]
	}
}

// writeOut writes rest, the unwritten end of buf, through deadlines that pass before those of
// the calls waiting. When self, the writer, must leave in the middle (its context ended or its
// deadline passed while the write is blocked), a goroutine finishes the write and writeOut
// returns errRoleLost.
func (pc *pipeConn) writeOut(self *pcall, buf, rest []byte) error {
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
func (pc *pipeConn) finishWrite(buf, rest []byte) {
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
func (pc *pipeConn) Read(b []byte) (int, error) {
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

// readLocked reads replies as the holder of the reader role, handing each to its call, until c's
// own is in (and then the replies already complete in the read buffer, which cost no system
// call) or c ended; then it passes the role on. mu is held on entry and on return.
func (pc *pipeConn) readLocked(c *pcall) {
	p := pc.p
	for !pc.dead.Load() && (!c.final || c.popped && pc.nextBufferedLocked()) {
		h := pc.at(0) // c is queued (or a buffered reply is due), so the queue is not empty
		op, nkeys, discard := h.op, h.nkeys, h.final
		pc.unlock()
		resp, err := p.readReply(pc.br, op, nkeys, discard, &pc.rs)
		pc.mu.Lock()
		if pc.dead.Load() {
			return // whoever closed it ended the calls
		}
		st := &pc.rs
		if st.stage != replyDone {
			if errors.Is(err, errRoleLost) {
				break // c left; st keeps the frame's progress for the next reader
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
		pc.recv.Add(int64(st.n) + prefixLen)
		results := st.results
		*st = replyState{}
		pc.answer = true
		pc.ring[pc.rh] = nil
		pc.rh = (pc.rh + 1) % len(pc.ring)
		pc.rn--
		if pc.inflight.Add(-1) == int32(p.c.pipeDepth-1) {
			pc.wakePool = true
		}
		h.popped = true
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
func (pc *pipeConn) nextBufferedLocked() bool {
	if pc.rn == 0 || pc.rs.stage != replyPrefix {
		return false
	}
	b := pc.br.Buffered()
	if b < prefixLen {
		return false
	}
	hdr, _ := pc.br.Peek(prefixLen)
	return b-prefixLen >= int(binary.BigEndian.Uint32(hdr))
}

// passRoleLocked gives a free reader role to the first call waiting that is not writing.
func (pc *pipeConn) passRoleLocked() {
	if pc.reader != nil || pc.dead.Load() {
		return
	}
	for i := range pc.rn {
		if c := pc.at(i); !c.final && c != pc.writer {
			pc.reader = c
			c.signal()
			return
		}
	}
}

// finishLocked ends c without its reply (it is abandoned: its reply will be dropped). c is
// signalled unless it is self, the call of the goroutine doing it; if c holds the reader role or
// writes, its read or write is interrupted.
func (pc *pipeConn) finishLocked(c *pcall, err error, retry bool, self *pcall) {
	if c.final {
		return
	}
	c.final, c.err, c.retry = true, err, retry
	pc.live--
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
func (pc *pipeConn) interrupt(c *pcall) {
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

// expireLocked ends the calls whose deadline passed. If the first call still waiting is among
// them, the peer is late with its reply: the connection is drained, and the calls waiting behind
// it (but the writer's) are sent again elsewhere, once.
func (pc *pipeConn) expireLocked(now time.Time, self *pcall) {
	p := pc.p
	first, late := true, false
	for i := range pc.rn {
		c := pc.at(i)
		if c.final {
			continue
		}
		if !now.Before(c.deadline) {
			late = late || first
			pc.finishLocked(c, p.netErr(c.op, c.ctx, c.ctxDeadline, os.ErrDeadlineExceeded, "waiting for the reply"), false, self)
			continue
		}
		first = false
		if late && c.attempt == 0 && c != pc.writer {
			pc.finishLocked(c, p.netErr(c.op, c.ctx, c.ctxDeadline, errPeerLate, "waiting for the reply"), true, self)
		}
	}
	if late && !pc.draining.Load() {
		pc.draining.Store(true)
		pc.wakePool = true // it no longer counts among the peer's connections
	}
}

// earliestLocked returns the earliest deadline of the calls waiting (zero if none).
func (pc *pipeConn) earliestLocked() time.Time {
	var d time.Time
	for i := range pc.rn {
		if c := pc.at(i); !c.final && (d.IsZero() || c.deadline.Before(d)) {
			d = c.deadline
		}
	}
	return d
}

// closeIfDrainedLocked closes a drained connection on which no call waits anymore.
func (pc *pipeConn) closeIfDrainedLocked() {
	if pc.live == 0 && pc.draining.Load() && !pc.dead.Load() {
		pc.breakLocked(net.ErrClosed, nil, nil, false, "")
	}
}

// breakLocked closes the connection and ends every call waiting on it: with a copy of perr when
// the peer sent malformed bytes (bad's reply), otherwise with ErrUnavailable wrapping cause. A
// call whose frame was never written may be sent again (twice at most); so may a call, once, that
// got no byte of its reply (headUnstarted, for the first) when the peer closed a connection that
// had answered before, as the one-request client does with a stale connection.
func (pc *pipeConn) breakLocked(cause error, perr *Error, bad *pcall, headUnstarted bool, what string) {
	if pc.dead.Load() {
		return
	}
	pc.dead.Store(true)
	_ = pc.nc.Close()
	p := pc.p
	p.c.openConns.Add(-1)
	stale := pc.answer && cause != nil && isClosedByPeer(cause)
	for i := range pc.rn {
		c := pc.at(i)
		pc.ring[(pc.rh+i)%len(pc.ring)] = nil
		c.popped = true
		if c.final {
			continue
		}
		var err error
		if perr != nil {
			e := *perr
			e.Op = c.op
			if c != bad {
				e.Msg = "connection broken by a bad reply to an earlier request: " + e.Msg
			}
			err = &e
		} else {
			err = p.netErr(c.op, c.ctx, c.ctxDeadline, cause, what)
		}
		retry := false
		if c.seq > pc.wseq {
			retry = c.attempt < 2
		} else if stale && (i > 0 || headUnstarted) {
			retry = c.attempt == 0
		}
		c.final, c.err, c.retry = true, err, retry
		c.signal()
	}
	pc.inflight.Add(-int32(pc.rn))
	pc.rh, pc.rn, pc.live = 0, 0, 0
	pc.reader = nil
	pc.wakePool = true
}
