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
	"time"
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
	rbuf    []byte     // a request frame longer than br's buffer
	scratch reqScratch // what one request lends the next: cache name, key list
	armedAt time.Time  // when the read deadline was last pushed
	st      connCounters
	slots   chan struct{} // one per request served on its own goroutine
	wg      sync.WaitGroup

	mu         sync.Mutex
	wbuf       []byte // replies not handed to a write yet (of a large one, its head)
	large      []cut  // the values of large replies in wbuf not handed to a write yet
	writing    bool   // a goroutine writes, and will write what is pending when it is done
	broken     bool   // a write failed, or the connection ends: replies are dropped
	spare      []byte // the buffer of the write in progress, for the replies after it
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

// upgrade hijacks the connection of an upgrade request, answers 101 and serves it until it ends.
func (s *Server) upgrade(w http.ResponseWriter) {
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
		// The client sent frames before our answer: keep them.
		b, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	c := &serverConn{s: s, nc: nc, br: bufio.NewReaderSize(src, serverReadBuffer), ctx: ctx,
		slots: make(chan struct{}, MaxConnRequests), wbuf: make([]byte, 0, 4<<10)}
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	_ = nc.SetDeadline(time.Now().Add(s.idleTimeout))
	if _, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+
		UpgradeToken+"\r\n\r\n"); err != nil {
		return
	}
	c.serve()
	c.mu.Lock() // replies still to come have nobody to read them
	c.broken = true
	c.mu.Unlock()
	cancel()
	c.wg.Wait()
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
	c.armRead(false)
	for {
		hdr, err := c.br.Peek(prefixLen)
		if err != nil {
			if isTimeout(err) && len(c.slots) > 0 && c.ctx.Err() == nil {
				c.armRead(true) // idle, but requests are in progress: their replies are due
				continue
			}
			return // closed by the client, idle timeout, or Close
		}
		n, id := parsePrefix(hdr)
		_, _ = c.br.Discard(prefixLen)
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
		c.armRead(false)
		if !c.nextBuffered() {
			c.flush()
		}
	}
}

// refuseFrame answers a request frame of n bytes over the limit: a frame cannot be skipped safely.
func (c *serverConn) refuseFrame(n int, id uint32) {
	c.st.requests.Add(1)
	c.s.log.Debug("peer: refused a request frame", "bytes", n, "limit", c.s.reqFrameMax)
	c.reply(id, &Response{Status: StatusBadRequest,
		Msg: fmt.Sprintf("request frame of %d bytes over the limit of %d", n, c.s.reqFrameMax)})
	c.wg.Wait() // a write in progress could have missed the reply
	c.flush()
}

// readRequest reads an n-byte request frame: peeked in br's buffer, or, if longer, into rbuf.
func (c *serverConn) readRequest(n int) (frame []byte, peeked bool, err error) {
	if n <= c.br.Size() {
		frame, err = c.br.Peek(n)
		return frame, true, err
	}
	c.rbuf, err = fillFrame(c.br, c.rbuf[:0], n)
	return c.rbuf, false, err
}

// handle answers a request at once if it can, or starts a goroutine that serves it (taking c.rbuf
// when owned, else a copy); false: the connection ended while it waited for room.
func (c *serverConn) handle(id uint32, frame []byte, owned bool) bool {
	s := c.s
	c.st.requests.Add(1)
	c.st.bytesIn.Add(int64(len(frame)) + prefixLen)
	var req Request
	if err := parseRequest(frame, s.lim, &c.scratch, &req); err != nil {
		c.refuse(id, err)
		return true
	}
	c.st.byOp[req.Op].Add(1)
	if resp, ok := c.inline(&req); ok {
		c.reply(id, &resp)
		return true
	}
	// Served on a goroutine of its own: the frame must outlive the connection's buffers.
	if owned {
		c.rbuf = nil
	} else {
		frame = bytes.Clone(frame)
	}
	select {
	case c.slots <- struct{}{}:
	default:
		// MaxConnRequests in progress: write what is ready, then wait for one to end.
		c.flush()
		select {
		case c.slots <- struct{}{}:
		case <-c.ctx.Done():
			return false
		}
	}
	s.detached.Add(1)
	c.wg.Add(1)
	go c.serveDetached(id, frame)
	return true
}

// refuse answers a request frame that did not parse.
func (c *serverConn) refuse(id uint32, err error) {
	pe := err.(*Error)
	c.s.log.Debug("peer: refused a request", "status", pe.Status.String(), "reason", pe.Msg)
	c.reply(id, &Response{Status: pe.Status, Msg: pe.Msg})
}

// inline answers req from memory when it can: a Peek or PeekMany, or a Get answered inline.
func (c *serverConn) inline(req *Request) (Response, bool) {
	switch req.Op {
	case OpPeek, OpPeekMany:
		return c.s.handle(c.ctx, req, &c.st), true
	case OpGet:
		v, ok, err := c.getInline(req)
		if err != nil {
			return errorResponse(err), true
		}
		if ok {
			return c.s.valueResponse(v), true
		}
	}
	return Response{}, false
}

// getInline asks the Backend's GetInline, turning a panic into an error.
func (c *serverConn) getInline(req *Request) (v Value, ok bool, err error) {
	defer c.s.recoverBackend(req, &c.st, &err)
	return c.s.backend.GetInline(req.Cache, req.Key)
}

// serveDetached serves one request on its own goroutine and writes its reply.
func (c *serverConn) serveDetached(id uint32, frame []byte) {
	defer c.wg.Done()
	var req Request
	var resp Response
	// The frame parsed on the connection's goroutine, with its scratch: it parses again.
	if err := parseRequest(frame, c.s.lim, nil, &req); err != nil {
		pe := err.(*Error)
		resp = Response{Status: pe.Status, Msg: pe.Msg}
	} else {
		resp = c.s.handle(c.ctx, &req, &c.st)
	}
	c.reply(id, &resp)
	<-c.slots // room for the next request before this write, which may take a while
	c.flush()
}

// reply appends a reply to the pending ones (a large value stays where it lies).
func (c *serverConn) reply(id uint32, r *Response) {
	c.st.byStatus[r.Status].Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return
	}
	start := len(c.wbuf)
	buf := appendResponseHead(appendPrefix(c.wbuf, 0, id), r)
	n := responseFrameLen(len(buf)-start-prefixLen, r)
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	c.st.bytesOut.Add(int64(n) + prefixLen) // before the write, so a reader of the reply sees it counted
	if r.Status == StatusOK && len(r.Value.Data) > smallReply {
		c.large = append(c.large, cut{at: len(buf), data: r.Value.Data})
	} else if r.Status == StatusOK {
		buf = append(buf, r.Value.Data...)
	}
	c.wbuf = buf
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
		c.spare = nil
		if cap(buf) <= keepBuffer {
			c.spare = buf[:0]
		}
		clear(large)
		c.largeSpare = large[:0]
		if err != nil {
			// The client cannot get its replies: close, which ends the connection's goroutine.
			c.broken = true
			c.wbuf, c.large = c.wbuf[:0], c.large[:0]
			_ = c.nc.Close()
		}
	}
	c.writing = false
	c.mu.Unlock()
}

// write writes buf with the values of large inserted at their offsets; the writer's.
func (c *serverConn) write(buf []byte, large []cut) error {
	if now := time.Now(); now.Sub(c.wArmed) >= c.s.idleTimeout/16 {
		_ = c.nc.SetWriteDeadline(now.Add(c.s.idleTimeout))
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
	if b < prefixLen {
		return false
	}
	hdr, _ := c.br.Peek(prefixLen)
	n, _ := parsePrefix(hdr)
	return n > c.s.reqFrameMax || b-prefixLen >= n
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
