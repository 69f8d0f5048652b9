package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// serverConn is a connection on the server side. Its goroutine answers at once a refusal, a Peek
// and a hit (GetInline), and serves other requests on goroutines of their own, at most
// MaxConnRequests at once. It writes only when no further request is whole in its read buffer, so
// the replies to the requests of one read go out together.
type serverConn struct {
	s       *Server
	nc      net.Conn
	br      *bufio.Reader
	ctx     context.Context
	rbuf    []byte       // a request frame longer than br's buffer
	scratch wire.Scratch // what one request lends the next: cache name, key list
	armedAt time.Time    // when the read deadline was last pushed
	st      connCounters
	slots   chan struct{} // one per request served on its own goroutine
	wg      sync.WaitGroup
	node    string // the client's claimed address, as authenticated
	stalled bool   // the read deadline is the stall timeout's: a frame has begun

	mu         sync.Mutex
	room       sync.Cond // on mu: held went down, or the connection broke
	held       int       // bytes of requests being served and of replies not written
	pending    int       // of which replies, and room reserved for them
	wbuf       []byte    // replies not handed to a write yet (of a large one, its head)
	large      []cut     // the values of large replies in wbuf not handed to a write yet
	writing    bool      // a goroutine writes, and will write what is pending when it is done
	broken     bool      // a write failed, or the connection ends: replies are dropped
	spare      []byte    // the buffer of the write in progress, for the replies after it
	largeSpare []cut

	iov    net.Buffers // the writer's (whoever holds writing)
	iovw   net.Buffers // what WriteTo consumes (a field, so that it does not escape per write)
	wArmed time.Time   // when the write deadline was last pushed
}

// cut is a large value to be written at offset at of the pending replies, after its head.
type cut struct {
	at   int
	data []byte
}

const (
	serverReadBuffer = 8 << 10
	smallReply       = 16 << 10 // larger values are written by writev from where they lie
	keepBuffer       = 64 << 10 // buffers grown past it for one frame are dropped after it
)

// upgrade authenticates the client of an upgrade request, hijacks its connection, answers 101
// and serves it until it ends.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	a, rf := s.authenticate(r)
	if rf != nil {
		s.refuse(w, r, rf)
		return
	}
	if s.open.Add(1) > s.maxConns {
		s.open.Add(-1)
		s.refuse(w, r, &refusal{http.StatusServiceUnavailable, fmt.Sprintf("%d connections open: the limit", s.maxConns)})
		return
	}
	defer s.open.Add(-1)
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "peer: this connection cannot be upgraded (HTTP/2?)", http.StatusBadRequest)
		return
	}
	nc, rw, err := hj.Hijack()
	if err != nil {
		s.log.Debug("peer: hijack failed", "err", err)
		return
	}
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent bytes before our answer: keep them.
		b, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	c := &serverConn{s: s, nc: nc, br: bufio.NewReaderSize(src, serverReadBuffer), ctx: ctx, node: a.node,
		slots: make(chan struct{}, MaxConnRequests), wbuf: make([]byte, 0, 4<<10)}
	c.room.L = &c.mu
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	if c.start(&a) {
		c.serve()
	}
	c.mu.Lock() // replies still to come have nobody to read them
	c.breakLocked()
	c.mu.Unlock()
	cancel()
	c.wg.Wait()
}

// start answers the upgrade and checks the client's proof of the secret, if it must give one.
func (c *serverConn) start(a *admission) bool {
	_ = c.nc.SetDeadline(time.Now().Add(c.s.stallTimeout))
	if _, err := io.WriteString(c.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+
		UpgradeToken+"\r\n"+c.s.selfHeader+a.upgradeHeaders()+"\r\n"); err != nil {
		return false
	}
	why, err := a.checkClientProof(c.nc, c.br, c.s.stallTimeout)
	if err != nil {
		return false
	}
	if why != "" {
		c.s.refused(c.nc.RemoteAddr().String(), why)
		c.reply(0, &wire.Response{Status: StatusForbidden, Msg: why}, 0) // id 0: the connection's refusal
		c.flush()
		return false
	}
	_ = c.nc.SetWriteDeadline(time.Time{})
	return true
}

// track adds c to the server's connections, unless the server is closed.
func (s *Server) track(c *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.upgrades.Add(1)
	return true
}

// untrack closes c and moves its counters to the server's totals.
func (s *Server) untrack(c *serverConn) {
	c.nc.Close()
	s.mu.Lock()
	delete(s.conns, c)
	c.st.addTo(&s.totals)
	s.mu.Unlock()
}

// serve reads request frames and answers them until the connection ends.
func (c *serverConn) serve() {
	s := c.s
	c.armRead(true)
	for c.waitRoom() {
		n, id, err := c.next()
		if err != nil {
			if isTimeout(err) && !c.stalled && len(c.slots) > 0 && c.ctx.Err() == nil {
				c.armRead(true) // idle, but requests are in progress: their replies are due
				continue
			}
			return // closed by the client, idle or stall timeout, or Close
		}
		if n > s.reqFrameMax {
			c.refuseFrame(n, id)
			return
		}
		frame, peeked, err := c.readRequest(n)
		if err != nil || !c.handle(id, frame, !peeked) {
			return
		}
		if peeked {
			_, _ = c.br.Discard(n)
		} else if cap(c.rbuf) > keepBuffer {
			c.rbuf = nil
		}
		c.armRead(c.stalled)
		c.stalled = false
		if !c.nextBuffered() {
			c.flush()
		}
	}
}

// next waits for the next request frame and returns its length and id. Once its first byte has
// come, the rest must come within the stall timeout.
func (c *serverConn) next() (n int, id uint32, err error) {
	if _, err = c.br.Peek(1); err != nil {
		return 0, 0, err
	}
	if c.br.Buffered() < wire.PrefixLen {
		c.stall()
	}
	hdr, err := c.br.Peek(wire.PrefixLen)
	if err != nil {
		return 0, 0, err
	}
	n, id = wire.ParsePrefix(hdr)
	_, _ = c.br.Discard(wire.PrefixLen)
	if n <= c.s.reqFrameMax && c.br.Buffered() < n {
		c.stall()
	}
	return n, id, nil
}

// stall sets the read deadline to the stall timeout's, once per frame.
func (c *serverConn) stall() {
	if !c.stalled {
		c.stalled = true
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.stallTimeout))
	}
}

// waitRoom waits, before a request is read, until the connection holds no more than its budget
// (writing what is pending first); false: the connection broke meanwhile.
func (c *serverConn) waitRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.held > int(c.s.connBudget) && !c.broken {
		c.waitLocked()
	}
	return !c.broken
}

// waitLocked waits for held to go down; the pending replies are being written, by this goroutine
// first if nobody is. mu is held.
func (c *serverConn) waitLocked() {
	if !c.writing && len(c.wbuf)+len(c.large) > 0 {
		c.mu.Unlock()
		c.flush()
		c.mu.Lock()
		return
	}
	c.room.Wait()
}

// reserve waits until the connection's pending replies leave room for size more bytes (or are
// none) and reserves them; false: the server is over its budget, or the connection broke.
func (c *serverConn) reserve(size int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.pending > 0 && c.pending+size > int(c.s.connBudget) && !c.broken {
		c.waitLocked()
	}
	if c.broken || !c.s.take(size) {
		return false
	}
	c.held += size
	c.pending += size
	return true
}

// hold counts n bytes of a request being served, unless they would take the server over its
// budget.
func (c *serverConn) hold(n int) bool {
	if !c.s.take(n) {
		return false
	}
	c.mu.Lock()
	c.held += n
	c.mu.Unlock()
	return true
}

// unhold gives back what hold counted.
func (c *serverConn) unhold(n int) {
	c.mu.Lock()
	c.heldLocked(-n, 0)
	c.mu.Unlock()
}

// heldLocked moves held by d, and pending by p, on the connection and the server.
func (c *serverConn) heldLocked(d, p int) {
	c.held += d
	c.pending += p
	c.s.held.Add(int64(d))
	if d < 0 {
		c.room.Broadcast()
	}
}

// budget bounds the bytes a Server holds in all.
type budget struct {
	limit int64
	held  atomic.Int64
}

// take counts n more bytes, unless the server would be over its budget and holds anything.
func (b *budget) take(n int) bool {
	if h := b.held.Add(int64(n)); h > b.limit && h != int64(n) {
		b.held.Add(-int64(n))
		return false
	}
	return true
}

// refuseFrame answers a request frame of n bytes over the limit: a frame cannot be skipped safely.
func (c *serverConn) refuseFrame(n int, id uint32) {
	c.st.requests.Add(1)
	c.s.log.Debug("peer: refused a request frame", "bytes", n, "limit", c.s.reqFrameMax)
	c.reply(id, &wire.Response{Status: StatusBadRequest,
		Msg: fmt.Sprintf("request frame of %d bytes over the limit of %d", n, c.s.reqFrameMax)}, 0)
	c.wg.Wait() // a write in progress could have missed the reply
	c.flush()
}

// readRequest reads an n-byte request frame: peeked in br's buffer, or, if longer, into rbuf,
// counted against the server's budget (nil frame: over it, skipped).
func (c *serverConn) readRequest(n int) (frame []byte, peeked bool, err error) {
	if n <= c.br.Size() {
		frame, err = c.br.Peek(n)
		return frame, true, err
	}
	if !c.hold(n) {
		_, err = c.br.Discard(n)
		return nil, true, err
	}
	c.rbuf, err = fillFrame(c.br, c.rbuf[:0], n)
	if err != nil {
		c.unhold(n)
	}
	return c.rbuf, false, err
}

// handle answers a request at once if it can, or starts a goroutine that serves it (taking c.rbuf
// when owned, else a copy); false: the connection ended while it waited for room. A nil frame was
// skipped: the server's buffers are full.
func (c *serverConn) handle(id uint32, frame []byte, owned bool) bool {
	s := c.s
	c.st.requests.Add(1)
	c.st.bytesIn.Add(int64(len(frame)) + wire.PrefixLen)
	var req wire.Request
	if frame == nil {
		c.reply(id, &wire.Response{Status: StatusOverloaded, Msg: "the server's request buffers are full"}, 0)
		return true
	}
	if err := wire.ParseRequestInto(frame, s.lim, &c.scratch, &req); err != nil {
		c.refuse(id, err)
		return true
	}
	c.st.byOp[req.Op].Add(1)
	if s.leaving.Load() {
		c.reply(id, &wire.Response{Status: StatusLeaving, Msg: "shutting down"}, 0)
		return true
	}
	if s.authorize != nil && !s.authorize(c.node, req.Op) {
		c.reply(id, &wire.Response{Status: StatusForbidden, Msg: fmt.Sprintf("%s is not allowed from %q", req.Op, c.node)}, 0)
		return true
	}
	if resp, reserved, ok := c.inline(&req); ok {
		c.reply(id, &resp, reserved)
		return true
	}
	return c.detach(id, frame, owned)
}

// detach serves a request on a goroutine of its own: the frame must outlive the connection's
// buffers, and is counted against the budgets until it is answered.
func (c *serverConn) detach(id uint32, frame []byte, owned bool) bool {
	if owned {
		c.rbuf = nil // held since readRequest
	} else if frame = bytes.Clone(frame); !c.hold(len(frame)) {
		c.reply(id, &wire.Response{Status: StatusOverloaded, Msg: "the server's request buffers are full"}, 0)
		return true
	}
	select {
	case c.slots <- struct{}{}:
	default:
		// MaxConnRequests in progress: write what is ready, then wait for one to end.
		c.flush()
		select {
		case c.slots <- struct{}{}:
		case <-c.ctx.Done():
			c.unhold(len(frame))
			return false
		}
	}
	c.s.detached.Add(1)
	c.wg.Add(1)
	go c.serveDetached(id, frame)
	return true
}

// refuse answers a request frame that did not parse.
func (c *serverConn) refuse(id uint32, err error) {
	pe := err.(*Error)
	c.s.log.Debug("peer: refused a request", "status", pe.Status.String(), "reason", pe.Msg)
	c.reply(id, &wire.Response{Status: pe.Status, Msg: pe.Msg}, 0)
}

// inline answers req from memory when it can: a Peek or PeekMany, or a Get answered inline.
func (c *serverConn) inline(req *wire.Request) (wire.Response, int, bool) {
	switch req.Op {
	case OpPeek, OpPeekMany:
		resp, reserved := c.s.handle(c, req)
		return resp, reserved, true
	case OpGet:
		v, ok, err := c.getInline(req)
		if err != nil {
			return wire.ErrorResponse(err), 0, true
		}
		if ok {
			return wire.ValueResponse(v, c.s.lim), 0, true
		}
	}
	return wire.Response{}, 0, false
}

// getInline asks the Backend's GetInline, turning a panic into an error.
func (c *serverConn) getInline(req *wire.Request) (v Value, ok bool, err error) {
	defer c.s.recoverBackend(req, &c.st, &err)
	return c.s.backend.GetInline(req.Cache, req.Key)
}

// serveDetached serves one request on its own goroutine and writes its reply.
func (c *serverConn) serveDetached(id uint32, frame []byte) {
	defer c.wg.Done()
	var req wire.Request
	var resp wire.Response
	var reserved int
	// The frame parsed on the connection's goroutine, with its scratch: it parses again.
	if err := wire.ParseRequestInto(frame, c.s.lim, nil, &req); err != nil {
		pe := err.(*Error)
		resp = wire.Response{Status: pe.Status, Msg: pe.Msg}
	} else {
		resp, reserved = c.s.handle(c, &req)
	}
	c.reply(id, &resp, reserved)
	c.unhold(len(frame))
	<-c.slots // room for the next request before this write, which may take a while
	c.flush()
}

// reply appends a reply to the pending ones (a large value stays where it lies), once the pending
// ones leave room for it; reserved is the room taken for it already (a batch).
func (c *serverConn) reply(id uint32, r *wire.Response, reserved int) {
	c.st.byStatus[r.Status].Add(1)
	size := wire.PrefixLen + wire.MaxResponseHead
	if r.Status == StatusOK {
		size += len(r.Value.Data)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for reserved == 0 && c.pending > 0 && c.pending+size > int(c.s.connBudget) && !c.broken {
		c.waitLocked()
	}
	if c.broken {
		c.heldLocked(-reserved, -reserved)
		return
	}
	start := len(c.wbuf)
	buf := wire.AppendResponseHead(wire.AppendPrefix(c.wbuf, 0, id), r)
	n := wire.ResponseFrameLen(len(buf)-start-wire.PrefixLen, r)
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	c.st.bytesOut.Add(int64(n) + wire.PrefixLen) // before the write, so a reader of the reply sees it counted
	if r.Status == StatusOK && len(r.Value.Data) > smallReply {
		c.large = append(c.large, cut{at: len(buf), data: r.Value.Data})
	} else if r.Status == StatusOK {
		buf = append(buf, r.Value.Data...)
	}
	c.wbuf = buf
	c.heldLocked(n+wire.PrefixLen-reserved, n+wire.PrefixLen-reserved)
}

// flush writes the pending replies, and those that come meanwhile, unless a write is in progress.
func (c *serverConn) flush() {
	c.mu.Lock()
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	for !c.broken && (len(c.wbuf) > 0 || len(c.large) > 0) {
		buf, large := c.wbuf, c.large
		c.wbuf, c.large = c.spare[:0], c.largeSpare[:0]
		c.mu.Unlock()
		err := c.write(buf, large)
		c.mu.Lock()
		c.heldLocked(-queued(buf, large), -queued(buf, large))
		c.spare = nil
		if cap(buf) <= keepBuffer {
			c.spare = buf[:0]
		}
		clear(large)
		c.largeSpare = large[:0]
		if err != nil {
			// The client cannot get its replies: close, which ends the connection's goroutine.
			c.breakLocked()
		}
	}
	c.writing = false
	c.mu.Unlock()
}

// queued returns the bytes of replies in buf and large.
func queued(buf []byte, large []cut) int {
	n := len(buf)
	for _, l := range large {
		n += len(l.data)
	}
	return n
}

// breakLocked drops the pending replies (nobody will read them), closes the connection and wakes
// whoever waits for room; mu is held.
func (c *serverConn) breakLocked() {
	if !c.broken {
		c.broken = true
		_ = c.nc.Close()
	}
	if n := queued(c.wbuf, c.large); n > 0 {
		c.heldLocked(-n, -n)
	}
	clear(c.large)
	c.wbuf, c.large = c.wbuf[:0], c.large[:0]
	c.room.Broadcast()
}

// write writes buf with the values of large inserted at their offsets; the writer's.
func (c *serverConn) write(buf []byte, large []cut) error {
	if now := time.Now(); now.Sub(c.wArmed) >= c.s.stallTimeout/16 {
		_ = c.nc.SetWriteDeadline(now.Add(c.s.stallTimeout))
		c.wArmed = now
	}
	if len(large) == 0 {
		_, err := c.nc.Write(buf)
		return err
	}
	c.iov = c.iov[:0]
	from := 0
	for _, l := range large {
		c.iov = append(c.iov, buf[from:l.at], l.data)
		from = l.at
	}
	if from < len(buf) {
		c.iov = append(c.iov, buf[from:])
	}
	c.iovw = c.iov // WriteTo consumes iovw, not the array behind it
	_, err := c.iovw.WriteTo(c.nc)
	clear(c.iov)
	c.iovw = nil
	return err
}

// armRead pushes the read deadline to now + the idle timeout, at most every 1/16 of it unless
// force is set.
func (c *serverConn) armRead(force bool) {
	now := time.Now()
	if force || now.Sub(c.armedAt) >= c.s.idleTimeout/16 {
		_ = c.nc.SetReadDeadline(now.Add(c.s.idleTimeout))
		c.armedAt = now
	}
}

// nextBuffered reports whether br holds a whole request frame (or a prefix over the limit).
func (c *serverConn) nextBuffered() bool {
	b := c.br.Buffered()
	if b < wire.PrefixLen {
		return false
	}
	hdr, _ := c.br.Peek(wire.PrefixLen)
	n, _ := wire.ParsePrefix(hdr)
	return n > c.s.reqFrameMax || b-wire.PrefixLen >= n
}

// fillFrame reads from r until buf holds n bytes, into buf's memory when n fits, else into new
// memory exactly n bytes long that, for n over 1 MiB, grows in steps as the bytes arrive: memory
// is committed only as fast as a peer sends bytes, not on the word of its length prefix.
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
